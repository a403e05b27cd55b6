"""The machine the in-guest stages run on, and the backends that open one.

In the spirit of autopkgtest's virtualisation servers: the run asks a
backend for a machine, and the stages only ever run commands on it, copy
files up and down, and have it serve files to the guest. They never know
whether it is a libvirt domain this run booted on its own testbed
(machine/libvirt.py) or a machine someone else booted (machine/ssh.py).

    backend = open_backend("ssh:root@192.0.2.7:22", MachineOptions(ssh_key=..., host_key=...))
    with backend.open(job, opening) as machine:
        machine.run(["cat", "/proc/cmdline"], timeout=30)
        url = machine.serve(repository, "candidates")

A leaf module: it imports nothing of the stages, so that guest/ can type
its machine without reaching up to the backends.
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tempest_live_ci.errors import UsageError, shown

if TYPE_CHECKING:
    from tempest_live_ci.job import Job

# What a machine can do beyond running commands:
#   revert        it can be put back as it was before the run (a snapshot)
#   kvm           the guest has KVM: nova can boot real servers in it
#   root          commands run as root (the stages install packages)
#   serves-files  serve() publishes over the host's HTTP server, not by copying
CAPABILITIES = frozenset({"revert", "kvm", "root", "serves-files"})


@dataclass(frozen=True)
class Completed:
    """A command that ran on the machine to its end."""

    argv: tuple[str, ...]
    returncode: int
    stdout: bytes
    stderr: bytes

    def text(self) -> str:
        return self.stdout.decode(errors="replace")


@dataclass(frozen=True)
class GuestNetwork:
    """How the machine is addressed and how it reaches the archive, as the stages tell it.

    address is the machine's own address: the cloud's endpoints use it.
    apt_proxy is the proxy apt goes through (None: apt goes straight out);
    direct are the hosts apt reaches without it (the testbed's own servers);
    extra_proxy is where the job's archives outside Debian's are reached
    by their prefix (archives.py), None when apt reaches them itself.
    """

    address: str
    apt_proxy: str | None = None
    direct: tuple[str, ...] = ()
    extra_proxy: str | None = None


class Sink(Protocol):
    """Where a command's output goes as it comes: a file, a buffer, a line logger."""

    def write(self, data: bytes, /) -> object: ...


class Machine(Protocol):
    """A machine the in-guest stages run on; every failure to reach it is a TestbedError."""

    name: str  # what the logs call it: "root@192.168.100.2"
    capabilities: frozenset[str]
    urls: dict[str, str]  # what it serves from its start (Opening.serve), by name
    network: GuestNetwork

    def run(self, argv: Sequence[str], *, timeout: float,
            stdin: bytes | None = None) -> Completed:
        """Run a command to its end; its output comes back whole."""
        ...

    def stream(self, argv: Sequence[str], sink: Sink, *, timeout: float,
               stderr: Sink | None = None, stdin: bytes | None = None) -> int:
        """Run a command, its output written to `sink` (stderr too, unless given its own)
        as it comes; returns its exit status."""
        ...

    def put(self, local: Path, remote: str, *, mode: int | None = None) -> None: ...

    def get(self, remote: str, local: Path) -> None: ...

    def serve(self, local: Path, name: str) -> str:
        """A URL the guest can fetch `local` (a file, or a directory: its files) at.

        http:// when the host serves it, file:// when it was copied up;
        what was served goes when the machine is closed.
        """
        ...

    def alive(self) -> None:
        """Raise TestbedError if the machine is known to be gone (its domain stopped)."""
        ...

    def close(self) -> None: ...


@dataclass
class Opening:
    """What a run tells a backend when it asks for a machine."""

    run_id: str
    output_dir: Path
    # The run's timed stages (summary.json's "stages"): stage(name, title) is a context.
    stage: Callable[[str, str], contextlib.AbstractContextManager[None]]
    # What the backend learned for summary.json (image, boot times, accelerator).
    facts: dict[str, Any] = field(default_factory=dict)
    keep_on_failure: bool = False
    debug: bool = False
    testbed_wait: float = 0.0
    # Files the machine serves from its start, by name (the candidates' repository):
    # their URLs are its `urls` once it is open.
    serve: dict[str, Path] = field(default_factory=dict)


class Backend(Protocol):
    name: str

    def check(self, job: Job) -> None:
        """Before anything changes on the host: UsageError (exit 20) if the job cannot run here."""
        ...

    def plan(self, job: Job) -> list[str]:
        """The plan's lines about the machine."""
        ...

    def open(self, job: Job, opening: Opening) -> contextlib.AbstractContextManager[Machine]:
        """The machine for the duration of the block; everything it made undone after."""
        ...


@dataclass(frozen=True)
class MachineOptions:
    """The command line's options for a backend (only ssh has some)."""

    ssh_key: Path | None = None
    host_key: Path | None = None
    netns: str | None = None


# The backends by name, each in its own module (imported when named: an ssh
# run loads no libvirt). Each module has parse(rest, options) -> Backend,
# `rest` being what follows "NAME:" in --machine.
BACKENDS = {
    "libvirt": "tempest_live_ci.machine.libvirt",
    "ssh": "tempest_live_ci.machine.ssh",
}
DEFAULT = "libvirt"


def open_backend(spec: str, options: MachineOptions = MachineOptions()) -> Backend:
    """The backend --machine names; UsageError (exit 20) for anything it does not accept."""
    name, _, rest = spec.partition(":")
    if name not in BACKENDS:
        raise UsageError(f"--machine: unknown backend {shown(name)} (known: "
                         f"{', '.join(BACKENDS)}; e.g. ssh:root@HOST:22)")
    module = importlib.import_module(BACKENDS[name])
    backend: Backend = module.parse(rest, options)
    return backend
