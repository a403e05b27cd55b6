"""Network namespaces: one per isolated run, named after the run id.

Each carries a mark of its own, the alias of its loopback interface:
"tempest-live-ci owner=PID:START state=DIR". `cleanup` reads it to tell our
namespaces from anyone else's and a live run's from a dead one's, whatever
state directory the run used (tests and concurrent tools use their own).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tempest_live_ci import proc
from tempest_live_ci.errors import UsageError
from tempest_live_ci.testbed.journal import Journal, netns_exists

MARK = "tempest-live-ci"
_MARK = re.compile(r"^tempest-live-ci owner=(\d+):(\S+)(?: state=(.+))?$")
IFALIAS_MAX = 255


@dataclass(frozen=True)
class Mark:
    owner: str  # proc.identity() of the process that made the namespace
    state_dir: Path | None


def add_marked_netns(name: str, state_dir: Path | None) -> None:
    """`ip netns add`, then the mark: this process owns it, its state is in state_dir."""
    proc.run(["ip", "netns", "add", name])
    pid, start = proc.identity().split()
    mark = f"{MARK} owner={pid}:{start}"
    if state_dir is not None and len(f"{mark} state={state_dir}".encode()) <= IFALIAS_MAX:
        mark = f"{mark} state={state_dir}"
    proc.run(["ip", "-n", name, "link", "set", "dev", "lo", "alias", mark])


def create_netns(journal: Journal, name: str) -> str:
    if netns_exists(name):
        raise UsageError(f"netns: a network namespace named {name!r} already exists")
    with journal.intent("netns", name=name):
        add_marked_netns(name, journal.directory)
    proc.run(["ip", "-n", name, "link", "set", "lo", "up"])
    return name


def read_mark(name: str) -> Mark | None:
    """The mark of namespace `name`, or None if it has none (not made by this tool)."""
    out = proc.run(["ip", "-n", name, "-j", "link", "show", "dev", "lo"], check=False,
                   capture=True).stdout
    try:
        alias = str(json.loads(out or "[]")[0].get("ifalias", ""))
    except (ValueError, IndexError, AttributeError):
        return None
    match = _MARK.match(alias)
    if match is None:
        return None
    state = match.group(3)
    return Mark(f"{match.group(1)} {match.group(2)}", Path(state) if state else None)
