"""A journal of what a testbed created, so that it can always be undone.

Every part of the testbed records what it creates (a namespace, a link, a
daemon's pid, an nftables table, a sysctl value it changed) before moving on.
The same records serve three callers:

- the run itself, which undoes its records in reverse order when its block
  unwinds (success, error, Ctrl-C, SIGTERM), or when a setup fails halfway;
- `host teardown`, for a persistent testbed set up by an earlier command;
- `cleanup`, for a run that was killed before it could undo anything.

Undoing is idempotent: whatever is already gone is skipped, so teardown is
safe to call twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tempest_live_ci import proc
from tempest_live_ci.log import log

Record = dict[str, Any]


class Journal:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.path = directory / "journal.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[list[Record]]:
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / "journal.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records: list[Record] = []
            if self.path.exists():
                records = json.loads(self.path.read_text())
            yield records
            tmp = self.path.with_suffix(".tmp")
            tmp.write_text(json.dumps(records, indent=1))
            os.replace(tmp, self.path)

    def records(self) -> list[Record]:
        if not self.path.exists():
            return []
        return list(json.loads(self.path.read_text()))

    def add(self, kind: str, **fields: Any) -> Record:
        record: Record = {"kind": kind, "time": time.time(), **fields}
        with self._locked() as records:
            records.append(record)
        return record

    def undo(self, record: Record) -> None:
        undo_record(record)
        with self._locked() as records:
            records[:] = [r for r in records if r != record]

    def undo_all(self) -> list[Record]:
        """Undo every record, newest first; returns what was undone."""
        undone = []
        for record in reversed(self.records()):
            self.undo(record)
            undone.append(record)
        return undone


def describe(record: Record) -> str:
    kind = record["kind"]
    where = f" in {record['netns']}" if record.get("netns") else ""
    if kind == "netns":
        return f"network namespace {record['name']}"
    if kind == "link":
        return f"link {record['name']}{where}"
    if kind == "enslaved":
        return f"link {record['name']} taken off the bridge{where}"
    if kind == "pid":
        return f"process {record['pid']} ({record['name']})"
    if kind == "nft-table":
        return f"nftables table {record['family']} {record['name']}{where}"
    if kind == "sysctl":
        return f"sysctl {record['key']} (restored to {record['old']}){where}"
    return f"{kind} {record}"


def _ip(netns: str | None, *args: str) -> int:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return proc.run(argv, check=False, capture=True).returncode


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def process_matches(pid: int, marker: str) -> bool:
    """Is `pid` still the process we started (not a recycled pid)?"""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return marker in cmdline


def undo_record(record: Record) -> None:
    kind = record["kind"]
    netns = record.get("netns")
    log.debug("undoing %s", describe(record))
    if netns is not None and not netns_exists(netns):
        return  # Gone with its namespace.
    if kind == "netns":
        name = record["name"]
        if not netns_exists(name):
            return
        # Anything still running inside a namespace we created is ours.
        pids = proc.run(["ip", "netns", "pids", name], check=False, capture=True).stdout.split()
        for pid in pids:
            proc.kill_pid(int(pid), grace=3)
        proc.run(["ip", "netns", "delete", name], check=False)
    elif kind in ("link", "enslaved"):
        if _ip(netns, "link", "show", "dev", record["name"]) == 0:
            if kind == "link":
                _ip(netns, "link", "delete", "dev", record["name"])
            else:
                _ip(netns, "link", "set", "dev", record["name"], "nomaster")
    elif kind == "pid":
        if process_matches(int(record["pid"]), record["marker"]):
            proc.kill_pid(int(record["pid"]))
    elif kind == "nft-table":
        exists = proc.run(["nft", "list", "table", record["family"], record["name"]],
                          netns=netns, check=False, capture=True).returncode == 0
        if exists:
            proc.run(["nft", "delete", "table", record["family"], record["name"]], netns=netns)
    elif kind == "sysctl":
        proc.run(["sysctl", "-q", "-w", f"{record['key']}={record['old']}"], netns=netns)
    else:
        raise ValueError(f"unknown journal record kind: {kind}")
