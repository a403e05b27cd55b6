"""The `ssh` backend: a machine that is already up, reached over SSH with a pinned host key.

    tempest-live-ci run JOB --machine ssh:root@HOST:PORT --ssh-key FILE --host-key FILE

Someone else booted it (a guest kept with --keep-on-failure, a machine of
the lab): the run builds no image, sets up no testbed, boots nothing, and
leaves the machine running; its apt keeps the proxy it has (a machine in a
testbed reaches the archive through it alone). Its host key is given, never learned: an
unknown or changed key is refused before the login. HOST is an address of
the machine itself: the cloud's endpoints are made on it. Files are served
by copying them up (file:// URLs): the machine may have no way back to
this host.

SSHMachine, the Machine over one SSH session, is also what the libvirt
backend's machine is made of.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import os
import posixpath
import re
import shlex
import stat
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from tempest_live_ci.errors import TestbedError, TLCError, UsageError, shown
from tempest_live_ci.guest.ssh import GuestSSH, SSHTarget, fingerprint, load_private_key, public_key
from tempest_live_ci.job import Job
from tempest_live_ci.log import log
from tempest_live_ci.machine import (
    Completed,
    GuestNetwork,
    Machine,
    MachineOptions,
    Opening,
    Sink,
)

# Where served files are copied to on the machine (under the guest's state directory).
SERVED = "/var/lib/tempest-live-ci/served"
_USER = re.compile(r"[a-z_][a-z0-9_.-]{0,31}")
_HOSTNAME = re.compile(r"(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?"
                       r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*")
# The key types an OpenSSH public key line may start with.
_KEY_TYPE = re.compile(r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-\S+)")


class SSHMachine:
    """A Machine over one SSH session (guest/ssh.py: pinned host key, reconnect once).

    alive is called while a command sends nothing: the libvirt backend's
    "is the domain still running?", which ends the wait for a guest that died
    (it sends nothing, not even a reset).
    """

    def __init__(self, ssh: GuestSSH, network: GuestNetwork, capabilities: frozenset[str], *,
                 served: str = SERVED, alive: Callable[[], None] | None = None) -> None:
        self.ssh = ssh
        self.network = network
        self.capabilities = capabilities
        self.name = f"{ssh.target.user}@{ssh.target.address}"
        self.served_dir = served
        self.urls: dict[str, str] = {}
        self._served: list[str] = []
        self._alive = alive

    def run(self, argv: Sequence[str], *, timeout: float,
            stdin: bytes | None = None) -> Completed:
        out, err = io.BytesIO(), io.BytesIO()
        status = self.ssh.run(list(argv), timeout, stdout=[out], stderr=[err], stdin=stdin,
                              while_waiting=self._alive)
        return Completed(tuple(argv), status, out.getvalue(), err.getvalue())

    def stream(self, argv: Sequence[str], sink: Sink, *, timeout: float,
               stderr: Sink | None = None, stdin: bytes | None = None) -> int:
        return self.ssh.run(list(argv), timeout, stdout=[sink],
                            stderr=[stderr if stderr is not None else sink], stdin=stdin,
                            while_waiting=self._alive)

    def put(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        self.ssh.put(local, remote, mode=mode)

    def get(self, remote: str, local: Path) -> None:
        self.ssh.get(remote, local)

    def serve(self, local: Path, name: str) -> str:
        """Copied up under SERVED/NAME: a file:// URL (apt and discover-tempest-config read it)."""
        remote = posixpath.join(self.served_dir, name.strip("/"))
        files = {posixpath.join(remote, relative) if relative else remote: path
                 for relative, path in _regular_files(local).items()}
        directories = sorted({posixpath.dirname(target) for target in files})
        # Removed at close from its first directory on: what mkdir -p made goes too.
        self._served.append(posixpath.join(self.served_dir, name.strip("/").split("/")[0]))
        made = self.run(["mkdir", "-p", "-m", "0755", "--", *directories], timeout=60)
        if made.returncode != 0:
            raise TestbedError(f"cannot make {remote} on {self.name}: "
                               f"{made.stderr.decode(errors='replace').strip()}")
        for target, path in files.items():
            # Readable by apt's sandbox user (_apt): file:// sources are read in place.
            self.put(path, target, mode=0o644)
        log.debug("served %s on %s as %s", local, self.name, remote)
        return f"file://{remote}{'/' if local.is_dir() else ''}"

    def alive(self) -> None:
        if self._alive is not None:
            self._alive()

    def close(self) -> None:
        try:
            if self._served:
                self.run(["rm", "-rf", "--", *self._served], timeout=60)
        except TestbedError as e:
            log.warning("could not remove the files served on %s: %s", self.name, e.message)
        finally:
            self._served = []
            self.ssh.close()


def _regular_files(local: Path) -> dict[str, Path]:
    """A file ("" → it), or a directory's regular files by their relative path; no links."""
    if local.is_file() and not local.is_symlink():
        return {"": local}
    found = {}
    for root, _dirs, names in os.walk(local):
        for name in names:
            path = Path(root, name)
            if stat.S_ISREG(path.lstat().st_mode):
                found[str(path.relative_to(local))] = path
    return found


def machine_capabilities(machine: SSHMachine) -> frozenset[str]:
    """What the machine says it can do: root when logged in as root, kvm when it has /dev/kvm."""
    found = {"root"} if machine.run(["id", "-u"], timeout=30).text().strip() == "0" else set()
    if machine.run(["test", "-c", "/dev/kvm"], timeout=30).returncode == 0:
        found.add("kvm")
    return frozenset(found)


