"""The apt proxy: apt-cacher-ng in the root namespace, reached through a unix socket.

The guest and live-build reach Debian's archive only through apt-cacher-ng.
An address does not cross network namespaces but a unix socket does (the file
system is shared), so the proxy listens on 127.0.0.1, socat bridges a unix
socket to it, and inside a test namespace another socat listens on the bridge
address and connects to that socket.

One daemon serves every concurrent run that shares its cache directory,
because it owns that directory: users are counted in a file under the state
directory of the run that started it (guarded by flock, found through the
daemon's -c argument, so runs with other state directories count themselves
there too), and the last one out stops the daemon. It listens on
127.0.0.1:3142, or on the next free port when that one is taken.

Another apt-cacher-ng answering on 3142 (the host's own service) is never
used by isolated runs and image builds: it has no ForceManaged restriction
to Debian's archive, so a guest behind it could reach whatever it proxies.
A warning names it, and a private one is started on another port.

A run whose job names repositories outside Debian's archive (archives.py)
gets them from another daemon: one per set of such extra archives, with a
Remap (/tlcxHASH ; URL) for each and nothing else, ForceManaged too. Its
configuration, cache and user count are in STATE/apt-cacher-ng/extra-KEY/
(KEY: a hash of the set), so concurrent runs naming the same set share it,
runs naming other sets get their own, and the daemon of Debian's archive,
shared by every run, is never restarted to learn a Remap. The last user of an
extra daemon stops it and removes its directory, cache included: such
repositories are small and often made for one test (a CI pipeline's).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tempest_live_ci import paths, proc, registry, render
from tempest_live_ci.archives import ExtraArchive
from tempest_live_ci.errors import TestbedError
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import log, step
from tempest_live_ci.testbed.journal import Journal, process_matches, register_kind
from tempest_live_ci.testbed.listen import listening_ports, socket_inodes

# http.client (and the email package it parses headers with) for one probe.
if TYPE_CHECKING:
    import http.client as http_client
else:
    http_client = lazy_module("http.client")

ADDRESS = "127.0.0.1"
PORT = 3142
# Where a private daemon may listen when PORT is taken (by the host's own
# apt-cacher-ng, or by the daemon of another cache directory).
PORTS = range(PORT, PORT + 20)
DEBIAN_BACKEND = "http://deb.debian.org/debian/"
SECURITY_BACKEND = "http://deb.debian.org/debian-security/"
START_TIMEOUT = 15.0
LISTEN_TIMEOUT = 10.0


@dataclass(frozen=True)
class AptCacher:
    """A running apt-cacher-ng.

    url is where it answers in the root namespace; socket is a unix socket
    forwarding to it, usable from any network namespace.
    """

    url: str
    socket: Path


def proxy_state_dir() -> Path:
    """Configuration, logs, pid files, user count and sockets of the shared proxy."""
    return paths.state_dir() / "apt-cacher-ng"


def proxy_cache_dir() -> Path:
    return paths.cache_dir() / "apt-cacher-ng"


EXTRA_PREFIX = "extra-"


def extra_dir(extra: Sequence[ExtraArchive]) -> Path:
    """The state directory of the daemon serving exactly the set `extra`."""
    key = hashlib.sha256("\n".join(sorted(a.backend for a in extra)).encode()).hexdigest()[:16]
    return proxy_state_dir() / f"{EXTRA_PREFIX}{key}"


def is_extra(directory: Path) -> bool:
    return directory.name.startswith(EXTRA_PREFIX)


def _cache_of(directory: Path) -> Path:
    """Debian's archive: the shared cache; extra archives: their daemon's own, in its directory."""
    return directory / "cache" if is_extra(directory) else proxy_cache_dir()


def _lock_path(directory: Path) -> Path:
    # An extra daemon's directory goes with its last user: its lock is beside
    # it, so that a run coming meanwhile waits for the removal and starts afresh.
    return directory.parent / "extra.lock" if is_extra(directory) else directory / "lock"


def answers_as_apt_cacher_ng(address: str = ADDRESS, port: int = PORT,
                             timeout: float = 2.0) -> bool:
    """True if an HTTP server on address:port says it is apt-cacher-ng."""
    connection = http_client.HTTPConnection(address, port, timeout=timeout)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        body = response.read(65536)
    except (OSError, http_client.HTTPException):
        return False
    finally:
        connection.close()
    return b"Apt-Cacher NG" in body or "apt-cacher" in (response.getheader("Server") or "").lower()


def _port_in_use(address: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((address, port)) == 0


def _listener_pids(port: int) -> list[int]:
    """Processes of this network namespace listening on TCP `port`."""
    wanted = set()
    for table in ("tcp", "tcp6"):
        try:
            lines = Path(f"/proc/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
                wanted.add(int(fields[9]))
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and wanted & socket_inodes(int(entry.name)):
            pids.append(int(entry.name))
    return pids


def describe_listener(port: int) -> str:
    """Who listens on `port`, for a message: "pid 123: /usr/sbin/apt-cacher-ng -c ..."."""
    described = []
    for pid in _listener_pids(port):
        try:
            argv = (Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0")
                    .replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            continue
        described.append(f"pid {pid}: {argv[:120]}")
    return "; ".join(described) or "process unknown"


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(_lock_path(directory), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


# A user that is a kept testbed, not a process: "kept:<token> <testbed state directory>".
KEPT = "kept:"


def _user_alive(line: str) -> bool:
    head, _, rest = line.partition(" ")
    if head.isdigit():
        return proc.pid_alive(int(head))
    if head.startswith(KEPT) and rest:
        # As long as the testbed is there: its teardown (vm destroy, cleanup)
        # releases it, and a testbed removed some other way takes it along.
        return (Path(rest) / "journal.json").exists()
    return False


def _read_users(directory: Path) -> list[str]:
    """The users still alive: lines "<pid> <token>" (a run) or "kept:<token> <dir>" (a kept
    testbed); users whose process died or whose testbed is gone are dropped."""
    try:
        lines = (directory / "users").read_text().splitlines()
    except FileNotFoundError:
        return []
    return [line for line in lines if _user_alive(line)]


def _write_users(directory: Path, users: list[str]) -> None:
    tmp = directory / "users.tmp"
    tmp.write_text("".join(f"{u}\n" for u in users))
    tmp.rename(directory / "users")


def daemon_pid(directory: Path) -> int | None:
    pid = proc.read_pidfile(directory / "apt-cacher-ng.pid")
    return pid if pid is not None and proc.pid_alive(pid) else None


def _log_tail(path: Path, lines: int = 5) -> str:
    try:
        return " / ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""


def render_config(directory: Path, port: int = PORT,
                  extra: Sequence[ExtraArchive] = ()) -> Path:
    """Render host-setup/apt-cacher-ng/ into directory/conf; returns that configuration dir.

    Without `extra`: Debian's archive. With: those archives and nothing else.
    """
    conf_dir = directory / "conf"
    log_dir = directory / "log"
    cache = _cache_of(directory)
    for d in (conf_dir, log_dir, cache):
        d.mkdir(parents=True, exist_ok=True)
    for template in sorted((paths.host_setup_dir() / "apt-cacher-ng").glob("*.j2")):
        render.render_to(
            f"host-setup/apt-cacher-ng/{template.name}", conf_dir / template.stem,
            cache_dir=cache, log_dir=log_dir, pid_file=directory / "apt-cacher-ng.pid",
            bind_address=ADDRESS, port=port,
            debian_backend=DEBIAN_BACKEND, security_backend=SECURITY_BACKEND,
            debian=not extra, extra=[(a.name, a.backend) for a in extra],
        )
    return conf_dir


def daemon_port(directory: Path) -> int:
    """The port the daemon of `directory` was started on."""
    try:
        return int((directory / "port").read_text())
    except (OSError, ValueError):
        return PORT


def _serves(directory: Path, pid: int | None = None) -> bool:
    """Does the daemon of `directory` itself listen on its port and answer there?"""
    pid = pid if pid is not None else daemon_pid(directory)
    if pid is None:
        return False
    port = daemon_port(directory)
    return port in listening_ports(pid) and answers_as_apt_cacher_ng(ADDRESS, port, timeout=1.0)


def _warn_foreign(port: int) -> None:
    """Say so when the port is held by an apt-cacher-ng that this module did not start."""
    if not answers_as_apt_cacher_ng(ADDRESS, port):
        return
    ours = {daemon_pid(d) for d in running_daemons() if daemon_port(d) == port}
    if ours & set(_listener_pids(port)):
        log.debug("port %d: the apt-cacher-ng of another cache directory", port)
    else:
        log.warning("an apt-cacher-ng that is not ours answers on %s:%d (%s): not used, it is "
                    "not restricted to Debian's archive; starting a private one", ADDRESS,
                    port, describe_listener(port))


def _start_daemon(directory: Path, extra: Sequence[ExtraArchive] = ()) -> None:
    """Start a private daemon on the first free port of PORTS (its `port` file says which)."""
    _warn_foreign(PORT)
    for port in PORTS:
        if _port_in_use(ADDRESS, port):
            continue
        if _start_daemon_on(directory, port, extra):
            return
        log.debug("port %d was taken meanwhile; trying the next one", port)
    raise TestbedError(f"no free port for apt-cacher-ng on {ADDRESS} in {PORTS.start}-"
                       f"{PORTS.stop - 1}", hint="stop what listens there")


def _start_daemon_on(directory: Path, port: int, extra: Sequence[ExtraArchive] = ()) -> bool:
    """Start the daemon on `port`; False if something else took the port meanwhile."""
    conf_dir = render_config(directory, port, extra)
    (directory / "port").write_text(f"{port}\n")
    log_dir = directory / "log"
    cache = _cache_of(directory)
    errors = log_dir / "daemon.stderr"
    (directory / "apt-cacher-ng.pid").unlink(missing_ok=True)
    with open(errors, "w") as err:
        # The daemon forks, detaches into its own session and writes its pid file.
        proc.run(["apt-cacher-ng", "-c", conf_dir, "ForeGround=0"], input=b"",
                 stdout=subprocess.DEVNULL, stderr=err)
    started = time.monotonic()
    while not _serves(directory):
        pid = daemon_pid(directory)
        waited = time.monotonic() - started
        if waited > 2 and _port_in_use(ADDRESS, port) and (
                pid is None or port not in listening_ports(pid)):
            # Someone else took the port between our look and the daemon's bind.
            if pid is not None:
                proc.kill_pid(pid)
            return False
        if waited > START_TIMEOUT or (waited > 2 and pid is None):
            if pid is not None:
                proc.kill_pid(pid)
            raise TestbedError(
                f"apt-cacher-ng did not answer on {ADDRESS}:{port} within {waited:.0f}s: "
                + (_log_tail(errors) or _log_tail(log_dir / "apt-cacher.err")),
                hint=f"logs in {log_dir}",
            )
        time.sleep(0.05)
    log.debug("apt-cacher-ng started (pid %s) on port %d, cache %s", daemon_pid(directory),
              port, cache)
    return True


def _stop_daemon(directory: Path) -> None:
    pid = daemon_pid(directory)
    if pid is not None:
        proc.kill_pid(pid)
        # The daemon is init's child, and init here reaps only every second or
        # so: wait until it is really gone, so that "stopped" means stopped.
        proc.wait_until(lambda: not Path(f"/proc/{pid}").exists(), 5)
        log.debug("apt-cacher-ng (pid %d) stopped: no user left", pid)
    with contextlib.suppress(FileNotFoundError):
        (directory / "apt-cacher-ng.pid").unlink()


def _wait_for(condition_met: Callable[[], bool], process: subprocess.Popen[bytes],
              what: str) -> None:
    def running() -> None:
        if process.poll() is not None:
            raise TestbedError(f"{what} exited with status {process.returncode} before listening")

    if not proc.wait_until(condition_met, LISTEN_TIMEOUT, interval=0.02, check=running):
        raise TestbedError(f"{what} did not listen within {LISTEN_TIMEOUT:.0f}s")


@contextlib.contextmanager
def _pidfile(path: Path, pid: int) -> Iterator[None]:
    path.write_text(f"{pid}\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _cache_dir_of(directory: Path) -> str | None:
    try:
        text = (directory / "conf" / "acng.conf").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "CacheDir":
            return value.strip()
    return None


def _daemon_processes() -> list[tuple[int, Path]]:
    """(pid, state directory) of every apt-cacher-ng started with `-c STATE/conf`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if not argv or os.path.basename(argv[0]) != b"apt-cacher-ng" or b"-c" not in argv:
            continue
        index = argv.index(b"-c") + 1
        if index < len(argv):
            found.append((int(entry.name), Path(os.fsdecode(argv[index])).parent))
    return found


