"""tempest.conf from the running cloud (python3-tempestconf), and the tempest run.

The selection is turned into `tempest run` arguments here, as a pure
function the host's tests exercise with recorded data.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .configure import KEYSTONE_PORT, admin_environment
from .profiles import get_profile
from .util import StepError, facts, package_versions, part, run, say

WORKSPACE = "/var/lib/tempest"  # the tempest package's, with its .stestr.conf
TEMPEST_CONF = "/etc/tempest/tempest.conf"
# stestr's own tag for tempest's smoke tests is the attribute in the test id.
SMOKE = r"\[.*\bsmoke\b.*\]"


@dataclass(frozen=True)
class Selection:
    regex: str | None = None
    exclude_regex: str | None = None
    smoke: bool = False
    include_list: str | None = None  # a file in the guest
    exclude_list: str | None = None
    load_list: str | None = None
    concurrency: int = 1


def selection_arguments(s: Selection) -> list[str]:
    """`tempest run` arguments for a selection.

    tempest run takes --smoke or --regex, not both; smoke tests matching a
    regex are one regex: the smoke attribute ahead (a lookahead), then the
    job's regex anywhere after the start, as stestr's re.search would find it.
    """
    args: list[str] = []
    if s.smoke and s.regex:
        args += ["--regex", f"^(?={'.*'}{SMOKE}).*?(?:{s.regex})"]
    elif s.smoke:
        args += ["--smoke"]
    elif s.regex:
        args += ["--regex", s.regex]
    if s.exclude_regex:
        args += ["--exclude-regex", s.exclude_regex]
    if s.include_list:
        args += ["--include-list", s.include_list]
    if s.exclude_list:
        args += ["--exclude-list", s.exclude_list]
    if s.load_list:
        args += ["--load-list", s.load_list]
    args += ["--concurrency", str(s.concurrency)]
    return args


def conf_overrides(profile_name: str, job_conf: Mapping[str, str]) -> dict[str, str]:
    """What discover-tempest-config is told, "section.key" → value; the job's win."""
    profile = get_profile(profile_name)
    values: dict[str, str] = {
        f"service_available.{name}": "true" if available else "false"
        for name, available in profile.service_available().items()
    }
    values.update({
        "auth.use_dynamic_credentials": "true",
        # In the workspace, where tempest run starts its workers.
        "DEFAULT.log_file": f"{WORKSPACE}/tempest.log",
        "oslo_concurrency.lock_path": f"{WORKSPACE}/lock",
    })
    values.update(profile.conf)
    values.update(job_conf)
    return values


def tempest_conf(p: dict[str, Any]) -> None:
    auth_url = f"http://{p['guest_address']}:{KEYSTONE_PORT}/v3/"
    overrides = conf_overrides(p["profile"], p["tempest"].get("conf", {}))
    os.makedirs(f"{WORKSPACE}/lock", exist_ok=True)
    argv = ["discover-tempest-config", "--no-default-deployer", "--out", TEMPEST_CONF]
    for key, value in overrides.items():
        argv += [key, value]
    with part("discover-tempest-config"):
        run(argv, env=admin_environment(p, auth_url), cwd=WORKSPACE)
    facts["tempest"] = package_versions(["python3-tempest", "python3-tempestconf"])


def run_tempest(p: dict[str, Any], load_list: str | None = None) -> None:
    """`tempest run --subunit`: the stream on stdout, as stestr flushes it, packet by packet."""
    t = p["tempest"]
    selection = Selection(
        regex=t.get("regex"), exclude_regex=t.get("exclude_regex"), smoke=t.get("smoke", False),
        include_list=t.get("include_list"), exclude_list=t.get("exclude_list"),
        load_list=load_list, concurrency=t["concurrency"])
    argv = ["tempest", "run", "--subunit", "--config-file", TEMPEST_CONF,
            *selection_arguments(selection)]
    say(f"tempest workspace {WORKSPACE}")
    sys.stdout.flush()
    # stestr exits 0 with --subunit even when tests fail: the host judges the stream.
    result = run(argv, cwd=WORKSPACE, stdout=sys.stdout, check=False)
    if result.returncode != 0:
        raise StepError(f"tempest run exited with status {result.returncode}")
