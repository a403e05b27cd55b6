"""libvirt for a run: the system daemon if one answers, else a private libvirtd of our own.

In isolated mode qemu must run inside the run's network namespace to open
its tap, and qemu is started by libvirtd, so libvirtd itself runs in the
namespace: always a private daemon there.

How the private daemon is kept apart from the host. A privileged libvirtd
has fixed paths (/etc/libvirt for qemu.conf, /run/libvirt for sockets,
/var/lib/libvirt, /var/log/libvirt, /var/cache/libvirt): libvirtd.conf and
its -f/-p options move only the daemon's own config and pid file, not the
qemu driver's, and no environment variable moves them for root. So the
daemon gets a mount namespace of its own (`ip netns exec` creates one; in
the host's network namespace `unshare --mount`), in which a small entry
point (main() below) bind-mounts the run's directories over those five
paths and then starts libvirtd. Nothing changes for the host, and
everything dies with the daemon and its qemu. /etc/libvirt is not a copy of
the host's: a fresh, nearly empty one, so the host's persistent networks and
domains are not started inside the run.

The qemu driver resolves its built-in user "libvirt-qemu" before it reads
qemu.conf (which says root), and fails if that user does not exist. Debian
creates it in libvirt-daemon-system, which also pulls in systemd; on hosts
without that package the daemon's namespace gets /etc/passwd and /etc/group
copies with the entry added (again invisible to the host).

qemu runs as that account, not as root: the guest runs candidate packages
nobody has vetted. libvirt probes qemu's capabilities as root and starts
qemu as the account, so both must see the same /dev/kvm: the entry point
makes the daemon's namespace a /dev/kvm node of its own, owned by the
account, on a small tmpfs of the run's (the host's node keeps its mode).

virtlogd is not started: qemu.conf's stdio_handler = "file" makes qemu write
its log and serial file itself, which leaves one daemon to start and stop.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import stat
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tempest_live_ci import paths, proc, registry, render
from tempest_live_ci.errors import TestbedError
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import log
from tempest_live_ci.testbed.journal import process_matches
from tempest_live_ci.vm.domain import Keep, destroy_domain

if TYPE_CHECKING:
    import libvirt
else:
    libvirt = lazy_module("libvirt")

SYSTEM_URI = "qemu:///system"
# Paths the private daemon sees replaced by the run's own directories.
PRIVATE_PATHS = ("etc", "run", "lib", "log", "cache")
MOUNTPOINTS = {
    "etc": "/etc/libvirt",
    "run": "/run/libvirt",
    "lib": "/var/lib/libvirt",
    "log": "/var/log/libvirt",
    "cache": "/var/cache/libvirt",
}


@dataclass(frozen=True)
class LibvirtDaemon:
    uri: str
    root: Path | None  # the private daemon's directories (run/, log/, ...)
    pidfile: Path | None

    @property
    def log_file(self) -> Path | None:
        return self.root / "log" / "libvirtd.log" if self.root else None


def _quiet_libvirt() -> None:
    # libvirt prints every error on stderr by default; we raise our own.
    libvirt.registerErrorHandler(lambda _ctx, _err: None, None)


def open_connection(uri: str) -> libvirt.virConnect:
    _quiet_libvirt()
    try:
        return libvirt.open(uri)
    except libvirt.libvirtError as e:
        raise TestbedError(f"cannot connect to libvirt at {uri}: {e}") from e


def system_libvirt_answers() -> bool:
    _quiet_libvirt()
    if not Path("/run/libvirt/libvirt-sock").exists():
        return False
    try:
        libvirt.open(SYSTEM_URI).close()
    except libvirt.libvirtError:
        return False
    return True


def private_uri(root: Path) -> str:
    return f"{SYSTEM_URI}?socket={root / 'run' / 'libvirt-sock'}"


@contextlib.contextmanager
def libvirt_for_run(state_dir: Path, netns: str | None, *, debug: bool = False,
                    keep: Keep | None = None) -> Iterator[LibvirtDaemon]:
    """The libvirt to use for a run: the system's (host namespace, if it answers) or a private one.

    A private daemon is stopped when the block ends, unless keep.keep.
    """
    if netns is None and system_libvirt_answers():
        log.info("using the system libvirtd at %s", SYSTEM_URI)
        yield LibvirtDaemon(SYSTEM_URI, None, None)
        return
    with start_private_libvirtd(state_dir, netns, debug=debug, keep=keep) as daemon:
        yield daemon


@contextlib.contextmanager
def start_private_libvirtd(state_dir: Path, netns: str | None, *, debug: bool = False,
                           timeout: float = 30, keep: Keep | None = None
                           ) -> Iterator[LibvirtDaemon]:
    """Start libvirtd in `netns` (or the host's namespace) with the run's own directories.

    Its pid is in state_dir/libvirtd.pid, so a cleanup of a killed run finds it.
    """
    proc.require("libvirtd", "mount")
    root = state_dir / "libvirt"
    for name in PRIVATE_PATHS:
        (root / name).mkdir(parents=True, exist_ok=True)
    cache = paths.cache_dir() / "libvirt"
    cache.mkdir(parents=True, exist_ok=True)
    render.render_to("host-setup/libvirt/libvirtd.conf.j2", root / "etc" / "libvirtd.conf",
                     log_level=1 if debug else 3)
    account = qemu_account()
    render.render_to("host-setup/libvirt/qemu.conf.j2", root / "etc" / "qemu.conf",
                     uid=account.uid, gid=account.gid)
    # Mount points must exist on the host; libvirt's packages create them, but
    # the client-only packages installed here do not.
    for target in MOUNTPOINTS.values():
        Path(target).mkdir(parents=True, exist_ok=True)
    pidfile = state_dir / "libvirtd.pid"
    pidfile.unlink(missing_ok=True)
    # Whose it is, before it starts: `cleanup` stops a daemon whose run is gone.
    record = registry.add(PrivateLibvirtd(name=state_dir.name, state_dir=str(state_dir)))
    mounts = [f"{root / n}:{MOUNTPOINTS[n]}" for n in PRIVATE_PATHS if n != "cache"]
    mounts += _account_files(root)
    # The qemu capability cache is kept across runs: the first probe takes ~10 s.
    mounts.append(f"{cache}:{MOUNTPOINTS['cache']}")
    kvm_node = (f"{root / 'dev'}:{account.uid}:{account.gid}",) if KVM_DEVICE.exists() else ()
    entry = [sys.executable, "-m", "tempest_live_ci.vm.libvirtd", "--pidfile", str(pidfile),
             *(a for m in mounts for a in ("--bind", m)),
             *(a for node in kvm_node for a in ("--kvm-node", node))]
    if netns is None:
        entry = ["unshare", "--mount", "--propagation", "slave", *entry]
    package_parent = str(Path(__file__).resolve().parents[2])
    uri = private_uri(root)
    daemon = LibvirtDaemon(uri, root, pidfile)
    start = time.monotonic()
    try:
        # libvirtd -d returns once the daemon is up (or failed to start).
        proc.run(entry, netns=netns, capture=True, timeout=timeout,
                 env={"PYTHONPATH": package_parent})
        _wait_for_socket(daemon, timeout - (time.monotonic() - start))
        log.debug("private libvirtd up in %.1fs: %s", time.monotonic() - start, uri)
        yield daemon
    except TestbedError as e:
        raise TestbedError(f"{e.message}{_log_tail(daemon)}") from e
    finally:
        registry.release(record, bool(keep and keep.keep), lambda: stop_private_libvirtd(state_dir))


@registry.kind("libvirtd")
@dataclass(kw_only=True)
class PrivateLibvirtd(registry.Resource):
    """A run's own libvirtd (`name`: its testbed), and the domains it runs: libvirtd
    leaves its guests running when it stops."""

    state_dir: str

    def undo(self) -> list[str]:
        directory = Path(self.state_dir)
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
        # Its pid file names the daemon started with this state directory, or a reused pid.
        if pid is not None and process_matches(pid, str(directory)) \
                and stop_private_libvirtd(directory):
            removed.append(f"process {pid} (libvirtd)")
        return removed

    def describe(self) -> str:
        return f"the private libvirtd of {self.name}"

    def why(self) -> str:
        return "the private libvirtd of a run that is gone"


QEMU_ACCOUNT = "libvirt-qemu"
# The account's ids where the host has no such account (Debian's are dynamic).
QEMU_IDS = 64055
KVM_DEVICE = Path("/dev/kvm")


@dataclass(frozen=True)
class Account:
    uid: int
    gid: int


def qemu_account() -> Account:
    """Who qemu runs as: the host's libvirt-qemu (uid and primary group), else ids of our own."""
    try:
        entry = pwd.getpwnam(QEMU_ACCOUNT)
    except KeyError:
        return Account(QEMU_IDS, QEMU_IDS)
    return Account(entry.pw_uid, entry.pw_gid)


def _account_files(root: Path) -> list[str]:
    """Bind specs for /etc/passwd and /etc/group with QEMU_ACCOUNT added, if the host lacks it."""
    binds = []
    entries = (("passwd",
                f"{QEMU_ACCOUNT}:x:{QEMU_IDS}:{QEMU_IDS}::/var/lib/libvirt:/usr/sbin/nologin"),
               ("group", f"{QEMU_ACCOUNT}:x:{QEMU_IDS}:"))
    for name, line in entries:
        host = Path("/etc") / name
        text = host.read_text()
        if any(entry.split(":", 1)[0] == QEMU_ACCOUNT for entry in text.splitlines()):
            continue
        copy = root / name
        copy.write_text(text.rstrip("\n") + "\n" + line + "\n")
        binds.append(f"{copy}:{host}")
    return binds


def stop_private_libvirtd(state_dir: Path) -> bool:
    """Stop the run's private libvirtd (and so its qemu). Safe to call twice."""
    pidfile = state_dir / "libvirtd.pid"
    pid = proc.read_pidfile(pidfile)
    stopped = False
    if pid is not None:
        stopped = proc.kill_pid(pid, grace=10)
    pidfile.unlink(missing_ok=True)
    return stopped


def _wait_for_socket(daemon: LibvirtDaemon, timeout: float) -> None:
    _quiet_libvirt()
    last: list[libvirt.libvirtError] = []

    def answers() -> bool:
        try:
            libvirt.open(daemon.uri).close()
        except libvirt.libvirtError as e:
            last[:] = [e]
            return False
        return True

    if not proc.wait_until(answers, max(timeout, 1), interval=0.1):
        raise TestbedError(f"private libvirtd did not answer at {daemon.uri}: {last[0]}") \
            from last[0]


def _log_tail(daemon: LibvirtDaemon, lines: int = 3) -> str:
    if daemon.log_file is None:
        return ""
    try:
        tail = daemon.log_file.read_text(errors="replace").strip().splitlines()[-lines:]
    except OSError:
        return ""
    return f" (libvirtd.log: {' / '.join(tail)})" if tail else ""


def _private_kvm_node(directory: Path, uid: int, gid: int) -> None:
    """Over /dev/kvm, in this mount namespace only: a node of the same device owned by uid:gid.

    On a tmpfs of its own, mounted here: the run's state directory may be on
    a filesystem mounted nodev (as /run is), where a device node cannot be
    opened. The mount and the node go with the namespace, when libvirtd ends.
    """
    device = os.stat(KVM_DEVICE).st_rdev
    directory.mkdir(parents=True, exist_ok=True)
    proc.run(["mount", "-t", "tmpfs", "-o", "mode=0755,size=64k,nosuid,noexec",
              "tlc-kvm", str(directory)])
    node = directory / "kvm"
    os.mknod(node, 0o600 | stat.S_IFCHR, device)
    os.chown(node, uid, gid)
    proc.run(["mount", "--bind", str(node), str(KVM_DEVICE)])


def main(argv: list[str] | None = None) -> int:
    """Entry point run inside the daemon's own mount namespace: bind mounts, then libvirtd."""
    parser = argparse.ArgumentParser(prog="tempest_live_ci.vm.libvirtd")
    parser.add_argument("--bind", action="append", default=[], metavar="SRC:DST")
    parser.add_argument("--pidfile", required=True)
    parser.add_argument("--kvm-node", metavar="DIR:UID:GID")
    args = parser.parse_args(argv)
    for spec in args.bind:
        source, target = spec.split(":", 1)
        proc.run(["mount", "--bind", source, target])
    if args.kvm_node:
        directory, uid, gid = args.kvm_node.rsplit(":", 2)
        _private_kvm_node(Path(directory), int(uid), int(gid))
    libvirtd = proc.which("libvirtd") or "libvirtd"
    os.execv(libvirtd, [libvirtd, "-d", "-p", args.pidfile])


if __name__ == "__main__":
    sys.exit(main())