def running_daemons() -> list[Path]:
    """The state directories of every running apt-cacher-ng this module started."""
    return [directory for pid, directory in _daemon_processes()
            if _lock_path(directory).exists() and daemon_pid(directory) == pid]


def _running_owner(cache_dir: Path) -> Path | None:
    """The state directory of the running daemon of our cache directory, whatever its state dir.

    Tests and concurrent runs may use different state directories; with the
    same cache directory they must share the one daemon that owns it, and
    count themselves where its owner counts.
    """
    cache = str(cache_dir)
    for candidate in running_daemons():
        if _cache_dir_of(candidate) == cache:
            return candidate
    return None


def _register(own: Path, user: str, extra: Sequence[ExtraArchive] = ()) -> Path:
    """Count `user` in the directory of the daemon it will use (starting one if needed)."""
    for _ in range(5):
        directory = _running_owner(_cache_of(own)) or own
        with _locked(directory):
            directory.mkdir(parents=True, exist_ok=True)
            users = _read_users(directory)
            if _serves(directory):
                _write_users(directory, [*users, user])
                return directory
            if directory != own:
                continue  # its owner stopped it meanwhile: look again
            with step("Starting apt-cacher-ng" + (f" for {len(extra)} extra archive(s)"
                                                   if extra else "")):
                _start_daemon(directory, extra)
            _write_users(directory, [*users, user])
            return directory
    raise TestbedError("the shared apt-cacher-ng keeps going away")


