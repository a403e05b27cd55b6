"""In a GitLab CI job (GITLAB_CI=true), each stage of a run is a collapsible section of the
job's log: GitLab's section markers on stderr around the stage's lines; nested steps and
runs outside GitLab CI carry none."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from tests.conftest import TOP

STAGES = """
import logging
from tempest_live_ci.log import log, step
logging.basicConfig(level=logging.INFO, format="%(message)s")
with step("Setting up the testbed"):
    with step("dnsmasq"):
        pass
try:
    with step("Running tempest"):
        raise RuntimeError
except RuntimeError:
    pass
"""


def stderr_of(gitlab: bool) -> str:
    env = {**os.environ, "PYTHONPATH": str(TOP / "ci")}
    env.pop("GITLAB_CI", None)
    if gitlab:
        env["GITLAB_CI"] = "true"
    # Bytes: text mode would read the markers' CR as a line end.
    return subprocess.run([sys.executable, "-c", STAGES], capture_output=True, env=env,
                          check=True).stderr.decode()


def test_each_stage_is_a_section_of_a_gitlab_job_log() -> None:
    text = stderr_of(gitlab=True)
    starts = re.findall(r"\x1b\[0Ksection_start:(\d+):(\w+)\[collapsed=false\]\r\x1b\[0K(.*)\n",
                        text)
    ends = re.findall(r"\x1b\[0Ksection_end:(\d+):(\w+)\r\x1b\[0K\n", text)
    assert [(name, header) for _, name, header in starts] == [
        ("tempest_live_ci_setting_up_the_testbed", "Setting up the testbed"),
        ("tempest_live_ci_running_tempest", "Running tempest")]
    # A failed stage closes its section too; the nested step has none of its own.
    assert [name for _, name in ends] == [name for _, name, _ in starts]
    assert text.index("dnsmasq done") < text.index("section_end")


def test_no_markers_outside_gitlab_ci() -> None:
    assert "section_start" not in stderr_of(gitlab=False)
