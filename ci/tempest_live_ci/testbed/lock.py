"""One user at a time on a persistent testbed.

A persistent testbed (`host setup` in the host namespace) has one tap, one
guest MAC and address, one boot script and one domain name: two runs on it
would boot into each other. So a run takes the testbed's lock for its whole
length, and `host setup` / `host teardown` take it while they change the
testbed. The lock is an flock(2) on `<state>/.lock-<name>`: the kernel
releases it when its holder dies, even by SIGKILL, so no stale lock ever
needs cleaning up. Its content says who holds it, for the message of whoever
finds it taken.

A run that finds the testbed taken waits for it, at most `wait` seconds
(`run --testbed-wait`, 0 by default: refused at once), saying so as it
waits; then it is refused with one line naming the holder (exit 16: a
retry later makes sense). A guest kept on the testbed (--keep-on-failure)
holds it too, until `vm destroy` removes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tempest_live_ci import paths, proc, registry
from tempest_live_ci.errors import TestbedError
from tempest_live_ci.log import log

# How often a waiting run says it still waits.
PROGRESS_EVERY = 30.0
POLL = 0.2


def lock_path(name: str) -> Path:
    # A dot first: never a testbed name (testbed/config.py: check_name), never
    # a directory `cleanup` looks at.
    return paths.state_dir() / f".lock-{name}"


def _holder(handle: IO[str]) -> dict[str, Any]:
    handle.seek(0)
    try:
        data = json.loads(handle.read() or "{}")
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def describe_holder(data: dict[str, Any]) -> str:
    """"run tlc-0123abcd (pid 42, since 12:00:03)", or "host setup (pid 42, ...)"."""
    what = data.get("what") or "another process"
    pid = data.get("pid")
    since = data.get("since")
    details = [f"pid {pid}" if pid else "",
               f"since {time.strftime('%H:%M:%S', time.localtime(since))}" if since else ""]
    details = [d for d in details if d]
    return f"{what} ({', '.join(details)})" if details else str(what)


@dataclass(frozen=True)
class GuestRecord:
    """What vm.json in a testbed's state directory says of the guest booted there."""

    run_id: str
    # A `keep` file beside it: left running on purpose (vm boot, --keep-on-failure).
    kept: bool
    # The process that wrote it still runs (a run in its guest stages).
    live: bool

    @property
    def stale(self) -> bool:
        """Left by a run that was killed: neither kept nor anyone's (`cleanup` removes it)."""
        return not self.kept and not self.live


def guest_record(directory: Path) -> GuestRecord | None:
    """The guest recorded in `directory` (vm.json, vm/boot.py), if one is.

    Live while the registry's record of it (GuestState) has a live owner; a
    vm.json without one (older versions, a kill) is nobody's.
    """
    state = directory / "vm.json"
    if not state.exists():
        return None
    try:
        data = json.loads(state.read_text())
    except (OSError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    live = any(e.alive for e in registry.entries()
               if isinstance(e.resource, GuestState) and e.resource.path == str(state))
    return GuestRecord(str(data.get("run_id") or "?"), (directory / "keep").exists(), live)


@registry.kind("guest-state")
@dataclass(kw_only=True)
class GuestState(registry.Resource):
    """vm.json of the guest of run `run_id` on testbed `name` (vm/boot.py), written once it
    is up: while it is there, the testbed is the guest's. Kept with the guest (vm boot,
    --keep-on-failure)."""

    path: str
    run_id: str

    def undo(self) -> None:
        Path(self.path).unlink(missing_ok=True)
        # A guest kept on a persistent testbed kept it with this file (vm destroy's way).
        Path(self.path).with_name("keep").unlink(missing_ok=True)

    def describe(self) -> str:
        return f"the record of the guest of run {self.run_id} ({self.path})"

    def why(self) -> str:
        return f"the record of the guest of run {self.run_id}, whose run is gone"


def _try(handle: IO[str], directory: Path, guests: bool) -> str | None:
    """Take the lock if it is free (and, with `guests`, no guest recorded there holds the
    testbed); else say who has it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return describe_holder(_holder(handle))
    record = guest_record(directory) if guests else None
    if record is not None:
        fcntl.flock(handle, fcntl.LOCK_UN)
        if record.stale:
            # Its guest may still run on the tap: not a testbed to boot another one on.
            return (f"the guest of run {record.run_id}, whose run was killed "
                    "(tempest-live-ci cleanup removes it)")
        return (f"the guest of run {record.run_id}, kept running (tempest-live-ci vm destroy "
                f"--run-id {record.run_id} frees it)")
    return None


@contextlib.contextmanager
def testbed_lock(name: str, what: str, *, wait: float = 0.0, guests: bool = True,
                 directory: Path | None = None) -> Iterator[None]:
    """Hold testbed `name` for the block; `what` says who holds it ("run tlc-...").

    Waits up to `wait` seconds for another holder (a run, a `host setup`,
    and with `guests` a kept guest) to let go, with a message when the wait
    starts and every PROGRESS_EVERY seconds; then TestbedError, in one line
    naming the holder. `host setup` and `host teardown` pass guests=False:
    a person tearing the testbed down under a kept guest means it.
    """
    path = lock_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    directory = directory or path.parent / name
    with open(path, "a+") as handle:
        started = time.monotonic()
        said = 0.0
        while True:
            holder = _try(handle, directory, guests)
            if holder is None:
                break
            waited = time.monotonic() - started
            if waited >= wait:
                raise TestbedError(
                    f"testbed {name} is in use by {holder}"
                    + (f"; waited {waited:.0f}s" if wait else ""),
                    hint="try again later, or let the run wait: tempest-live-ci run "
                         "--testbed-wait SECONDS" if what.startswith("run ") else None)
            if said == 0.0 or waited - said >= PROGRESS_EVERY:
                log.info("testbed %s is in use by %s: waiting for it (%.0fs of %.0fs)",
                         name, holder, waited, wait)
                said = max(waited, 1e-9)
            time.sleep(POLL)
        try:
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"what": what, "pid": os.getpid(),
                                     "identity": proc.identity(), "since": time.time()}))
            handle.flush()
            if said:
                log.info("testbed %s is free now: taken by %s", name, what)
            yield
        finally:
            with contextlib.suppress(OSError):
                handle.seek(0)
                handle.truncate()
                handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