# sun_path holds 108 bytes; a deep state directory (a test's tmp dir) can exceed it.
_SOCKET_PATH_MAX = 100
# A user's socket: acng-<the user's pid>-<token>.sock (the same name in a short directory).
SOCKET_NAME = re.compile(r"^acng-(\d+)-([0-9a-f]{8})\.sock$")
_SHORT_PREFIX = "tlc-acng-"
# In a short directory: a symbolic link to the state directory the socket belongs to.
_REGISTRY_LINK = "registry"


def _socket_path(wanted: Path) -> Path:
    if len(os.fsencode(wanted)) <= _SOCKET_PATH_MAX:
        return wanted
    short = Path(tempfile.mkdtemp(prefix=_SHORT_PREFIX))
    # Whose it is, for `cleanup` once that state directory is gone (socket_registry).
    (short / _REGISTRY_LINK).symlink_to(wanted.parent)
    return short / wanted.name


def socket_registry(sock_path: Path) -> Path | None:
    """The proxy state directory a user's socket belongs to (where its pid file is), or None
    when that is unknown (a short directory without its link)."""
    if not sock_path.parent.name.startswith(_SHORT_PREFIX):
        return sock_path.parent
    try:
        return Path(os.readlink(sock_path.parent / _REGISTRY_LINK))
    except OSError:
        return None


