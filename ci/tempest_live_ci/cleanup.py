"""Find and remove what killed runs left behind.

Only what this tool made and whose owner process is gone is touched; what
was kept on purpose (`vm boot`, --keep-on-failure, `host setup --netns`) is
left alone unless asked. What is looked at:

- testbeds: every state directory with a journal (any name, `vm boot
  --run-id NAME` too) whose `owner` process is gone: the journal is undone
  and the daemons with pid files there are stopped;
- network namespaces: those marked by testbed/netns.py (the loopback's
  alias names the owner and the state directory) whose owner is gone,
  scratch namespaces tlc-probe-PID, and unmarked run-id namespaces older
  than YOUNG whose daemons name no state directory. A namespace whose state
  directory exists under another state root (a test's, a concurrent tool's)
  is left to that root's cleanup;
- the apt proxy: the unix-socket socat of a killed user (its pid file names
  the user's pid), and the apt-cacher-ng started with this state directory
  that no live run uses any more;
- image builds: `.build-*` directories of the image store whose build lock
  nobody holds, with the live-build processes still working in them and
  the chroot's mounts; `.old-*` directories of a dead pid; free `.lock-*`
  files;
- libvirt: the private libvirtd of a run on a persistent testbed whose run
  is gone (its domains destroyed first: libvirtd leaves guests running when
  it stops), and domains of the system libvirtd whose metadata names an
  owner that is gone;
- the record of a guest (vm.json) a killed run left on a persistent
  testbed: not kept, its writer gone;
- the host memory a killed run had been promised (`.memory-<run id>`,
  vm/reservation.py) whose flock nobody holds.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import click

from tempest_live_ci import paths, proc, registry
from tempest_live_ci.errors import ExitCode, TLCError
from tempest_live_ci.log import log
from tempest_live_ci.testbed.journal import (
    describe,
    netns_exists,
    process_matches,
    undo_record,
)

RUN_ID = re.compile(r"^tlc-[0-9a-f]{8}$")
PROBE = re.compile(r"^tlc-probe-(\d+)$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
# An unmarked namespace younger than this may be a run being set up by an
# older version of the tool (or another state directory): not yet a leftover.
YOUNG = 30.0


def _nothing() -> list[str]:
    return []


@dataclass(frozen=True)
class Leftover:
    name: str  # what the output lines start with: a run id, a namespace, a path
    reason: str
    kept: bool = False
    remove: Callable[[], list[str]] = field(default=_nothing, compare=False, repr=False)


# --- testbeds -------------------------------------------------------------------------------

def _mode(directory: Path) -> str | None:
    try:
        return str(json.loads((directory / "testbed.json").read_text())["mode"])
    except (OSError, ValueError, KeyError):
        return None


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


# --- network namespaces ---------------------------------------------------------------------

def _namespace_names() -> list[str]:
    out = proc.run(["ip", "netns", "list"], capture=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def _netns_age(name: str) -> float:
    # /run/netns/NAME is the namespace's nsfs inode: its times are its creation.
    return _age(Path("/run/netns") / name)


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [os.fsdecode(a) for a in raw.split(b"\0") if a]


def _state_dirs_of_processes(name: str) -> set[Path]:
    """State directories `<root>/<name>` that the processes inside namespace `name` name."""
    pids = proc.run(["ip", "netns", "pids", name], check=False, capture=True).stdout.split()
    found = set()
    for pid in pids:
        for arg in _cmdline(int(pid)):
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


def _namespaces() -> Iterator[Leftover]:
    """Namespaces no record names: of a state directory removed while its run lived, of a
    scratch probe, of older versions."""
    from tempest_live_ci.testbed.netns import read_mark

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
            yield Leftover(name, "a namespace whose run is gone", False,
                           partial(_remove_namespace, name))
            continue
        probe = PROBE.match(name)
        if probe is not None:
            if not proc.pid_alive(int(probe.group(1))):
                yield Leftover(name, "a scratch namespace of a process that is gone", False,
                               partial(_remove_namespace, name))
            continue
        if RUN_ID.match(name):
            if _netns_age(name) < YOUNG:
                continue
            if any(_claimed(state, registered, name) for state in _state_dirs_of_processes(name)):
                continue
            yield Leftover(name, "a namespace without a state directory", False,
                           partial(_remove_namespace, name))


def _lock_free(path: Path) -> bool:
    """Nobody holds the flock of `path` (the apt proxy's registry): nobody is starting it."""
    return not proc.flock_held(path)


# --- the apt proxy --------------------------------------------------------------------------

def _remove_socat(pid_file: Path, pid: int | None, marker: str) -> list[str]:
    from tempest_live_ci.testbed.aptproxy import remove_socket

    removed = []
    sockets = [a.split(":", 1)[1].split(",", 1)[0] for a in _cmdline(pid or -1)
               if a.startswith("UNIX-LISTEN:")]
    if pid is not None and process_matches(pid, marker) and proc.kill_pid(pid):
        removed.append(f"process {pid} (socat)")
    for socket in sockets:
        if remove_socket(Path(socket)):
            removed.append(f"socket {socket}")
    own = pid_file.parent / f"acng-{marker.removeprefix('acng-')}"
    with contextlib.suppress(OSError):
        own.unlink()
        removed.append(f"socket {own}")
    pid_file.unlink(missing_ok=True)
    return removed


@dataclass(frozen=True)
class _Socat:
    """A socat of the apt proxy, found by its command line (testbed/aptproxy.py)."""

    pid: int
    argument: str  # UNIX-LISTEN:<socket>,... (the user's) or UNIX-CONNECT:<socket> (a forward)
    socket: Path  # acng-<user>-<token>.sock
    user: int  # the pid of the run it serves
    port: int | None  # the daemon's port it connects to (the user's own socat)


def _proxy_socats() -> list[_Socat]:
    from tempest_live_ci.testbed.aptproxy import SOCKET_NAME

    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = _cmdline(int(entry.name))
        if not argv or os.path.basename(argv[0]) != "socat":
            continue
        for argument in argv[1:]:
            kind, _, rest = argument.partition(":")
            if kind not in ("UNIX-LISTEN", "UNIX-CONNECT"):
                continue
            socket = Path(rest.split(",", 1)[0])
            name = SOCKET_NAME.match(socket.name)
            if name is None:
                continue
            port = None
            for other in argv[1:]:
                if other.startswith("TCP:") and other.rsplit(":", 1)[1].isdigit():
                    port = int(other.rsplit(":", 1)[1])
            found.append(_Socat(int(entry.name), argument, socket, int(name.group(1)), port))
    return found


def _orphaned_socats(socats: list[_Socat]) -> Iterator[Leftover]:
    """Socats of a user that is gone whose state directory went too (a test's, removed while
    its run was live): no pid file or journal is left to find them by, only their command
    line. While the state directory is there, its pid files and journals say what is whose
    (a socat kept with a testbed outlives its user on purpose)."""
    from tempest_live_ci.testbed.aptproxy import socket_registry

    for socat in socats:
        if proc.pid_alive(socat.user):
            continue
        registry = socket_registry(socat.socket)
        if registry is None or registry.is_dir():
            continue
        yield Leftover(f"socat (pid {socat.pid}, {socat.socket})",
                       f"the apt proxy's socat of process {socat.user}, which is gone with its "
                       f"state directory {registry}", False,
                       partial(_remove_orphaned_socat, socat))


def _remove_orphaned_socat(socat: _Socat) -> list[str]:
    from tempest_live_ci.testbed.aptproxy import remove_socket

    removed = []
    if process_matches(socat.pid, socat.argument) and proc.kill_pid(socat.pid):
        removed.append(f"process {socat.pid} (socat)")
    if remove_socket(socat.socket):
        removed.append(f"socket {socat.socket}")
    return removed


def _apt_proxy() -> Iterator[Leftover]:
    from tempest_live_ci.testbed import aptproxy
    from tempest_live_ci.testbed.listen import listening_ports

    own = aptproxy.proxy_state_dir()
    socats = _proxy_socats()
    yield from _orphaned_socats(socats)
    # The daemons' ports that a live user's socat still connects to.
    in_use = {s.port for s in socats if s.port is not None and proc.pid_alive(s.user)}
    if own.is_dir():
        for pid_file in sorted([*own.glob("socat-*.pid"), *own.glob("forward-*.pid")]):
            # socat-<pid>-<token>.pid, forward-<pid>-<token>-...: <pid> is the user's.
            parts = pid_file.stem.split("-")
            if len(parts) < 3 or not parts[1].isdigit():
                continue
            if proc.pid_alive(int(parts[1])):
                continue
            user = f"{parts[1]}-{parts[2]}"
            marker = f"acng-{user}.sock"
            pid = proc.read_pidfile(pid_file)
            alive = pid is not None and process_matches(pid, marker)
            reason = (f"the apt proxy's socat of process {parts[1]}, which is gone" if alive
                      else "the pid file of a socat that is gone")
            yield Leftover(str(pid_file), reason, False,
                           partial(_remove_socat, pid_file, pid, marker))
    registered = aptproxy.running_daemons()
    for pid, started_in in aptproxy.daemon_processes():
        if not started_in.exists() and not in_use & set(listening_ports(pid)):
            # Its state directory is gone, whichever it was (a test's): no registry, no
            # configuration; and no live run's socat connects to it.
            yield Leftover(f"apt-cacher-ng (pid {pid}, {started_in})",
                           "its state directory is gone, and no live run uses it", False,
                           partial(_stop_orphan_apt_cacher_ng, pid, started_in))
            continue
        # Started from our state directory (Debian's archive's daemon, or one
        # of extra archives below it), but no registry names it (the
        # directory was removed, the pid file lost in a kill): no run can
        # count itself as its user, so none uses it; nobody would stop it.
        # Unless a run holds the registry's lock: it is starting it right now.
        if own.resolve() not in (started_in.resolve(), started_in.resolve().parent) \
                or started_in in registered or not _lock_free(aptproxy.lock_path(started_in)):
            continue
        yield Leftover(f"apt-cacher-ng (pid {pid}, {started_in})",
                       "no registry of its users is left", False,
                       partial(_stop_orphan_apt_cacher_ng, pid, started_in))
    running = []
    for directory in registered:
        # The daemon of Debian's archive in `own`, those of extra archives below it.
        if own.resolve() not in (directory.resolve(), directory.parent.resolve()):
            continue  # started with another state directory: its cleanup judges it
        running.append(directory.resolve())
        with aptproxy.locked(directory):
            users = aptproxy.read_users(directory)
        if users:
            continue
        pid = aptproxy.daemon_pid(directory)
        yield Leftover(f"apt-cacher-ng (pid {pid}, {directory})", "no run uses it any more",
                       False, partial(_stop_apt_cacher_ng, directory))
    for directory in sorted(own.glob(f"{aptproxy.EXTRA_PREFIX}*")) if own.is_dir() else []:
        if directory.resolve() in running or not directory.is_dir():
            continue
        with aptproxy.locked(directory):
            users = aptproxy.read_users(directory)
        if not users:
            yield Leftover(str(directory), "the directory of an extra archives' apt-cacher-ng "
                           "that is gone", False, partial(_remove_extra_dir, directory))


def _stop_orphan_apt_cacher_ng(pid: int, started_in: Path) -> list[str]:
    from tempest_live_ci.testbed import aptproxy

    if not any(p == pid and d == started_in for p, d in aptproxy.daemon_processes()):
        return []  # gone meanwhile, or its pid is someone else's now
    return [f"process {pid} (apt-cacher-ng)"] if proc.kill_pid(pid) else []


def _stop_apt_cacher_ng(directory: Path) -> list[str]:
    from tempest_live_ci.testbed import aptproxy

    with aptproxy.locked(directory):
        if aptproxy.read_users(directory):
            return []  # a run came meanwhile
        pid = aptproxy.daemon_pid(directory)
        aptproxy.stop_daemon(directory)
        if aptproxy.is_extra(directory):
            shutil.rmtree(directory, ignore_errors=True)
    return [f"process {pid} (apt-cacher-ng)"]


def _remove_extra_dir(directory: Path) -> list[str]:
    from tempest_live_ci.testbed import aptproxy

    with aptproxy.locked(directory):
        if aptproxy.read_users(directory) or aptproxy.daemon_pid(directory) is not None:
            return []  # a run came meanwhile
        shutil.rmtree(directory, ignore_errors=True)
    return [f"directory {directory}"]


# --- the registry ---------------------------------------------------------------------------

def _registered(include_kept: bool) -> Iterator[Leftover]:
    for entry in registry.leftovers(include_kept):
        yield Leftover(entry.resource.name, entry.resource.why(),
                       entry.kept, partial(registry.undo_leftover, entry, include_kept))


# --- all of it ------------------------------------------------------------------------------

def find_leftovers(include_kept: bool = False) -> list[Leftover]:
    found = list(_registered(include_kept))
    found += _namespaces()
    found += _apt_proxy()
    return found


def clean_up(*, dry_run: bool = False, include_kept: bool = False) -> list[str]:
    """Remove every leftover; return one line per thing removed (or found, with dry_run).

    A leftover that cannot be removed is logged as an error and named in a
    line; the others are removed all the same.
    """
    lines: list[str] = []
    for leftover in find_leftovers(include_kept):
        if dry_run:
            lines.append(f"{leftover.name}: {leftover.reason}")
            continue
        try:
            removed = leftover.remove()
        except TLCError as e:
            log.error("%s: %s", leftover.name, e.message)
            lines.append(f"{leftover.name}: NOT removed: {e.message}")
            continue
        for what in removed:
            lines.append(f"{leftover.name}: removed {what}")
    return lines


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--include-kept", is_flag=True,
              help="Also remove runs kept on purpose (--keep-on-failure, vm boot).")
def cleanup(dry_run: bool, include_kept: bool) -> int:
    """Remove what killed runs left behind (namespaces, daemons, domains, state)."""
    from tempest_live_ci.testbed.config import require_root

    require_root()
    lines = clean_up(dry_run=dry_run, include_kept=include_kept)
    for line in lines:
        click.echo(line)
    if not lines:
        log.info("nothing to clean up")
    return ExitCode.OK
