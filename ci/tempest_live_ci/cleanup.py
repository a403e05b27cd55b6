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
import fcntl
import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tempest_live_ci import paths, proc
from tempest_live_ci.errors import ExitCode, TestbedError, TLCError
from tempest_live_ci.image.model import images_dir
from tempest_live_ci.lazy import installed, lazy_module
from tempest_live_ci.log import log
from tempest_live_ci.testbed import aptproxy  # with it, how the journal undoes its records
from tempest_live_ci.testbed.aptproxy import SOCKET_NAME, remove_socket, socket_registry
from tempest_live_ci.testbed.config import require_root
from tempest_live_ci.testbed.journal import (
    Journal,
    UndoError,
    describe,
    netns_exists,
    process_matches,
    undo_record,
)
from tempest_live_ci.testbed.listen import listening_ports
from tempest_live_ci.testbed.lock import guest_record
from tempest_live_ci.testbed.netns import read_mark
from tempest_live_ci.vm import reservation
from tempest_live_ci.vm.domain import destroy_domain, metadata_of
from tempest_live_ci.vm.libvirtd import (
    SYSTEM_URI,
    open_connection,
    private_uri,
    stop_private_libvirtd,
    system_libvirt_answers,
)
from tempest_live_ci.vm.reservation import remove_stale

if TYPE_CHECKING:
    import libvirt
else:
    libvirt = lazy_module("libvirt")

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


def _age(path: Path) -> float:
    try:
        return time.time() - path.stat().st_mtime
    except OSError:
        return 0.0


def _kill_recorded_pids(directory: Path) -> list[str]:
    """Daemons whose pid files sit in a state directory (libvirtd, socat, ...)."""
    stopped = []
    for pid_file in sorted(directory.rglob("*.pid")):
        pid = proc.read_pidfile(pid_file)
        if pid is not None and process_matches(pid, str(directory)) and proc.kill_pid(pid):
            stopped.append(f"process {pid} ({pid_file.stem})")
    return stopped


def _undo_directory(directory: Path) -> list[str]:
    """Undo the journal of a state directory, then remove it (kept if some undo failed)."""
    removed = _kill_recorded_pids(directory)
    journal = Journal(directory)
    try:
        removed += [describe(r) for r in journal.undo_all()]
    except UndoError as e:
        removed += [describe(r) for r in e.undone]
        raise TestbedError(e.message + " (also removed: " + (", ".join(removed) or "nothing")
                           + ")", hint=e.hint) from None
    shutil.rmtree(directory, ignore_errors=True)
    return removed


def _testbeds(include_kept: bool, seen: set[str]) -> Iterator[Leftover]:
    root = paths.state_dir()
    if not root.is_dir():
        return
    for directory in sorted(root.iterdir()):
        if not directory.is_dir() or not _NAME.match(directory.name) \
                or directory.name == "apt-cacher-ng":
            continue
        if not ((directory / "journal.json").exists() or (directory / "testbed.json").exists()):
            continue
        seen.add(directory.name)
        if _mode(directory) == "persistent" or _owner_alive(directory):
            continue
        if not (directory / "owner").exists() and _age(directory) < YOUNG:
            continue  # being set up this very moment
        kept = (directory / "keep").exists()
        if kept and not include_kept:
            log.info("kept on purpose, left alone: %s (tempest-live-ci vm destroy --run-id %s)",
                     directory.name, directory.name)
            continue
        yield Leftover(directory.name, "its run is gone", kept,
                       partial(_undo_directory, directory))


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


def _claimed(state: Path, include_kept: bool, what: str) -> bool:
    """Does a state directory still claim its namespace?

    Yes while it exists in another state root (that root's `cleanup` judges
    it: tests and concurrent tools keep their own), or in ours while its
    owner lives or it is kept on purpose.
    """
    if not state.is_dir():
        return False
    if state.parent.resolve() != paths.state_dir().resolve():
        log.debug("%s belongs to %s, another state directory: left to its cleanup", what, state)
        return True
    if _owner_alive(state):
        return True
    if (state / "keep").exists() and not include_kept:
        log.info("kept on purpose, left alone: %s (%s)", what, state)
        return True
    return False