@contextlib.contextmanager
def start_apt_cacher_ng(extra: Sequence[ExtraArchive] = (), *,
                        kept: Callable[[], Journal | None] | None = None
                        ) -> Iterator[AptCacher]:
    """Use (or start) the shared apt-cacher-ng and a unix socket forwarding to it.

    With `extra`: the daemon of exactly those archives (extra_dir), each
    under /NAME/ of its URL, instead of the one of Debian's archive.

    Reuses the daemon this module started for the same cache directory;
    otherwise starts one (configuration rendered from host-setup/apt-cacher-ng/,
    cache under cache_dir()/apt-cacher-ng, logs under the state directory) on
    127.0.0.1:3142 or the next free port. The last user to leave stops it.

    kept: asked when the block ends; a journal (a testbed kept for its guest)
    takes the proxy over instead of stopping it: the socat and this use of
    the daemon are recorded there, and the testbed's teardown (`vm destroy`,
    `cleanup --include-kept`) releases them.

    A killed user leaves its socat (socket-<pid>-<token>.pid, in its own
    session) and maybe the daemon: `cleanup` stops both (cleanup.py).
    """
    proc.require("apt-cacher-ng", "socat")
    own = proxy_state_dir()
    own.mkdir(parents=True, exist_ok=True)
    user = f"{os.getpid()} {secrets.token_hex(4)}"
    directory = _register(extra_dir(extra) if extra else own, user, extra)
    handed_over = False
    try:
        port = daemon_port(directory)
        name = user.replace(" ", "-")
        sock_path = _socket_path(own / f"acng-{name}.sock")
        with proc.spawn(
            ["socat", f"UNIX-LISTEN:{sock_path},fork,unlink-early,mode=600",
             f"TCP:{ADDRESS}:{port}"],
            # Nothing of ours: a socat kept with a testbed outlives this process
            # and must not hold its output open.
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ) as socat, _pidfile(own / f"socat-{name}.pid", socat.pid):
            _wait_for(sock_path.exists, socat, "socat (unix socket to apt-cacher-ng)")
            try:
                yield AptCacher(url=f"http://{ADDRESS}:{port}", socket=sock_path)
            finally:
                journal = kept() if kept is not None else None
                if journal is not None:
                    _hand_over(journal, directory, user, socat, sock_path)
                    handed_over = True
                else:
                    proc.terminate(socat)
                    _remove_socket(sock_path)
    finally:
        if not handed_over:
            _leave(directory, user)


