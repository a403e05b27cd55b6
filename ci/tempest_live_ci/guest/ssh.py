"""SSH to the guest with paramiko: the host key is pinned to the image's, never learned.

Reaching a guest inside a network namespace. paramiko runs in this process,
in the host's namespace, where the guest address does not exist. Switching
namespaces with setns() affects the whole calling thread and is unsafe in a
Python process with other threads, so the TCP connection is made by a socat
started with `ip netns exec` whose stdin and stdout are one end of a
socketpair; paramiko gets the other end. That is a real socket (timeouts
work), one child per connection that dies with it, and no listening socket
or socket file to clean up. A reconnect simply starts a new socat.

paramiko.ProxyCommand("ip netns exec NS socat STDIO TCP:...") would save a
few lines and lose more: its recv() never reports the end of the stream (a
socat that exited, a guest that died): at EOF it spins on select() until its
timeout and raises socket.timeout, so paramiko's transport, which reads with a
short timeout, never sees EOFError and never ends; close() sends SIGTERM and
never reaps the child; and it takes a command string it splits and starts
itself, bypassing proc (no argv list, no --debug trace, no hint for a missing
binary). A socketpair end is a real socket: EOF is b"".
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import os
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tempest_live_ci import proc
from tempest_live_ci.errors import TestbedError
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import log
from tempest_live_ci.machine import Sink

if TYPE_CHECKING:
    import paramiko  # type: ignore[import]
else:
    paramiko = lazy_module("paramiko")

T = TypeVar("T")


RSA_NAMES = ("rsa-sha2-512", "rsa-sha2-256", "ssh-rsa")
# Seconds a finished command's channel may take to reach EOF (its output complete).
EXIT_GRACE = 2.0


@dataclass(frozen=True)
class SSHTarget:
    address: str
    host_key: str  # the pinned public key line: "ssh-ed25519 AAAA... comment"
    private_key: Path
    netns: str | None = None
    port: int = 22
    user: str = "root"


def public_key(line: str) -> paramiko.PKey:
    """A paramiko key from an OpenSSH public key line."""
    parts = line.split()
    if len(parts) < 2:
        raise TestbedError(f"not an OpenSSH public key line: {line[:60]!r}")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1]))  # type: ignore[attr-defined,no-any-return]
    except AttributeError:
        # paramiko < 3 has no from_type_string.
        blob = base64.b64decode(parts[1])
        for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
            with contextlib.suppress(Exception):
                return cls(data=blob)  # type: ignore[no-any-return]
    raise TestbedError(f"unsupported host key type {parts[0]!r}")


def fingerprint(key: paramiko.PKey) -> str:
    """SHA256:... as `ssh-keygen -l` prints it."""
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def load_private_key(path: Path) -> paramiko.PKey:
    errors = []
    for cls in (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey):
        try:
            return cls.from_private_key_file(str(path))  # type: ignore[no-any-return]
        except (paramiko.SSHException, ValueError) as e:
            errors.append(str(e))
        except OSError as e:
            raise TestbedError(f"cannot read SSH private key {path}: {e}") from e
    raise TestbedError(f"{path}: not an SSH private key paramiko can read ({errors[-1]})")


def port_open(address: str, port: int = 22, *, netns: str | None = None,
              timeout: float = 2) -> bool:
    """Whether something accepts TCP connections at address:port (seen from netns)."""
    if netns is None:
        try:
            with socket.create_connection((address, port), timeout=timeout):
                return True
        except OSError:
            return False
    result = proc.run(["socat", "-u", "OPEN:/dev/null",
                       f"TCP:{address}:{port},connect-timeout={timeout:g}"],
                      netns=netns, check=False, capture=True, timeout=timeout + 5)
    return result.returncode == 0


def wait_for_ssh(address: str, timeout: float, *, netns: str | None = None, port: int = 22,
                 interval: float = 1.0, while_waiting: Callable[[], None] | None = None) -> float:
    """Poll until the SSH port answers; returns the seconds waited.

    while_waiting is called between polls (boot progress, "is the guest still
    running?"); it may raise to stop waiting.
    """
    start = time.monotonic()
    if not proc.wait_until(lambda: port_open(address, port, netns=netns), timeout,
                           interval=interval, check=while_waiting):
        raise TestbedError(f"SSH: port {port} of {address} did not open in {timeout:.0f}s")
    return time.monotonic() - start


class GuestSSH:
    """An SSH session to the guest, pinned to its host key.

        with GuestSSH(target) as ssh:
            status = ssh.run("cat /proc/cmdline", timeout=30, stdout=[sys.stdout.buffer])
    """

    def __init__(self, target: SSHTarget, *, connect_timeout: float = 30) -> None:
        self.target = target
        self.connect_timeout = connect_timeout
        self.pinned = public_key(target.host_key)
        self.pkey = load_private_key(target.private_key)
        self._transport: paramiko.Transport | None = None
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> GuestSSH:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _socket(self, stack: contextlib.ExitStack) -> socket.socket:
        t = self.target
        if t.netns is None:
            try:
                return socket.create_connection((t.address, t.port), timeout=self.connect_timeout)
            except OSError as e:
                raise TestbedError(f"SSH: cannot connect to {t.address}:{t.port}: {e}") from e
        ours, theirs = socket.socketpair()
        stack.callback(ours.close)
        with theirs:
            stack.enter_context(proc.spawn(
                ["socat", "STDIO", f"TCP:{t.address}:{t.port},connect-timeout=10"],
                netns=t.netns, stdin=theirs.fileno(), stdout=theirs.fileno(),
                stderr=subprocess.DEVNULL, grace=1))
        return ours

    def connect(self) -> None:
        """Open the transport, check the host key against the pinned one, log in."""
        self.close()
        stack = contextlib.ExitStack()
        try:
            transport = paramiko.Transport(self._socket(stack))
            stack.callback(transport.close)
            # Ask for the pinned key's type first so the server shows that key.
            name = self.pinned.get_name()
            preferred = RSA_NAMES if name in RSA_NAMES else (name,)
            options = transport.get_security_options()
            options.key_types = [*preferred, *(k for k in options.key_types if k not in preferred)]
            try:
                transport.start_client(timeout=self.connect_timeout)
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise TestbedError(
                    f"SSH: handshake with {self.target.address} failed: {e or type(e).__name__}"
                ) from e
            offered = transport.get_remote_server_key()
            if offered.asbytes() != self.pinned.asbytes():
                raise TestbedError(
                    f"SSH: host key of {self.target.address} is {offered.get_name()} "
                    f"{fingerprint(offered)}, expected the image's {name} "
                    f"{fingerprint(self.pinned)}: refusing to connect",
                    hint="the guest is not the image that was booted, or the image lost its key",
                )
            try:
                transport.auth_publickey(self.target.user, self.pkey)
            except paramiko.SSHException as e:
                raise TestbedError(
                    f"SSH: {self.target.user}@{self.target.address} refused the key "
                    f"{self.target.private_key}: {e}") from e
        except BaseException:
            stack.close()
            raise
        self._transport = transport
        self._stack = stack
        log.debug("SSH: logged in to %s@%s (host key %s)", self.target.user, self.target.address,
                  fingerprint(self.pinned))

    def close(self) -> None:
        self._transport = None
        self._stack.close()

    @property
    def transport(self) -> paramiko.Transport:
        if self._transport is None or not self._transport.is_active():
            log.info("SSH: connection to %s dropped, reconnecting", self.target.address)
            self.connect()
        assert self._transport is not None
        return self._transport

    def _retry(self, operation: Callable[[], T]) -> T:
        """Run `operation`; on a dropped transport reconnect once and run it again."""
        try:
            return operation()
        except (EOFError, paramiko.SSHException, OSError) as e:
            if self._transport is not None and self._transport.is_active():
                raise
            log.info("SSH: connection to %s dropped (%s), reconnecting", self.target.address, e)
            self.connect()
            return operation()

    def run(self, command: str | Sequence[str], timeout: float, *,
            stdout: Sequence[Sink] = (), stderr: Sequence[Sink] = (),
            stdin: bytes | None = None,
            while_waiting: Callable[[], None] | None = None) -> int:
        """Run a command in the guest; returns its exit status.

        Its output is written as it comes to every stream in stdout / stderr
        (files of the output directory, the caller's terminal). A command still
        running after `timeout` seconds is a TestbedError. while_waiting is
        called about once a second while no output comes ("is the guest still
        running?"): a guest that died sends nothing, not even a reset, so only
        such a check ends the wait before the timeout. It may raise.
        """
        if not isinstance(command, str):
            command = shlex.join(command)
        log.debug("+ ssh %s %s", self.target.address, command)
        # Only opening the channel is retried: a command that may have started is not re-run.
        def open_channel() -> paramiko.Channel:
            return self.transport.open_session(timeout=self.connect_timeout)

        try:
            channel = self._retry(open_channel)
        except (paramiko.SSHException, EOFError, OSError) as e:
            # A guest that died leaves a transport that still looks open.
            raise TestbedError(f"SSH: cannot open a session on {self.target.address}: "
                               f"{e or type(e).__name__}") from e
        with channel:
            channel.settimeout(0.2)
            try:
                channel.exec_command(command)
            except (paramiko.SSHException, EOFError, OSError) as e:
                raise TestbedError(f"SSH: cannot start {command!r}: {e or type(e).__name__}") from e
            if stdin is not None:
                channel.sendall(stdin)
            channel.shutdown_write()
            deadline = time.monotonic() + timeout
            checked = time.monotonic()
            exited: float | None = None
            while True:
                got = False
                while channel.recv_ready():
                    _tee(channel.recv(65536), stdout)
                    got = True
                while channel.recv_stderr_ready():
                    _tee(channel.recv_stderr(65536), stderr)
                    got = True
                if exited is None and channel.exit_status_ready():
                    exited = time.monotonic()
                # sshd may send the exit status before the last of stderr: the
                # output is complete at the channel's EOF. A command that left a
                # child holding its output open never sends one: EXIT_GRACE then.
                if exited is not None and not got and not channel.recv_ready() \
                        and not channel.recv_stderr_ready() \
                        and (channel.eof_received or channel.closed
                             or time.monotonic() - exited > EXIT_GRACE):
                    break
                if time.monotonic() > deadline:
                    raise TestbedError(f"SSH: command timed out after {timeout:g}s: {command}")
                if not got:
                    if self._transport is None or not self._transport.is_active():
                        raise TestbedError(f"SSH: connection lost while running: {command}")
                    if while_waiting is not None and time.monotonic() - checked >= 1:
                        checked = time.monotonic()
                        while_waiting()
                    with contextlib.suppress(TimeoutError, socket.timeout):
                        # Block briefly until data or the exit status arrive.
                        channel.status_event.wait(0.1)
            return int(channel.recv_exit_status())

    def output(self, command: str | Sequence[str], timeout: float) -> str:
        """Run a command that must succeed; returns its stdout as text."""
        out, err = io.BytesIO(), io.BytesIO()
        status = self.run(command, timeout, stdout=[out], stderr=[err])
        if status != 0:
            tail = " / ".join(err.getvalue().decode(errors="replace").strip().splitlines()[-3:])
            raise TestbedError(f"SSH: {command!r} exited {status}: {tail}")
        return out.getvalue().decode(errors="replace")

    @contextlib.contextmanager
    def _sftp(self) -> Iterator[paramiko.SFTPClient]:
        client = paramiko.SFTPClient.from_transport(self.transport)
        assert client is not None
        with client:
            yield client

    def put(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        def upload() -> None:
            with self._sftp() as sftp:
                sftp.put(str(local), remote)
                if mode is not None:
                    sftp.chmod(remote, mode)
        log.debug("SSH put %s → %s:%s", local, self.target.address, remote)
        self._retry(upload)

    def get(self, remote: str, local: Path) -> None:
        def download() -> None:
            tmp = local.with_name(local.name + ".part")
            with self._sftp() as sftp:
                sftp.get(remote, str(tmp))
            os.replace(tmp, local)
        log.debug("SSH get %s:%s → %s", self.target.address, remote, local)
        try:
            self._retry(download)
        except FileNotFoundError as e:
            raise TestbedError(f"SSH: no file {remote} in the guest") from e


def _tee(data: bytes, streams: Sequence[Sink]) -> None:
    for stream in streams:
        stream.write(data)
        with contextlib.suppress(AttributeError, ValueError):
            stream.flush()  # type: ignore[attr-defined]


def known_hosts_line(address: str, host_key: str, port: int = 22) -> str:
    """A known_hosts line for the system ssh client."""
    host = address if port == 22 else f"[{address}]:{port}"
    return f"{host} {' '.join(host_key.split()[:2])}\n"