def _remove_namespace(name: str, state: Path | None) -> list[str]:
    removed = []
    if state is not None and state.is_dir() and (state / "journal.json").exists():
        removed += _undo_directory(state)
    if netns_exists(name):
        record = {"kind": "netns", "name": name}
        undo_record(record)
        removed.append(describe(record))
    return removed


def _namespaces(include_kept: bool, seen: set[str]) -> Iterator[Leftover]:
    for name in _namespace_names():
        if name in seen or not _NAME.match(name):
            continue
        mark = read_mark(name)
        if mark is not None:
            if proc.identity_alive(mark.owner):
                continue
            state = mark.state_dir
            if state is not None and _claimed(state, include_kept, name):
                continue
            yield Leftover(name, "a namespace whose run is gone", False,
                           partial(_remove_namespace, name, state))
            continue
        probe = PROBE.match(name)
        if probe is not None:
            if not proc.pid_alive(int(probe.group(1))):
                yield Leftover(name, "a scratch namespace of a process that is gone", False,
                               partial(_remove_namespace, name, None))
            continue
        if RUN_ID.match(name):
            if _netns_age(name) < YOUNG:
                continue
            if any(_claimed(state, include_kept, name) for state in _state_dirs_of_processes(name)):
                continue
            yield Leftover(name, "a namespace without a state directory", False,
                           partial(_remove_namespace, name, None))


# --- the apt proxy --------------------------------------------------------------------------

def _remove_socat(pid_file: Path, pid: int | None, marker: str) -> list[str]:
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
    removed = []
    if process_matches(socat.pid, socat.argument) and proc.kill_pid(socat.pid):
        removed.append(f"process {socat.pid} (socat)")
    if remove_socket(socat.socket):
        removed.append(f"socket {socat.socket}")
    return removed


def _apt_proxy() -> Iterator[Leftover]:
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
    if not any(p == pid and d == started_in for p, d in aptproxy.daemon_processes()):
        return []  # gone meanwhile, or its pid is someone else's now
    return [f"process {pid} (apt-cacher-ng)"] if proc.kill_pid(pid) else []


def _stop_apt_cacher_ng(directory: Path) -> list[str]:
    with aptproxy.locked(directory):
        if aptproxy.read_users(directory):
            return []  # a run came meanwhile
        pid = aptproxy.daemon_pid(directory)
        aptproxy.stop_daemon(directory)
        if aptproxy.is_extra(directory):
            shutil.rmtree(directory, ignore_errors=True)
    return [f"process {pid} (apt-cacher-ng)"]


def _remove_extra_dir(directory: Path) -> list[str]:
    with aptproxy.locked(directory):
        if aptproxy.read_users(directory) or aptproxy.daemon_pid(directory) is not None:
            return []  # a run came meanwhile
        shutil.rmtree(directory, ignore_errors=True)
    return [f"directory {directory}"]


# --- image builds ---------------------------------------------------------------------------

def _lock_free(path: Path) -> bool:
    """Nobody holds the flock of `path` (a build lock): its builder is gone."""
    return not proc.flock_held(path)