def _hand_over(journal: Journal, directory: Path, user: str, socat: subprocess.Popen[bytes],
               sock_path: Path) -> None:
    """A kept testbed's journal takes over this use of the proxy: its socat and its place
    among the daemon's users. Recorded first (testbed/journal.py): a kill halfway
    leaves records of what may not exist yet, never the reverse."""
    kept_user = f"{KEPT}{user.split()[1]} {journal.directory}"
    journal.add("apt-proxy-user", registry=str(directory), user=kept_user,
                socket=str(sock_path))
    journal.add("pid", name="socat (apt proxy socket)", marker=f"UNIX-LISTEN:{sock_path},",
                pid=socat.pid)
    with _locked(directory):
        users = [kept_user if u == user else u for u in _read_users(directory)]
        if kept_user not in users:
            users.append(kept_user)
        _write_users(directory, users)
    proc.detach(socat)
    log.debug("apt proxy kept for testbed %s (socat pid %d)", journal.directory.name, socat.pid)


def _remove_socket(sock_path: Path) -> bool:
    """Remove a user's socket (and its short directory); True if the socket was there."""
    removed = False
    with contextlib.suppress(FileNotFoundError):
        sock_path.unlink()
        removed = True
    if sock_path.parent.name.startswith(_SHORT_PREFIX):
        with contextlib.suppress(OSError):
            (sock_path.parent / _REGISTRY_LINK).unlink()
        with contextlib.suppress(OSError):
            sock_path.parent.rmdir()
    return removed


def _leave(directory: Path, user: str) -> None:
    """`user` no longer uses the daemon of `directory`; the last one out stops it."""
    if directory.is_dir():
        with _locked(directory):
            users = [u for u in _read_users(directory) if u != user]
            _write_users(directory, users)
            if not users:
                _stop_daemon(directory)
                if is_extra(directory):
                    shutil.rmtree(directory, ignore_errors=True)
    else:
        # The registry went with the state directory of the run that
        # started the daemon: nobody can count its users any more, so the
        # daemon started from that directory goes now rather than never.
        log.warning("apt-cacher-ng's registry %s is gone: stopping its daemon", directory)
        for pid, started_in in _daemon_processes():
            if started_in == directory:
                proc.kill_pid(pid)


