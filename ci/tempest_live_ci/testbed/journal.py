"""A journal of what a testbed created, so that it can always be undone.

Every part of the testbed records what it creates (a namespace, a link, a
daemon's pid, an nftables table, a sysctl value it changed) before moving on.
The same records serve three callers:

- the run itself, which undoes its records in reverse order when its block
  unwinds (success, error, Ctrl-C, SIGTERM);
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

    @contextlib.contextmanager
    def entry(self, kind: str, **fields: Any) -> Iterator[Record]:
        """Record something just created; undo it when the block is left."""
        record = self.add(kind, **fields)
        try:
            yield record
        finally:
            self.undo(record)


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
    if kind == "file":
        return f"file {record['path']}"
    return f"{kind} {record}"


def _link_exists(name: str, netns: str | None) -> bool:
    argv = ["ip", "link", "show", "dev", name]
    if netns:
        argv[1:1] = ["-n", netns]
    return proc.run(argv, check=False, capture=True).returncode == 0


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
    if kind == "netns":
        name = record["name"]
        if not netns_exists(name):
            return
        # Anything still running inside a namespace we created is ours.
        pids = proc.run(["ip", "netns", "pids", name], check=False, capture=True).stdout.split()
        for pid in pids:
            proc.kill_pid(int(pid), grace=3)
        proc.run(["ip", "netns", "delete", name], check=False)
    elif kind == "link":
        if (netns is None or netns_exists(netns)) and _link_exists(record["name"], netns):
            argv = ["ip", "link", "delete", "dev", record["name"]]
            if netns:
                argv[1:1] = ["-n", netns]
            proc.run(argv, check=False)
    elif kind == "enslaved":
        if (netns is None or netns_exists(netns)) and _link_exists(record["name"], netns):
            argv = ["ip", "link", "set", "dev", record["name"], "nomaster"]
            if netns:
                argv[1:1] = ["-n", netns]
            proc.run(argv, check=False)
    elif kind == "pid":
        if process_matches(int(record["pid"]), record["marker"]):
            proc.kill_pid(int(record["pid"]))
    elif kind == "nft-table":
        if netns is not None and not netns_exists(netns):
            return
        exists = proc.run(["nft", "list", "table", record["family"], record["name"]],
                          netns=netns, check=False, capture=True).returncode == 0
        if exists:
            proc.run(["nft", "delete", "table", record["family"], record["name"]], netns=netns)
    elif kind == "sysctl":
        if netns is not None and not netns_exists(netns):
            return
        if netns is None:
            Path("/proc/sys", record["key"].replace(".", "/")).write_text(record["old"] + "\n")
        else:
            proc.run(["sysctl", "-q", "-w", f"{record['key']}={record['old']}"], netns=netns)
    elif kind == "file":
        with contextlib.suppress(FileNotFoundError):
            Path(record["path"]).unlink()
    else:
        raise ValueError(f"unknown journal record kind: {kind}")