def _unescape_mount(field_: str) -> str:
    """/proc/mounts writes space, tab, newline and backslash as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field_)


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below `directory`, deepest first."""
    top = str(directory.resolve())
    found = []
    for line in Path("/proc/mounts").read_text().splitlines():
        point = _unescape_mount(line.split()[1])
        if point == top or point.startswith(top + "/"):
            found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def processes_under(directory: Path) -> list[int]:
    """Processes whose working directory or root is in `directory` (a chroot's apt, dpkg...)."""
    top = str(directory.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for link in ("cwd", "root"):
            try:
                target = os.readlink(entry / link)
            except OSError:
                continue
            if target == top or target.startswith(top + "/"):
                found.append(int(entry.name))
                break
    return found


def _stop_processes(pids: list[int], grace: float = 5.0) -> list[str]:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    proc.wait_until(lambda: not any(proc.pid_alive(p) for p in pids), grace)
    for pid in pids:
        if proc.pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return [f"process {pid}" for pid in pids]


def _remove_build(directory: Path) -> list[str]:
    removed = _stop_processes(processes_under(directory))
    for _ in range(5):
        points = mounts_under(directory)
        if not points:
            break
        for point in points:
            if proc.run(["umount", point], check=False, capture=True).returncode != 0:
                proc.run(["umount", "-l", point], check=False, capture=True)
            removed.append(f"mount {point}")
    left = mounts_under(directory)
    if left:
        raise TestbedError(f"cannot unmount {left[0]} (and {len(left) - 1} more)")
    shutil.rmtree(directory, ignore_errors=True)
    removed.append(f"directory {directory}")
    return removed


def _remove_lock(path: Path) -> list[str]:
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return []  # a build started meanwhile
        path.unlink(missing_ok=True)
    return [f"lock file {path}"]


def _image_builds() -> Iterator[Leftover]:
    store = images_dir()
    if not store.is_dir():
        return
    entries = sorted(store.iterdir())
    building = set()
    for entry in entries:
        build = re.match(r"^\.build-([0-9a-f]+)-", entry.name)
        if build is not None and entry.is_dir():
            digest = build.group(1)
            if not _lock_free(store / f".lock-{digest}"):
                building.add(digest)
                continue
            yield Leftover(str(entry), "an image build whose builder is gone", False,
                           partial(_remove_build, entry))
            continue
        old = re.match(r"^\.old-.+-(\d+)$", entry.name)
        if old is not None and entry.is_dir() and not proc.pid_alive(int(old.group(1))):
            yield Leftover(str(entry), "an image replaced by a build that is gone", False,
                           partial(_remove_build, entry))
    for entry in entries:
        lock = re.match(r"^\.lock-([0-9a-f]+)$", entry.name)
        if lock is not None and lock.group(1) not in building and _lock_free(entry):
            yield Leftover(str(entry), "a build lock nobody holds", False,
                           partial(_remove_lock, entry))


# --- libvirt --------------------------------------------------------------------------------

def _kept_domains() -> set[str]:
    """Domains recorded by `vm boot` or --keep-on-failure (vm.json) under the state root;
    not those of a record a killed run left (stale: neither kept nor its writer alive)."""
    names = set()
    for state in paths.state_dir().glob("*/vm.json"):
        record = guest_record(state.parent)
        if record is None or record.stale:
            continue
        with contextlib.suppress(OSError, ValueError, KeyError):
            names.add(str(json.loads(state.read_text())["domain"]))
    return names


def _stale_guest_records() -> Iterator[Leftover]:
    """vm.json a killed run left on a persistent testbed: the testbed is refused to every
    later run while it is there (testbed/lock.py), and no `vm destroy` would ever come.
    (An isolated testbed's state directory goes as a whole: _testbeds.)"""
    root = paths.state_dir()
    if not root.is_dir():
        return
    for directory in sorted(root.iterdir()):
        if not directory.is_dir() or _mode(directory) != "persistent":
            continue
        record = guest_record(directory)
        if record is not None and record.stale:
            yield Leftover(directory.name, f"the record of the guest of run {record.run_id}, "
                           "whose run is gone", False,
                           partial(_remove_guest_record, directory))


def _remove_guest_record(directory: Path) -> list[str]:
    record = guest_record(directory)
    if record is None or not record.stale:
        return []  # kept or taken meanwhile
    (directory / "vm.json").unlink(missing_ok=True)
    return [f"the record of the guest of run {record.run_id} ({directory / 'vm.json'})"]


def stale_domains(conn: Any, include_kept: bool = False) -> list[tuple[Any, str, bool]]:
    """Our domains on `conn` whose owner process is gone: (domain, reason, kept).

    Ours: the domain's metadata is tempest-live-ci's (vm/domain.py); its
    owner is the run's process. A domain without an owner (older versions)
    is left alone.
    """
    kept_names = _kept_domains()
    found = []
    for domain in conn.listAllDomains():
        metadata = metadata_of(domain)
        if metadata is None or not metadata.get("owner"):
            continue
        if proc.identity_alive(metadata["owner"]):
            continue
        kept = domain.name() in kept_names
        if kept and not include_kept:
            log.info("kept on purpose, left alone: domain %s", domain.name())
            continue
        found.append((domain, f"a libvirt domain of run {metadata.get('id')}, which is gone",
                      kept))
    return found


def _destroy(uri: str, name: str) -> list[str]:
    conn = open_connection(uri)
    try:
        destroy_domain(conn.lookupByName(name))
    except libvirt.libvirtError:
        return []
    finally:
        conn.close()
    return [f"domain {name}"]


def _stop_run_libvirtd(directory: Path, include_kept: bool) -> list[str]:
    """A persistent testbed's private libvirtd of a run that is gone: domains first."""
    removed = []
    with contextlib.suppress(libvirt.libvirtError):
        conn = libvirt.open(private_uri(directory / "libvirt"))
        try:
            for domain in conn.listAllDomains():
                name = domain.name()
                destroy_domain(domain)
                removed.append(f"domain {name}")
        finally:
            conn.close()
    pid = proc.read_pidfile(directory / "libvirtd.pid")
    if stop_private_libvirtd(directory):
        removed.append(f"process {pid} (libvirtd)")
    if include_kept:
        (directory / "vm.json").unlink(missing_ok=True)
        (directory / "keep").unlink(missing_ok=True)
    return removed


def _libvirt(include_kept: bool) -> Iterator[Leftover]:
    root = paths.state_dir()
    if root.is_dir():
        for directory in sorted(root.iterdir()):
            if not directory.is_dir() or _mode(directory) != "persistent":
                continue
            pid = proc.read_pidfile(directory / "libvirtd.pid")
            if pid is None or not process_matches(pid, str(directory)):
                continue
            try:
                owner = (directory / "libvirtd.owner").read_text()
            except OSError:
                continue  # started by an older version: whose it is, is unknown
            if proc.identity_alive(owner):
                continue
            kept = (directory / "keep").exists()
            if kept and not include_kept:
                log.info("kept on purpose, left alone: the guest on testbed %s "
                         "(tempest-live-ci vm destroy)", directory.name)
                continue
            yield Leftover(directory.name, "the private libvirtd of a run that is gone", kept,
                           partial(_stop_run_libvirtd, directory, include_kept))
    if not installed("libvirt"):
        return  # python3-libvirt is not installed: no domains of ours either
    if not system_libvirt_answers():
        return
    conn = open_connection(SYSTEM_URI)
    try:
        stale = [(d.name(), reason, kept) for d, reason, kept in stale_domains(conn, include_kept)]
    finally:
        conn.close()
    for name, reason, kept in stale:
        yield Leftover(name, reason, kept,
                       partial(_destroy, SYSTEM_URI, name))


# --- memory promises ------------------------------------------------------------------------

def _memory_promises() -> Iterator[Leftover]:
    root = paths.state_dir()
    if not root.is_dir():
        return
    for path in sorted(root.glob(f"{reservation.PREFIX}*")):
        if not reservation.promised(path):
            yield Leftover(str(path), "host memory promised to a run that is gone", False,
                           partial(_remove_promise, path))


def _remove_promise(path: Path) -> list[str]:
    return [f"memory promise {path.name}"] if remove_stale(path) else []


# --- all of it ------------------------------------------------------------------------------

def find_leftovers(include_kept: bool = False) -> list[Leftover]:
    seen: set[str] = set()
    found = list(_testbeds(include_kept, seen))
    found += _namespaces(include_kept, seen)
    found += _libvirt(include_kept)
    found += _stale_guest_records()
    found += _apt_proxy()
    found += _image_builds()
    found += _memory_promises()
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
    require_root()
    lines = clean_up(dry_run=dry_run, include_kept=include_kept)
    for line in lines:
        click.echo(line)
    if not lines:
        log.info("nothing to clean up")
    return ExitCode.OK