def release_kept(record: dict[str, Any]) -> None:
    """Undo an "apt-proxy-user" journal record (a kept testbed's use of the proxy)."""
    if record.get("socket"):
        _remove_socket(Path(record["socket"]))
    _leave(Path(record["registry"]), record["user"])


register_kind("apt-proxy-user", release_kept,
              "use of the apt proxy (apt-cacher-ng) kept with the testbed")


@contextlib.contextmanager
def forward_into_netns(proxy: AptCacher, netns: str | None, address: str,
                       port: int = PORT, *,
                       kept: Callable[[], Journal | None] | None = None) -> Iterator[None]:
    """Make the proxy answer on address:port inside netns (None: the host namespace).

    kept: as for start_apt_cacher_ng, a journal that takes the forwarder over.
    """
    directory = proxy_state_dir()
    directory.mkdir(parents=True, exist_ok=True)
    # Named after the user's socket (acng-<pid>-<token>.sock): its owner's pid.
    user = proxy.socket.stem.removeprefix("acng-")
    pidfile = directory / f"forward-{user}-{netns or 'host'}-{address}-{port}.pid"
    with proc.spawn(
        ["socat", f"TCP-LISTEN:{port},bind={address},fork,reuseaddr",
         f"UNIX-CONNECT:{proxy.socket}"],
        netns=netns, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    ) as socat, _pidfile(pidfile, socat.pid):
        # Its own socket: another listener on the port would not do (testbed/listen.py).
        _wait_for(lambda: port in listening_ports(socat.pid), socat,
                  f"socat (apt proxy on {address}:{port} in {netns or 'the host namespace'})")
        try:
            yield
        finally:
            journal = kept() if kept is not None else None
            if journal is not None:
                journal.add("pid", name="socat (apt proxy)", netns=netns, pid=socat.pid,
                            marker=f"UNIX-CONNECT:{proxy.socket}")
                proc.detach(socat)


# --- what no record names, for `cleanup` ----------------------------------------------------

def _lock_free(path: Path) -> bool:
    """Nobody holds the flock of `path` (the registry of a daemon's users): nobody is
    starting it."""
    return not proc.flock_held(path)



def _remove_socat(pid_file: Path, pid: int | None, marker: str) -> list[str]:
    removed = []
    sockets = [a.split(":", 1)[1].split(",", 1)[0] for a in proc.cmdline(pid or -1)
               if a.startswith("UNIX-LISTEN:")]
    if pid is not None and process_matches(pid, marker) and proc.kill_pid(pid):
        removed.append(f"process {pid} (socat)")
    for sock in sockets:
        if _remove_socket(Path(sock)):
            removed.append(f"socket {sock}")
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
    sock: Path  # acng-<user>-<token>.sock
    user: int  # the pid of the run it serves
    port: int | None  # the daemon's port it connects to (the user's own socat)


def _proxy_socats() -> list[_Socat]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        argv = proc.cmdline(int(entry.name))
        if not argv or os.path.basename(argv[0]) != "socat":
            continue
        for argument in argv[1:]:
            kind, _, rest = argument.partition(":")
            if kind not in ("UNIX-LISTEN", "UNIX-CONNECT"):
                continue
            sock = Path(rest.split(",", 1)[0])
            name = SOCKET_NAME.match(sock.name)
            if name is None:
                continue
            port = None
            for other in argv[1:]:
                if other.startswith("TCP:") and other.rsplit(":", 1)[1].isdigit():
                    port = int(other.rsplit(":", 1)[1])
            found.append(_Socat(int(entry.name), argument, sock, int(name.group(1)), port))
    return found


def _orphaned_socats(socats: list[_Socat]) -> Iterator[registry.Leftover]:
    """Socats of a user that is gone whose state directory went too (a test's, removed while
    its run was live): no pid file or journal is left to find them by, only their command
    line. While the state directory is there, its pid files and journals say what is whose
    (a socat kept with a testbed outlives its user on purpose)."""
    for socat in socats:
        if proc.pid_alive(socat.user):
            continue
        users = socket_registry(socat.sock)
        if users is None or users.is_dir():
            continue
        yield registry.Leftover(f"socat (pid {socat.pid}, {socat.sock})",
                       f"the apt proxy's socat of process {socat.user}, which is gone with its "
                       f"state directory {users}", False,
                       partial(_remove_orphaned_socat, socat))