def machine_apt_proxy(machine: SSHMachine) -> str | None:
    """The proxy the machine's apt already goes through (its admin's, or what an earlier run
    wrote): kept, since a machine in a testbed reaches the archive only through it."""
    done = machine.run(["apt-config", "shell", "PROXY", "Acquire::http::Proxy"], timeout=60)
    for line in done.text().splitlines():
        name, _, value = line.partition("=")
        if name == "PROXY" and value:
            words = shlex.split(value)
            if words and words[0].startswith(("http://", "https://")):
                return words[0]
    return None


def parse_address(rest: str) -> tuple[str, str, int]:
    """USER@HOST:PORT (USER root and PORT 22 when left out; [IPv6]) → (user, host, port)."""
    user, at, hostport = rest.rpartition("@")
    if not at:
        user = "root"
    if not _USER.fullmatch(user):
        raise UsageError(f"--machine ssh:{shown(rest)}: {shown(user)} is not a user name")
    port_text = ""
    if hostport.startswith("["):
        host, bracket, after = hostport[1:].partition("]")
        if not bracket or (after and not after.startswith(":")):
            raise UsageError(f"--machine ssh:{shown(rest)}: expected [IPv6]:PORT")
        port_text = after[1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise UsageError(f"--machine ssh:{shown(rest)}: {shown(host)} is not an IPv6 "
                             "address") from None
    else:
        if hostport.count(":") > 1:
            raise UsageError(f"--machine ssh:{shown(rest)}: an IPv6 address goes in brackets, "
                             "e.g. ssh:root@[2001:db8::7]:22")
        host, colon, port_text = hostport.partition(":")
        if colon and not port_text:
            raise UsageError(f"--machine ssh:{shown(rest)}: no port after ':'")
        if not _HOSTNAME.fullmatch(host):
            raise UsageError(f"--machine ssh:{shown(rest)}: {shown(host)} is not a host name "
                             "or address (ssh:USER@HOST:PORT)")
    port = 22
    if port_text:
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise UsageError(f"--machine ssh:{shown(rest)}: port {shown(port_text)} is not a "
                             "number from 1 to 65535")
        port = int(port_text)
    return user, host, port


def read_host_key(path: Path) -> str:
    """The pinned key: an OpenSSH public key line (a .pub file) or a known_hosts /
    ssh-keyscan line (its host name first); the first such line of the file."""
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"--host-key {path}: cannot read it ({e})") from None
    for line in text.splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) >= 3 and not _KEY_TYPE.fullmatch(words[0]) and _KEY_TYPE.fullmatch(words[1]):
            words = words[1:]
        if not _KEY_TYPE.fullmatch(words[0]) or len(words) < 2:
            what = "a private key" if "PRIVATE KEY" in line else f"{shown(words[0])} first"
            raise UsageError(f"--host-key {path}: not an SSH public key line ({what}; a .pub "
                             "file or a known_hosts line)")
        key = " ".join(words[:2])
        try:
            public_key(key)
        except (TLCError, ValueError, TypeError) as e:
            raise UsageError(f"--host-key {path}: not an SSH public key ({e})") from None
        return key
    raise UsageError(f"--host-key {path}: no public key line in it")


class SSHBackend:
    name = "ssh"

    def __init__(self, target: SSHTarget) -> None:
        self.target = target

    def check(self, job: Job) -> None:
        """Nothing of the job's testbed, image or vm is made for a machine that is up."""

    def plan(self, job: Job) -> list[str]:
        t = self.target
        via = f" from network namespace {t.netns}" if t.netns else ""
        return [f"machine: ssh {t.user}@{t.address}:{t.port}{via}, host key "
                f"{fingerprint(public_key(t.host_key))} (booted elsewhere: no image, testbed "
                "or vm of the job's)"]

    @contextlib.contextmanager
    def open(self, job: Job, opening: Opening) -> Iterator[Machine]:
        with opening.stage("machine", f"Connecting to {self.target.user}@{self.target.address}"):
            ssh = GuestSSH(self.target)
            ssh.connect()
            machine = SSHMachine(ssh, GuestNetwork(address=self.target.address), frozenset())
        try:
            machine.capabilities = machine_capabilities(machine)
            machine.network = GuestNetwork(address=self.target.address,
                                           apt_proxy=machine_apt_proxy(machine))
            opening.facts["machine"] = {
                "backend": self.name, "address": self.target.address, "port": self.target.port,
                "user": self.target.user, "capabilities": sorted(machine.capabilities),
                "host_key_fingerprint": fingerprint(public_key(self.target.host_key)),
                "apt_proxy": machine.network.apt_proxy}
            opening.facts["accelerator"] = "kvm" if "kvm" in machine.capabilities else "tcg"
            machine.urls = {name: machine.serve(path, name) for name, path in opening.serve.items()}
            yield machine
        finally:
            machine.close()


def parse(rest: str, options: MachineOptions) -> SSHBackend:
    """--machine ssh:USER@HOST:PORT with --ssh-key and --host-key (and --ssh-netns)."""
    user, host, port = parse_address(rest)
    if options.ssh_key is None:
        raise UsageError("--machine ssh: needs --ssh-key FILE (the private key it logs in with)")
    if options.host_key is None:
        raise UsageError("--machine ssh: needs --host-key FILE (the machine's public host key: "
                         "an unknown key is refused, never learned)")
    try:
        load_private_key(options.ssh_key)
    except TestbedError as e:
        raise UsageError(f"--ssh-key: {e.message}") from None
    host_key = read_host_key(options.host_key)
    if options.netns is not None and not Path("/run/netns", options.netns).exists():
        raise UsageError(f"--ssh-netns: no network namespace {shown(options.netns)}")
    return SSHBackend(SSHTarget(host, host_key, options.ssh_key.resolve(), netns=options.netns,
                                port=port, user=user))
