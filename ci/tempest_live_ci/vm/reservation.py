"""The host's memory, promised to one run at a time.

`run` checks that the guest's RAM is free on the host before it builds an
image or boots. Two runs started together would both see the same free
memory, both boot, and both swap (a guest that swaps under TCG never
finishes). So the check and a promise of that memory are one step, taken
under a lock: each run writes what it was promised to
`<state>/.memory-<run id>` and holds an flock(2) on that file for its whole
length. A later check subtracts from the host's MemAvailable what the other
live runs were promised and their guests have not yet touched: a guest's
qemu grows into its RAM as the guest uses it, and what it already holds
is no longer available, so it must not be subtracted twice.

The kernel drops the flock when its holder dies, even by SIGKILL: a
promise whose file is not locked is stale, and the next check (or
`cleanup`) removes it. A guest kept after its run (--keep-on-failure)
holds only what its qemu already uses; the run's promise ends with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tempest_live_ci import paths, proc
from tempest_live_ci.log import log
from tempest_live_ci.vm.domain import host_available_mib

PREFIX = ".memory-"


@dataclass(frozen=True)
class Promise:
    """Memory promised to a live run, and what of it its guest does not use yet."""

    run_id: str
    memory_mib: int
    # Resident memory of the run's qemu now (0: not booted yet).
    used_mib: int

    @property
    def outstanding_mib(self) -> int:
        return max(0, self.memory_mib - self.used_mib)


class MemoryTaken(Exception):
    """The memory asked for is not free once the other runs' promises are kept."""

    def __init__(self, wanted_mib: int, available_mib: int, promises: list[Promise]) -> None:
        self.wanted_mib = wanted_mib
        self.available_mib = available_mib
        self.promises = promises
        super().__init__(f"{wanted_mib} MiB wanted, {available_mib} MiB left")

    @property
    def promised_mib(self) -> int:
        return sum(p.outstanding_mib for p in self.promises)


def promise_path(run_id: str) -> Path:
    return paths.state_dir() / f"{PREFIX}{run_id}"


def promised(path: Path) -> bool:
    """Does a live run hold this promise?"""
    return proc.flock_held(path)


def qemu_rss_mib(run_id: str) -> int:
    """Resident memory of the qemu running the run's guest (libvirt names it guest=<domain>)."""
    marker = f"guest={run_id},".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "cmdline").read_bytes():
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) // 1024
        except OSError:
            continue
    return 0


def live_promises(exclude: str = "") -> list[Promise]:
    """The promises of runs still running; stale ones (their run was killed) are removed."""
    promises = []
    directory = paths.state_dir()
    if not directory.is_dir():
        return []
    for path in sorted(directory.glob(f"{PREFIX}*")):
        run_id = path.name[len(PREFIX):]
        if run_id == exclude:
            continue
        if not promised(path):
            remove_stale(path)
            continue
        try:
            data = json.loads(path.read_text() or "{}")
            memory = int(data["memory_mib"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        promises.append(Promise(run_id, memory, qemu_rss_mib(run_id)))
    return promises


def remove_stale(path: Path) -> bool:
    """Remove a promise nobody holds; False if it is held (or already gone)."""
    if promised(path):
        return False
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
        log.debug("removed the stale memory promise %s", path)
        return True
    return False


@contextlib.contextmanager
def _check_lock() -> Iterator[None]:
    """One check at a time: an flock on the state directory itself (no file to leave)."""
    directory = paths.state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def promise_memory(run_id: str, memory_mib: int, reserve_mib: int,
                   available_mib: int | None = None) -> Iterator[Promise]:
    """Promise `memory_mib` to the run while the block runs, or raise MemoryTaken.

    `reserve_mib` is what the host keeps for itself; `available_mib` is the
    host's MemAvailable (read now when None).
    """
    path = promise_path(run_id)
    with contextlib.ExitStack() as stack:
        with _check_lock():
            others = live_promises(exclude=run_id)
            available = host_available_mib() if available_mib is None else available_mib
            left = available - sum(p.outstanding_mib for p in others)
            if memory_mib + reserve_mib > left:
                raise MemoryTaken(memory_mib, left, others)
            handle = stack.enter_context(open(path, "w"))
            # Unlinked before the flock goes with the close: no one sees it stale.
            stack.callback(_unlink, path)
            fcntl.flock(handle, fcntl.LOCK_EX)
            handle.write(json.dumps({"run_id": run_id, "memory_mib": memory_mib,
                                     "pid": os.getpid()}))
            handle.flush()
        log.debug("promised %d MiB to run %s (%d MiB left after the other runs' promises)",
                  memory_mib, run_id, left)
        yield Promise(run_id, memory_mib, 0)


def _unlink(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
