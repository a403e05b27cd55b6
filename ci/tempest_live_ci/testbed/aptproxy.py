"""The apt proxy: apt-cacher-ng in the root namespace, reached through a unix socket.

The guest and live-build reach Debian's archive only through apt-cacher-ng.
An address does not cross network namespaces but a unix socket does (the file
system is shared), so the proxy listens on 127.0.0.1, socat bridges a unix
socket to it, and inside a test namespace another socat listens on the bridge
address and connects to that socket.

One daemon serves every concurrent run that shares its cache directory,
because it owns that directory. It is a shared record of the registry of the
state directory that started it (found through the daemon's -c argument, so
runs with other state directories count themselves there too): each use is
one of its owners, a kept testbed's use is handed over to that testbed's
journal, and the last one out stops the daemon. Each run's socats are records
of that run's. The daemon listens on 127.0.0.1:3142, or on the next free port
when that one is taken.

Another apt-cacher-ng answering on 3142 (the host's own service) is never
used by isolated runs and image builds: it has no ForceManaged restriction
to Debian's archive, so a guest behind it could reach whatever it proxies.
A warning names it, and a private one is started on another port.

A run whose job names repositories outside Debian's archive (archives.py)
gets them from another daemon: one per set of such extra archives, with a
Remap (/tlcxHASH ; URL) for each and nothing else, ForceManaged too. Its
configuration and cache are in STATE/apt-cacher-ng/extra-KEY/
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
    """Configuration, logs, pid file and sockets of the shared proxy."""
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


def _wait_for(condition_met: Callable[[], bool], process: subprocess.Popen[bytes],
              what: str) -> None:
    def running() -> None:
        if process.poll() is not None:
            raise TestbedError(f"{what} exited with status {process.returncode} before listening")

    if not proc.wait_until(condition_met, LISTEN_TIMEOUT, interval=0.02, check=running):
        raise TestbedError(f"{what} did not listen within {LISTEN_TIMEOUT:.0f}s")


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
    for pid, argv in proc.processes():
        if os.path.basename(argv[0]) == "apt-cacher-ng" and "-c" in argv[:-1]:
            found.append((pid, Path(argv[argv.index("-c") + 1]).parent))
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


def _shared_name(directory: Path) -> str:
    """The name of the shared record of the daemon of `directory`."""
    return f"apt-proxy-{directory.name}" if is_extra(directory) else "apt-proxy"


def _registry_of(directory: Path) -> Path:
    """The registry of the state directory that started the daemon of `directory`: users
    with other state directories count themselves there too."""
    return registry.directory(directory.parent.parent if is_extra(directory) else directory.parent)


@registry.kind("apt-proxy")
@dataclass(kw_only=True)
class ProxyDaemon(registry.Resource):
    """The apt-cacher-ng of a state directory (Debian's archive), or of one set of extra
    archives (its directory goes with it): one shared record, whose owners are its users."""

    directory: str

    def undo(self) -> list[str]:
        directory = Path(self.directory)
        removed = []
        for pid, started_in in _daemon_processes():
            if started_in == directory and proc.kill_pid(pid):
                # init reaps the daemon only every second or so here: "stopped" means gone.
                proc.wait_until(partial(_gone, pid), 5)
                removed.append(f"process {pid} (apt-cacher-ng)")
        (directory / "apt-cacher-ng.pid").unlink(missing_ok=True)
        if is_extra(directory) and directory.is_dir():
            shutil.rmtree(directory, ignore_errors=True)
            removed.append(f"directory {directory}")
        return removed

    def describe(self) -> str:
        return f"apt-cacher-ng of {self.directory}"

    def why(self) -> str:
        return "no run uses it any more"


@registry.kind("apt-proxy-socat")
@dataclass(kw_only=True)
class ProxySocat(registry.Resource):
    """A socat of one run's use of the proxy: its unix socket into the daemon (`socket`),
    or the forward of that socket into a namespace. Recorded before it starts (`marker`,
    a part of its command line no other process has), then by its pid."""

    marker: str
    socket: str | None = None
    pid: int | None = None

    def undo(self) -> list[str]:
        removed = []
        pids = [self.pid] if self.pid is not None else _socats_with(self.marker)
        for pid in pids:
            if process_matches(pid, self.marker) and proc.kill_pid(pid):
                removed.append(f"process {pid} (socat)")
        if self.socket is not None and _remove_socket(Path(self.socket)):
            removed.append(f"socket {self.socket}")
        return removed

    def describe(self) -> str:
        return f"the apt proxy's socat ({self.marker})"


def _gone(pid: int) -> bool:
    return not Path(f"/proc/{pid}").exists()


def users(directory: Path) -> list[str]:
    """Who uses the daemon of `directory` now: runs (proc.identity()), and the journals of
    kept testbeds."""
    entry = registry.shared(_shared_name(directory), _registry_of(directory))
    return [o for o in entry.owners if registry.owner_alive(o)] if entry else []


def _socats_with(marker: str) -> list[int]:
    """The socats whose command line has `marker` (one started just before a kill)."""
    return [s.pid for s in _proxy_socats() if marker in " ".join(proc.cmdline(s.pid))]


def _use_daemon(own: Path, extra: Sequence[ExtraArchive] = ()) -> tuple[Path, str]:
    """Count a use of this process's among the users of the daemon it will use, starting
    one if needed (recorded first); returns that daemon's directory, and the use."""
    for _ in range(5):
        directory = _running_owner(_cache_of(own)) or own
        where = _registry_of(directory)
        with _locked(directory):
            directory.mkdir(parents=True, exist_ok=True)
            use = registry.join(ProxyDaemon(name=f"apt-cacher-ng ({directory})",
                                            directory=str(directory)), _shared_name(directory),
                                where)
            if _serves(directory):
                return directory, use
            if directory != own:
                _leave(directory, use)
                continue  # its owner stopped it meanwhile: look again
            try:
                with step("Starting apt-cacher-ng" + (f" for {len(extra)} extra archive(s)"
                                                       if extra else "")):
                    _start_daemon(directory, extra)
            except BaseException:
                _leave(directory, use)
                raise
            return directory, use
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
    """The proxy state directory a user's socket belongs to, or None
    when that is unknown (a short directory without its link)."""
    if not sock_path.parent.name.startswith(_SHORT_PREFIX):
        return sock_path.parent
    try:
        return Path(os.readlink(sock_path.parent / _REGISTRY_LINK))
    except OSError:
        return None


@contextlib.contextmanager
def _socat(argv: list[str], marker: str, what: str, ready: Callable[[int], bool], *,
           netns: str | None = None, socket: Path | None = None,
           kept: Callable[[], Journal | None] | None = None) -> Iterator[None]:
    """One socat of this run's, recorded before it starts; stopped when the block ends,
    or handed over to the journal `kept` returns (a kept testbed's) and left running."""
    resource = ProxySocat(name=str(socket or marker), marker=marker,
                          socket=str(socket) if socket else None)
    entry = registry.add(resource)
    try:
        # Nothing of ours: a socat kept with a testbed outlives this process and must
        # not hold its output open.
        with proc.spawn(argv, netns=netns, stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL) as socat:
            resource.pid = socat.pid
            registry.update(entry)
            _wait_for(lambda: ready(socat.pid), socat, what)
            try:
                yield
            finally:
                journal = kept() if kept is not None else None
                if journal is not None:
                    journal.add("pid", name="socat (apt proxy socket)" if socket
                                else "socat (apt proxy)", netns=netns, marker=marker,
                                pid=socat.pid)
                    proc.detach(socat)
                    socket = None  # the journal's now
    finally:
        if socket is not None:
            _remove_socket(socket)
        registry.discard(entry)


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

    What a killed user leaves (its socat, in its own session, and maybe the
    daemon) is in the registry: `cleanup` stops both.
    """
    proc.require("apt-cacher-ng", "socat")
    own = proxy_state_dir()
    own.mkdir(parents=True, exist_ok=True)
    directory, use = _use_daemon(extra_dir(extra) if extra else own, extra)
    successor = None
    try:
        port = daemon_port(directory)
        sock_path = _socket_path(own / f"acng-{os.getpid()}-{secrets.token_hex(4)}.sock")

        def handed_over() -> Journal | None:
            nonlocal successor
            journal = kept() if kept is not None else None
            if journal is not None:
                # Its use of the daemon lives as long as the testbed's journal.
                successor = str(journal.path)
                journal.add("apt-proxy-user", registry=str(directory), owner=successor,
                            socket=str(sock_path))
            return journal

        with _socat(["socat", f"UNIX-LISTEN:{sock_path},fork,unlink-early,mode=600",
                     f"TCP:{ADDRESS}:{port}"], f"UNIX-LISTEN:{sock_path},",
                    "socat (unix socket to apt-cacher-ng)", lambda pid: sock_path.exists(),
                    socket=sock_path, kept=handed_over):
            yield AptCacher(url=f"http://{ADDRESS}:{port}", socket=sock_path)
    finally:
        _leave(directory, use, successor=successor)
        if successor is not None:
            log.debug("apt proxy kept with testbed %s", Path(successor).parent.name)


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


def _leave(directory: Path, use: str, *, successor: str | None = None) -> None:
    """`use` of the daemon of `directory` has ended, or is handed over to `successor`;
    the last one out stops it."""
    where = _registry_of(directory)
    if where.is_dir():
        registry.leave(_shared_name(directory), use, where, successor=successor)
        return
    # The registry went with the state directory of the run that started the daemon:
    # nobody can count its users any more, so that daemon goes now rather than never.
    log.warning("apt-cacher-ng's registry %s is gone: stopping its daemon", where)
    ProxyDaemon(name="", directory=str(directory)).undo()


def release_kept(record: dict[str, Any]) -> None:
    """Undo an "apt-proxy-user" journal record (a kept testbed's use of the proxy)."""
    if record.get("socket"):
        _remove_socket(Path(record["socket"]))
    _leave(Path(record["registry"]), record.get("owner", ""))


register_kind("apt-proxy-user", release_kept,
              "use of the apt proxy (apt-cacher-ng) kept with the testbed")


@contextlib.contextmanager
def forward_into_netns(proxy: AptCacher, netns: str | None, address: str,
                       port: int = PORT, *,
                       kept: Callable[[], Journal | None] | None = None) -> Iterator[None]:
    """Make the proxy answer on address:port inside netns (None: the host namespace).

    kept: as for start_apt_cacher_ng, a journal that takes the forwarder over.
    """
    # Its own socket: another listener on the port would not do (testbed/listen.py).
    with _socat(["socat", f"TCP-LISTEN:{port},bind={address},fork,reuseaddr",
                 f"UNIX-CONNECT:{proxy.socket}"], f"UNIX-CONNECT:{proxy.socket}",
                f"socat (apt proxy on {address}:{port} in {netns or 'the host namespace'})",
                lambda pid: port in listening_ports(pid), netns=netns, kept=kept):
        yield


# --- what no record names, for `cleanup` ----------------------------------------------------

@dataclass(frozen=True)
class _Socat:
    """A socat of the apt proxy, found by its command line."""

    pid: int
    argument: str  # UNIX-LISTEN:<socket>,... (the user's) or UNIX-CONNECT:<socket> (a forward)
    sock: Path  # acng-<user>-<token>.sock
    user: int  # the pid of the run it serves
    port: int | None  # the daemon's port it connects to (the user's own socat)


def _proxy_socats() -> list[_Socat]:
    found = []
    for pid, argv in proc.processes():
        if os.path.basename(argv[0]) != "socat":
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
            found.append(_Socat(pid, argument, sock, int(name.group(1)), port))
    return found


def _remove_orphaned_socat(socat: _Socat) -> list[str]:
    removed = []
    if process_matches(socat.pid, socat.argument) and proc.kill_pid(socat.pid):
        removed.append(f"process {socat.pid} (socat)")
    if _remove_socket(socat.sock):
        removed.append(f"socket {socat.sock}")
    return removed


def _stop_orphan_apt_cacher_ng(pid: int, started_in: Path) -> list[str]:
    if not any(p == pid and d == started_in for p, d in _daemon_processes()):
        return []  # gone meanwhile, or its pid is someone else's now
    return [f"process {pid} (apt-cacher-ng)"] if proc.kill_pid(pid) else []


@registry.sweep
def _leftovers() -> Iterator[registry.Leftover]:
    """Socats and daemons whose state directory went while their run lived (a test's,
    removed under it), or that a version before the registry started. While the state
    directory is there its records say what is whose: a socat kept with a testbed
    outlives its user on purpose."""
    socats = _proxy_socats()
    for socat in socats:
        users = socket_registry(socat.sock)
        if proc.pid_alive(socat.user) or users is None or users.is_dir():
            continue
        yield registry.Leftover(f"socat (pid {socat.pid}, {socat.sock})",
                                f"the apt proxy's socat of process {socat.user}, which is gone "
                                f"with its state directory {users}",
                                partial(_remove_orphaned_socat, socat))
    # The daemons' ports that a live user's socat still connects to.
    in_use = {s.port for s in socats if s.port is not None and proc.pid_alive(s.user)}
    own = proxy_state_dir().resolve()
    recorded = {Path(e.resource.directory) for e in registry.entries()
                if isinstance(e.resource, ProxyDaemon)}
    for pid, started_in in _daemon_processes():
        if started_in in recorded:
            continue
        if not started_in.exists():
            if in_use & set(listening_ports(pid)):
                continue
            why = "its state directory is gone, and no live run uses it"
        elif own in (started_in.resolve(), started_in.resolve().parent) \
                and not proc.flock_held(_lock_path(started_in)):
            # Ours, but no record counts its users (nobody is starting it: the lock).
            why = "no record of its users is left"
        else:
            continue
        yield registry.Leftover(f"apt-cacher-ng (pid {pid}, {started_in})", why,
                                partial(_stop_orphan_apt_cacher_ng, pid, started_in))
