"""The host's memory, promised to one run at a time.

`run` checks that the guest's RAM is free on the host before it builds an
image or boots. Two runs started together would both see the same free
memory, both boot, and both swap (a guest that swaps under TCG never
finishes). So the check and a promise of that memory are one step, taken
under a lock: each run's promise is a registry record of its own
(MemoryPromise) for its whole length. A later check subtracts from the
host's MemAvailable what the other live runs were promised and their guests
have not yet touched: a guest's qemu grows into its RAM as the guest uses
it, and what it already holds is no longer available, so it must not be
subtracted twice.

A promise whose run is gone (killed, even by SIGKILL) promises nothing: the
next check (or `cleanup`) removes its record. A guest kept after its run
(--keep-on-failure) holds only what its qemu already uses; the run's promise
ends with it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tempest_live_ci import paths, registry
from tempest_live_ci.errors import UsageError
from tempest_live_ci.log import log
from tempest_live_ci.vm.domain import HOST_RESERVE_MIB, host_available_mib


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


@registry.kind("memory")
@dataclass(kw_only=True)
class MemoryPromise(registry.Resource):
    """Host memory promised to run `name` (its guest's RAM), while the run lives."""

    memory_mib: int

    def undo(self) -> None:
        """Nothing but its record: a promise is a number."""

    def describe(self) -> str:
        return f"memory promise of {self.memory_mib} MiB"

    def why(self) -> str:
        return "host memory promised to a run that is gone"


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
    for entry in registry.entries():
        promise = entry.resource
        if not isinstance(promise, MemoryPromise) or promise.name == exclude:
            continue
        if not entry.alive:
            if registry.undo_leftover(entry):
                log.debug("removed the stale memory promise of run %s", promise.name)
            continue
        promises.append(Promise(promise.name, promise.memory_mib, qemu_rss_mib(promise.name)))
    return promises


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

    with _check_lock():
        others = live_promises(exclude=run_id)
        available = host_available_mib() if available_mib is None else available_mib
        left = available - sum(p.outstanding_mib for p in others)
        if memory_mib + reserve_mib > left:
            raise MemoryTaken(memory_mib, left, others)
        entry = registry.add(MemoryPromise(name=run_id, memory_mib=memory_mib))
    try:
        log.debug("promised %d MiB to run %s (%d MiB left after the other runs' promises)",
                  memory_mib, run_id, left)
        yield Promise(run_id, memory_mib, 0)
    finally:
        registry.discard(entry)


@contextlib.contextmanager
def admit_guest(run_id: str, memory_mib: int, *, what: str) -> Iterator[None]:
    """The guest's RAM must be free on the host, and stay promised to the run while the
    block runs; else UsageError (exit 20) naming `what` ("job.yaml: vm.memory: 8G").

    A guest that swaps under TCG never finishes; two runs started at once
    must not both count the same free memory.
    """

    try:
        with promise_memory(run_id, memory_mib, HOST_RESERVE_MIB):
            yield
    except MemoryTaken as e:
        others = ""
        if e.promises:
            names = ", ".join(f"{p.run_id}: {p.outstanding_mib} MiB" for p in e.promises)
            others = (f" once the {e.promised_mib} MiB promised to other runs' guests "
                      f"({names}) are counted")
        raise UsageError(
            f"{what} does not fit: the host has {e.available_mib} MiB available{others}, and "
            f"keeps {HOST_RESERVE_MIB} MiB for itself",
            hint="free memory on the host, wait for the other runs, or set a smaller vm.memory "
                 "(the profile's default is what it was measured to need)") from None
