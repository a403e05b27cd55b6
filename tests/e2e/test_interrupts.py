"""End to end: a run interrupted at each of its stages leaves nothing behind.

SIGINT (Ctrl-C) and SIGTERM (a CI runner's timeout, systemd's stop) unwind
the run: every stage undoes what it made, in reverse order, and the run ends
with exit 130. SIGKILL leaves the run no chance: `tempest-live-ci cleanup`
then finds everything from the journal and the run id. After each, nothing
of the run is left: namespaces, links, processes, libvirt domains, nftables
tables, mounts and state directories are compared with before.

The signal is sent once the stage's title is on stderr and a few seconds
have passed, so the stage is under way (in tempest: once a test is done).
Each case after the testbed boots its own guest: about two minutes under
TCG, three to six for the whole case; all run in CI. SIGTERM and SIGHUP
are turned into the KeyboardInterrupt of Ctrl-C at once (cli.py), so each
stage is interrupted by one of the two, and both signals are covered. The
in-guest steps (prepare, install, configure) leave the host in the same
state, so configure stands for them; tempest adds the partial report.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.image import Image
from tests.conftest import TOP, Dirs, needs_root
from tests.conftest import _processes_using as processes_using

pytestmark = [needs_root, pytest.mark.slow]

JOB = "tempest:\n  regex: tempest\\.api\\.identity\\.v3\n  concurrency: 1\n"


def host_state(dirs: Dirs) -> dict[str, set[str]]:
    """What a run can leave on the host, each as a set of names to compare."""
    def lines(argv: list[str]) -> set[str]:
        result = proc.run(argv, capture=True, check=False)
        return {line.strip() for line in result.stdout.splitlines() if line.strip()}

    return {
        "domains": lines(["virsh", "-c", "qemu:///system", "list", "--all", "--name"]),
        "nft tables": lines(["nft", "list", "tables"]),
        "mounts": {line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                   if str(dirs.top) in line},
        "state": {p.name for p in dirs.state.glob("tlc-*")},
    }


def processes_of(*markers: str) -> set[int]:
    """Processes whose command line names one of `markers` (the run id, the test's dirs)."""
    return set().union(*(processes_using(marker) for marker in markers))


@pytest.fixture
def nothing_left(dirs: Dirs, no_leaks: None) -> Iterator[None]:
    # no_leaks: the namespaces, links and processes of the test's own runs
    # (not those other work on the host makes meanwhile).
    before = host_state(dirs)
    yield
    after = host_state(dirs)
    left = {kind: sorted(after[kind] - before[kind]) for kind in after
            if after[kind] - before[kind]}
    assert not left, f"left behind: {left}"
    assert not processes_of(str(dirs.top)), "processes left behind"


def start_run(dirs: Dirs, image: Image, tmp_path: Path) -> tuple[subprocess.Popen[str], Path]:
    job = tmp_path / "interrupted.yaml"
    job.write_text(JOB)
    stderr = tmp_path / "stderr"
    env = {**os.environ, **dirs.env(),
           "TEMPEST_LIVE_CI_CACHE_DIR": str(image.directory.parent.parent)}
    with open(stderr, "w") as err:
        process = subprocess.Popen(
            [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "run", str(job),
             "--output", str(tmp_path / "out")], stdout=subprocess.DEVNULL, stderr=err,
            text=True, env=env)
    return process, stderr


def wait_for(stderr: Path, process: subprocess.Popen[str], text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while text not in (seen := stderr.read_text()):
        assert process.poll() is None, f"the run ended before {text!r}:\n{seen[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout:.0f} s:\n{seen[-3000:]}"
        time.sleep(0.2)
    return seen


# (the stage's title on stderr, then what must follow it, then seconds more)
STAGES = {
    "testbed": ("Setting up the testbed…", None, 0.0),
    "boot": ("Booting the guest…", None, 5.0),
    "configure": ("Configuring OpenStack…", None, 20.0),
    # A test or more done: they must make the report.
    "tempest": ("Running tempest…", "tests done: ", 0.0),
}
CASES = [
    pytest.param(stage, signum, id=f"{stage}-{signal.Signals(signum).name}")
    for stage, signum in (("testbed", signal.SIGINT), ("boot", signal.SIGTERM),
                          ("configure", signal.SIGINT), ("tempest", signal.SIGTERM))
]


@pytest.mark.parametrize(("stage", "signum"), CASES)
def test_an_interrupted_run_undoes_every_stage(stage: str, signum: int, dirs: Dirs,
                                               live_image: Image, nothing_left: None,
                                               tmp_path: Path) -> None:
    title, then, into = STAGES[stage]
    process, stderr = start_run(dirs, live_image, tmp_path)
    try:
        wait_for(stderr, process, title, 900)
        if then is not None:
            wait_for(stderr, process, then, 900)
        time.sleep(into)
        assert process.poll() is None, stderr.read_text()[-3000:]
        process.send_signal(signum)
        code = process.wait(300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = stderr.read_text()
    assert code == 130, text[-3000:]
    assert "error: interrupted" in text
    assert "unexpected error" not in text
    run_id = re.search(r"run id (tlc-[0-9a-f]{8})", text)
    assert run_id is not None, text[-3000:]
    assert f"run {run_id.group(1)} ended with exit code 130" in text
    assert not processes_of(run_id.group(1)), "processes of the run left behind"
    if stage == "tempest":
        # The tests done before the signal still make the report, marked incomplete.
        out = tmp_path / "out"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["exit_code"] == 130 and summary["complete"] is False
        assert summary["incomplete"]["interrupted"] is True
        assert summary["counts"]["total"] >= 1
        assert (out / "report.html").is_file() and (out / "junit.xml").is_file()


def test_a_killed_run_is_cleaned_up_by_cleanup(dirs: Dirs, live_image: Image,
                                               nothing_left: None, tmp_path: Path) -> None:
    process, stderr = start_run(dirs, live_image, tmp_path)
    try:
        # The guest is starting: the namespace, libvirtd, qemu and the
        # testbed's daemons all exist, as in any later stage.
        wait_for(stderr, process, "Booting the guest…", 900)
        time.sleep(10)
        process.send_signal(signal.SIGKILL)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    run_id = re.search(r"run id (tlc-[0-9a-f]{8})", stderr.read_text())
    assert run_id is not None
    # The killed run's namespace, domain and daemons are still there: cleanup's work.
    assert run_id.group(1) in proc.run(["ip", "netns", "list"], capture=True).stdout
    result = subprocess.run(
        [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "cleanup"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **dirs.env()})
    assert result.returncode == 0, result.stderr
    assert run_id.group(1) in result.stderr + result.stdout
    assert not processes_of(run_id.group(1)), "processes of the run left behind"
