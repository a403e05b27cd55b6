"""Network namespaces: one per isolated run, named after the run id.

Each carries a mark of its own, the alias of its loopback interface:
"tempest-live-ci owner=PID:START state=DIR". `cleanup` reads it to tell our
namespaces from anyone else's and a live run's from a dead one's, whatever
state directory the run used (tests and concurrent tools use their own).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from tempest_live_ci import paths, proc, registry
from tempest_live_ci.errors import UsageError
from tempest_live_ci.log import log
from tempest_live_ci.testbed.journal import Journal, describe, netns_exists, undo_record

MARK = "tempest-live-ci"
_MARK = re.compile(r"^tempest-live-ci owner=(\d+):(\S+)(?: state=(.+))?$")
IFALIAS_MAX = 255
RUN_ID = re.compile(r"^tlc-[0-9a-f]{8}$")
PROBE = re.compile(r"^tlc-probe-(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# An unmarked namespace younger than this may be a run being set up by an
# older version of the tool (or another state directory): not yet a leftover.
YOUNG = 30.0


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


# --- what no record names, for `cleanup` ----------------------------------------------------

def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _namespace_names() -> list[str]:
    out = proc.run(["ip", "netns", "list"], capture=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _netns_age(name: str) -> float:
    # /run/netns/NAME is the namespace's nsfs inode: its times are its creation.
    return _age(Path("/run/netns") / name)


def _state_dirs_of_processes(name: str) -> set[Path]:
    """State directories `<root>/<name>` that the processes inside namespace `name` name."""
    pids = proc.run(["ip", "netns", "pids", name], check=False, capture=True).stdout.split()
    found = set()
    for pid in pids:
        for arg in proc.cmdline(int(pid)):
            index = arg.find(f"/{name}/")
            if index >= 0:
                start = max(arg.rfind("=", 0, index), arg.rfind(":", 0, index)) + 1
                found.add(Path(arg[start:index + len(name) + 1]))
    return found


def _claimed(state: Path, registered: set[str], what: str) -> bool:
    """Does a state directory still claim its namespace?

    Yes while it exists in another state root (that root's `cleanup` judges
    it: tests and concurrent tools keep their own), or in ours while the
    registry holds its testbed (the registry judges it).
    """
    if not state.is_dir():
        return False
    if state.parent.resolve() != paths.state_dir().resolve():
        log.debug("%s belongs to %s, another state directory: left to its cleanup", what, state)
        return True
    return state.name in registered


def _remove_namespace(name: str) -> list[str]:
    if not netns_exists(name):
        return []
    record = {"kind": "netns", "name": name}
    undo_record(record)
    return [describe(record)]


@registry.sweep
def _leftover_namespaces() -> Iterator[registry.Leftover]:
    """Namespaces no record names: of a state directory removed while its run lived, of a
    scratch probe, of older versions."""
    registered = {e.resource.name for e in registry.entries()}
    for name in _namespace_names():
        if name in registered or not _NAME.match(name):
            continue
        mark = read_mark(name)
        if mark is not None:
            if proc.identity_alive(mark.owner):
                continue
            state = mark.state_dir
            if state is not None and _claimed(state, registered, name):
                continue
            yield registry.Leftover(name, "a namespace whose run is gone",
                           partial(_remove_namespace, name))
            continue
        probe = PROBE.match(name)
        if probe is not None:
            if not proc.pid_alive(int(probe.group(1))):
                yield registry.Leftover(name, "a scratch namespace of a process that is gone",
                               partial(_remove_namespace, name))
            continue
        if RUN_ID.match(name):
            if _netns_age(name) < YOUNG:
                continue
            if any(_claimed(state, registered, name) for state in _state_dirs_of_processes(name)):
                continue
            yield registry.Leftover(name, "a namespace without a state directory",
                           partial(_remove_namespace, name))
