"""A journal of what a testbed created, so that it can always be undone.

Every part of the testbed records what it is about to create (a namespace,
a link, a daemon's pid file, an nftables table, a sysctl value it changes)
*before* creating it: a kill at any moment leaves at most a record of
something that does not exist, never something that exists without a
record. The same records serve three callers:

- the run itself, which undoes its records in reverse order when its block
  unwinds (success, error, Ctrl-C, SIGTERM), or when a setup fails halfway;
- `host teardown`, for a persistent testbed set up by an earlier command;
- `cleanup`, for a run that was killed before it could undo anything.

Undoing is idempotent: whatever is already gone (or was never made) is
skipped, so teardown is safe to call twice. It is also best effort: a record
whose undo fails is logged and kept in the journal, every other record is
still undone, and one UndoError at the end names what failed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tempest_live_ci import proc
from tempest_live_ci.errors import TestbedError, TLCError
from tempest_live_ci.log import log

Record = dict[str, Any]

# Record kinds of a testbed part that knows how to undo them (the apt
# proxy's "apt-proxy-user": aptproxy.py): kind → (undo, description). Each
# part registers its own when it is imported; lifecycle.py and cleanup.py,
# which undo journals, import every such part.
_KINDS: dict[str, tuple[Callable[[Record], None], str]] = {}


def register_kind(kind: str, undo: Callable[[Record], None], description: str) -> None:
    """How undo_record() undoes, and describe() names, a record of `kind`."""
    _KINDS[kind] = (undo, description)


class UndoError(TestbedError):
    """Some records could not be undone; they stay in the journal for a later try."""

    def __init__(self, message: str, *, undone: list[Record],
                 failed: list[tuple[Record, str]], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.undone = undone
        self.failed = failed


def _same(a: Record, b: Record) -> bool:
    if "id" in a or "id" in b:
        return a.get("id") == b.get("id")
    return a == b


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """SIGINT, SIGTERM and SIGHUP wait until the block is done (a second Ctrl-C
    must not abort a teardown halfway); they are delivered when it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    wanted = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    old = signal.pthread_sigmask(signal.SIG_BLOCK, wanted)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


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
        record: Record = {"kind": kind, "id": secrets.token_hex(6), "time": time.time(), **fields}
        with self._locked() as records:
            records.append(record)
        return record

    def update(self, record: Record, **fields: Any) -> Record:
        """Add what became known after the record was written (a daemon's pid)."""
        updated = {**record, **fields}
        with self._locked() as records:
            records[:] = [updated if _same(r, record) else r for r in records]
        return updated

    def discard(self, record: Record) -> None:
        """Forget a record without undoing it (its object was never made)."""
        with self._locked() as records:
            records[:] = [r for r in records if not _same(r, record)]

    @contextlib.contextmanager
    def intent(self, kind: str, **fields: Any) -> Iterator[Record]:
        """Record `kind` before the block creates it.

        A command of the block that ran and failed (a TLCError) made
        nothing: the record is dropped, so that undoing never removes what
        someone else made under the same name. An interrupt keeps it:
        whether the object exists then is unknown, and undo checks.
        """
        record = self.add(kind, **fields)
        try:
            yield record
        except TLCError:
            self.discard(record)
            raise

    def start_daemon(self, name: str, marker: str, cmd: proc.Argv, *, netns: str | None,
                     log_file: Path, pid_file: Path) -> int:
        """proc.start_daemon(), recorded first by its pid file, then by its pid.

        marker: a string of the daemon's command line (its state path) that
        tells it apart from whatever process later gets the same pid.
        """
        with self.intent("pid", name=name, marker=marker, pid_file=str(pid_file)) as record:
            pid = proc.start_daemon(cmd, netns=netns, log_file=log_file, pid_file=pid_file)
        self.update(record, pid=pid)
        return pid

    def undo(self, record: Record) -> None:
        undo_record(record)
        self.discard(record)

    def undo_all(self) -> list[Record]:
        """Undo every record, newest first; returns what was undone.

        A failing undo does not stop the others: each failure is logged, its
        record stays in the journal, and UndoError names them all at the end.
        """
        undone: list[Record] = []
        failed: list[tuple[Record, str]] = []
        with deferred_signals():
            for record in reversed(self.records()):
                try:
                    self.undo(record)
                except Exception as e:  # every failure is reported below
                    why = e.message if isinstance(e, TLCError) else f"{type(e).__name__}: {e}"
                    log.warning("could not remove %s: %s", describe(record), why)
                    failed.append((record, why))
                else:
                    undone.append(record)
        if failed:
            what = "; ".join(f"{describe(r)}: {why}" for r, why in failed)
            raise UndoError(
                f"{len(failed)} of {len(failed) + len(undone)} parts of testbed "
                f"{self.directory.name} could not be removed: {what}",
                undone=undone, failed=failed,
                hint=f"the rest is removed; the journal keeps these: {self.path}")
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
        pid = recorded_pid(record)
        return f"process {'?' if pid is None else pid} ({record['name']})"
    if kind == "nft-table":
        return f"nftables table {record['family']} {record['name']}{where}"
    if kind == "sysctl":
        return f"sysctl {record['key']} (restored to {record['old']}){where}"
    if kind in _KINDS:
        return _KINDS[kind][1]
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


def recorded_pid(record: Record) -> int | None:
    """The pid of a "pid" record: written after the start, else read from its pid file."""
    if record.get("pid") is not None:
        return int(record["pid"])
    if record.get("pid_file"):
        return proc.read_pidfile(record["pid_file"])
    return None


def undo_record(record: Record) -> None:
    """Remove what `record` names if it is (still) there; raise if that fails."""
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
        proc.run(["ip", "netns", "delete", name], capture=True)
    elif kind in ("link", "enslaved"):
        if _ip(netns, "link", "show", "dev", record["name"]) == 0:
            argv = ["link", "delete", "dev", record["name"]] if kind == "link" \
                else ["link", "set", "dev", record["name"], "nomaster"]
            proc.run(["ip", *(["-n", netns] if netns else []), *argv], capture=True)
            if kind == "enslaved" and record.get("was_up") is False:
                _ip(netns, "link", "set", "dev", record["name"], "down")
    elif kind == "pid":
        daemon = recorded_pid(record)
        if daemon is not None and process_matches(daemon, record["marker"]):
            proc.kill_pid(daemon)
            if proc.pid_alive(daemon):
                raise TestbedError(f"process {daemon} is still running")
    elif kind == "nft-table":
        exists = proc.run(["nft", "list", "table", record["family"], record["name"]],
                          netns=netns, check=False, capture=True).returncode == 0
        if exists:
            proc.run(["nft", "delete", "table", record["family"], record["name"]], netns=netns,
                     capture=True)
    elif kind == "sysctl":
        proc.run(["sysctl", "-q", "-w", f"{record['key']}={record['old']}"], netns=netns,
                 capture=True)
    elif kind in _KINDS:
        _KINDS[kind][0](record)
    else:
        raise ValueError(f"unknown journal record kind: {kind}")
