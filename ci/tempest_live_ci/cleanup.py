"""Find and remove what killed runs left behind.

Everything a run creates carries its run id (`tlc-` + 8 hex digits): the
namespace, the state directory with its journal and pid files, the libvirt
domain's metadata. A run whose owner process is gone and that was not kept
on purpose is a leftover.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from tempest_live_ci import paths, proc
from tempest_live_ci.log import log
from tempest_live_ci.testbed import teardown_testbed
from tempest_live_ci.testbed.journal import describe, process_matches, undo_record

RUN_ID = re.compile(r"^tlc-[0-9a-f]{8}$")


@dataclass(frozen=True)
class Leftover:
    run_id: str
    reason: str
    kept: bool


def _owner_alive(directory: Path) -> bool:
    try:
        return proc.identity_alive((directory / "owner").read_text())
    except OSError:
        return False


def _mode(directory: Path) -> str | None:
    try:
        return str(json.loads((directory / "testbed.json").read_text())["mode"])
    except (OSError, ValueError, KeyError):
        return None


def _namespaces() -> list[str]:
    out = proc.run(["ip", "netns", "list"], capture=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def find_leftovers(include_kept: bool = False) -> list[Leftover]:
    found: list[Leftover] = []
    root = paths.state_dir()
    seen = set()
    if root.is_dir():
        for directory in sorted(root.iterdir()):
            if not directory.is_dir() or not RUN_ID.match(directory.name):
                continue
            seen.add(directory.name)
            if _mode(directory) == "persistent" or _owner_alive(directory):
                continue
            kept = (directory / "keep").exists()
            if kept and not include_kept:
                log.info("kept on purpose, left alone: %s (tempest-live-ci vm destroy --run %s)",
                         directory.name, directory.name)
                continue
            found.append(Leftover(directory.name, "its run is gone", kept))
    for name in _namespaces():
        if RUN_ID.match(name) and name not in seen:
            found.append(Leftover(name, "a namespace without a state directory", False))
    return found


def _kill_recorded_pids(directory: Path) -> list[str]:
    """Daemons whose pid files sit in the run's state directory (libvirtd, socat, ...)."""
    stopped = []
    for pid_file in sorted(directory.rglob("*.pid")):
        pid = proc.read_pidfile(pid_file)
        if pid is not None and process_matches(pid, str(directory)) and proc.kill_pid(pid):
            stopped.append(f"process {pid} ({pid_file.stem})")
    return stopped


def remove_leftover(leftover: Leftover) -> list[str]:
    directory = paths.state_dir() / leftover.run_id
    removed: list[str] = []
    if directory.exists():
        removed += _kill_recorded_pids(directory)
        removed += teardown_testbed(leftover.run_id, quiet=True)
    else:
        record = {"kind": "netns", "name": leftover.run_id}
        undo_record(record)
        removed.append(describe(record))
    return removed


def cleanup(*, dry_run: bool = False, include_kept: bool = False) -> list[str]:
    """Remove every leftover; return one line per thing removed (or found, with dry_run)."""
    lines: list[str] = []
    for leftover in find_leftovers(include_kept):
        if dry_run:
            lines.append(f"{leftover.run_id}: {leftover.reason}")
            continue
        for what in remove_leftover(leftover):
            lines.append(f"{leftover.run_id}: removed {what}")
    return lines