def _remove_orphaned_socat(socat: _Socat) -> list[str]:
    removed = []
    if process_matches(socat.pid, socat.argument) and proc.kill_pid(socat.pid):
        removed.append(f"process {socat.pid} (socat)")
    if _remove_socket(socat.sock):
        removed.append(f"socket {socat.sock}")
    return removed


@registry.sweep
def _leftovers() -> Iterator[registry.Leftover]:
    own = proxy_state_dir()
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
            yield registry.Leftover(str(pid_file), reason, False,
                           partial(_remove_socat, pid_file, pid, marker))
    registered = running_daemons()
    for pid, started_in in _daemon_processes():
        if not started_in.exists() and not in_use & set(listening_ports(pid)):
            # Its state directory is gone, whichever it was (a test's): no registry, no
            # configuration; and no live run's socat connects to it.
            yield registry.Leftover(f"apt-cacher-ng (pid {pid}, {started_in})",
                           "its state directory is gone, and no live run uses it", False,
                           partial(_stop_orphan_apt_cacher_ng, pid, started_in))
            continue
        # Started from our state directory (Debian's archive's daemon, or one
        # of extra archives below it), but no registry names it (the
        # directory was removed, the pid file lost in a kill): no run can
        # count itself as its user, so none uses it; nobody would stop it.
        # Unless a run holds the registry's lock: it is starting it right now.
        if own.resolve() not in (started_in.resolve(), started_in.resolve().parent) \
                or started_in in registered or not _lock_free(_lock_path(started_in)):
            continue
        yield registry.Leftover(f"apt-cacher-ng (pid {pid}, {started_in})",
                       "no registry of its users is left", False,
                       partial(_stop_orphan_apt_cacher_ng, pid, started_in))
    running = []
    for directory in registered:
        # The daemon of Debian's archive in `own`, those of extra archives below it.
        if own.resolve() not in (directory.resolve(), directory.parent.resolve()):
            continue  # started with another state directory: its cleanup judges it
        running.append(directory.resolve())
        with _locked(directory):
            users = _read_users(directory)
        if users:
            continue
        pid = daemon_pid(directory)
        yield registry.Leftover(f"apt-cacher-ng (pid {pid}, {directory})", "no run uses it any more",
                       False, partial(_stop_apt_cacher_ng, directory))
    for directory in sorted(own.glob(f"{EXTRA_PREFIX}*")) if own.is_dir() else []:
        if directory.resolve() in running or not directory.is_dir():
            continue
        with _locked(directory):
            users = _read_users(directory)
        if not users:
            yield registry.Leftover(str(directory), "the directory of an extra archives' apt-cacher-ng "
                           "that is gone", False, partial(_remove_extra_dir, directory))


def _stop_orphan_apt_cacher_ng(pid: int, started_in: Path) -> list[str]:
    if not any(p == pid and d == started_in for p, d in _daemon_processes()):
        return []  # gone meanwhile, or its pid is someone else's now
    return [f"process {pid} (apt-cacher-ng)"] if proc.kill_pid(pid) else []


def _stop_apt_cacher_ng(directory: Path) -> list[str]:
    with _locked(directory):
        if _read_users(directory):
            return []  # a run came meanwhile
        pid = daemon_pid(directory)
        _stop_daemon(directory)
        if is_extra(directory):
            shutil.rmtree(directory, ignore_errors=True)
    return [f"process {pid} (apt-cacher-ng)"]


def _remove_extra_dir(directory: Path) -> list[str]:
    with _locked(directory):
        if _read_users(directory) or daemon_pid(directory) is not None:
            return []  # a run came meanwhile
        shutil.rmtree(directory, ignore_errors=True)
    return [f"directory {directory}"]
