"""Every external command goes through run() or spawn().

Commands are argv lists (never a shell), logged at debug level. spawn() is a
context manager: its child is terminated when the block is left, also when an
exception or a signal unwinds the stack.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shlex
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from tempest_live_ci.errors import TestbedError, UsageError
from tempest_live_ci.log import log

# Debian package that ships each binary we call, for the "install it" hint.
PACKAGE_OF = {
    "ip": "iproute2",
    "dnsmasq": "dnsmasq-base",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "socat": "socat",
    "nft": "nftables",
    "libvirtd": "libvirt-daemon",
    "virtlogd": "libvirt-daemon",
    "virsh": "libvirt-clients",
    "apt-cacher-ng": "apt-cacher-ng",
    "lb": "live-build",
    "debootstrap": "debootstrap",
    "mksquashfs": "squashfs-tools",
    "unsquashfs": "squashfs-tools",
    "ssh-keygen": "openssh-client",
    "modprobe": "kmod",
    "udhcpc": "udhcpc",
    "busybox": "busybox-static",
    "cpio": "cpio",
}

Argv = Sequence[str | os.PathLike[str]]


def _argv(cmd: Argv, netns: str | None) -> list[str]:
    argv = [os.fspath(a) for a in cmd]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    return argv


def which(binary: str) -> str | None:
    found = shutil.which(binary)
    if found is None:
        # Root's PATH on some machines lacks the sbin directories.
        for directory in ("/usr/sbin", "/sbin"):
            candidate = Path(directory) / binary
            if candidate.exists():
                return str(candidate)
    return found


def require(*binaries: str) -> None:
    """Fail with exit 20 before changing anything if a needed binary is missing."""
    missing = [b for b in binaries if which(b) is None]
    if missing:
        packages = sorted({PACKAGE_OF.get(b, b) for b in missing})
        raise UsageError(
            f"missing command{'s' if len(missing) > 1 else ''}: {', '.join(missing)}",
            hint=f"apt-get install {' '.join(packages)}",
        )


def _missing(argv: list[str]) -> UsageError:
    binary = argv[0]
    return UsageError(
        f"command not found: {binary}",
        hint=f"apt-get install {PACKAGE_OF.get(os.path.basename(binary), os.path.basename(binary))}",
    )


def _resolve(argv: list[str]) -> list[str]:
    if "/" not in argv[0]:
        found = which(argv[0])
        if found is None:
            raise _missing(argv)
        argv = [found, *argv[1:]]
    return argv


def run(
    cmd: Argv,
    *,
    check: bool = True,
    capture: bool = False,
    input: str | bytes | None = None,
    netns: str | None = None,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    stdin: IO[Any] | int | None = None,
    error: type[Exception] = TestbedError,
) -> subprocess.CompletedProcess[str]:
    """Run a command to completion.

    stdin (a file already opened and checked, say) is the command's standard
    input, unless `input` is given. capture=True collects stdout and stderr as text. A failing command raises
    `error` (TestbedError by default) with the command, its exit status and the
    tail of its stderr, so a failed run explains itself.
    """
    argv = _resolve(_argv(cmd, netns))
    log.debug("+ %s", shlex.join(argv))
    full_env = None
    if env is not None:
        full_env = {**os.environ, **env}
    try:
        result = subprocess.run(
            argv,
            input=input.encode() if isinstance(input, str) else input,
            stdin=stdin if input is None else None,
            stdout=subprocess.PIPE if capture else stdout,
            stderr=subprocess.PIPE if capture else stderr,
            env=full_env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    except FileNotFoundError as e:
        raise _missing(argv) from e
    except subprocess.TimeoutExpired as e:
        raise TestbedError(f"command timed out after {timeout:.0f}s: {shlex.join(argv)}") from e
    out = result.stdout.decode(errors="replace") if isinstance(result.stdout, bytes) else result.stdout
    err = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else result.stderr
    completed = subprocess.CompletedProcess(argv, result.returncode, out, err)
    if check and result.returncode != 0:
        detail = (err or "").strip().splitlines()[-5:]
        message = f"command failed with exit status {result.returncode}: {shlex.join(argv)}"
        if detail:
            message += ": " + " / ".join(detail)
        raise error(message)
    return completed


def terminate(process: subprocess.Popen[Any], *, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds; reaps the child. Safe to call twice."""
    if process.poll() is not None:
        return
    log.debug("stopping pid %d (%s)", process.pid, os.path.basename(str(process.args[0])))  # type: ignore[index]
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        process.wait()


@contextlib.contextmanager
def spawn(
    cmd: Argv,
    *,
    netns: str | None = None,
    stdout: IO[Any] | int | None = None,
    stderr: IO[Any] | int | None = None,
    stdin: IO[Any] | int | None = subprocess.DEVNULL,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike[str] | None = None,
    grace: float = 5.0,
) -> Iterator[subprocess.Popen[bytes]]:
    """Start a long-running child; it is stopped when the block is left."""
    argv = _resolve(_argv(cmd, netns))
    log.debug("+ %s &", shlex.join(argv))
    try:
        process = subprocess.Popen(
            argv,
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            env={**os.environ, **env} if env is not None else None,
            cwd=cwd,
            # Our own session: a Ctrl-C on the terminal reaches us, and we stop
            # the child in order, instead of every child dying at once.
            start_new_session=True,
        )
    except FileNotFoundError as e:
        raise _missing(argv) from e
    try:
        yield process
    finally:
        if process.pid in _detached:
            _detached.discard(process.pid)
        else:
            terminate(process, grace=grace)


def detach(process: subprocess.Popen[bytes]) -> None:
    """Leave a child of spawn() running when its block ends: someone else (a journal
    record) stops it later by its pid."""
    _detached.add(process.pid)
    _daemons.append(process)


_detached: set[int] = set()


def pid_alive(pid: int) -> bool:
    """Is `pid` running? A zombie (exited, not yet reaped) is not."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not _is_zombie(pid)


def flock_held(path: Path) -> bool:
    """Does a live process hold an flock(2) on `path`? The kernel drops it when
    its holder dies, even by SIGKILL: a lock file nobody holds is stale."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def wait_until(done: Callable[[], bool], timeout: float, *, interval: float = 0.05,
               check: Callable[[], None] | None = None,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> bool:
    """Poll `done()` every `interval` seconds: True once it holds, False after `timeout`.

    The one waiting loop of the host side (the guest side's is deploy/util.py's
    wait_for_url/wait_for_port). `check()` runs before each poll and raises to
    stop waiting early (the daemon being waited for has died). The caller
    raises its own error on False, naming what did not happen. `clock` and
    `sleep` are time's, unless a test measures the loop in time of its own.
    """
    deadline = clock() + timeout
    while True:
        if check is not None:
            check()
        if done():
            return True
        if clock() >= deadline:
            return False
        sleep(interval)


def kill_pid(pid: int, *, grace: float = 5.0) -> bool:
    """Stop a process that is not our child (a daemon that wrote a pid file).

    Returns True if a process was there to stop.
    """
    if not pid_alive(pid):
        return False
    log.debug("stopping pid %d", pid)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if wait_until(lambda: not pid_alive(pid), grace):
        return True
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    time.sleep(0.05)
    _reap(pid)
    return True


def _reap(pid: int) -> None:
    """Collect the exit status if `pid` is our own child (a daemon we started)."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def read_pidfile(path: str | os.PathLike[str]) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def start_daemon(
    cmd: Argv,
    *,
    netns: str | None = None,
    log_file: str | os.PathLike[str],
    pid_file: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
) -> int:
    """Start a child that may outlive this process (a persistent testbed, a kept run).

    Its output goes to log_file and its pid to pid_file; whoever undoes the
    testbed stops it through that pid (see testbed/journal.py).
    """
    argv = _resolve(_argv(cmd, netns))
    log.debug("+ %s > %s &", shlex.join(argv), log_file)
    with open(log_file, "ab") as out:
        try:
            process = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                env={**os.environ, **env} if env is not None else None,
                start_new_session=True,
            )
        except FileNotFoundError as e:
            raise _missing(argv) from e
    Path(pid_file).write_text(f"{process.pid}\n")
    # Held so that Python does not warn about a running child it lost track
    # of; kill_pid() reaps it.
    _daemons.append(process)
    return process.pid


_daemons: list[subprocess.Popen[bytes]] = []


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot: with the pid, an identity
    that a recycled pid does not share."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[19])


def identity(pid: int | None = None) -> str:
    pid = os.getpid() if pid is None else pid
    return f"{pid} {start_time(pid)}"


def identity_alive(text: str) -> bool:
    """Is the process named by identity() still the same one, running?"""
    fields = text.split()
    if len(fields) != 2 or not fields[0].isdigit():
        return False
    pid = int(fields[0])
    return pid_alive(pid) and str(start_time(pid)) == fields[1]


def processes() -> Iterator[tuple[int, list[str]]]:
    """(pid, argv) of every process whose command line this one may read."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            argv = cmdline(int(entry.name))
            if argv:
                yield int(entry.name), argv


def cmdline(pid: int) -> list[str]:
    """The process's argv, or [] if it is gone (or not ours to read)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [os.fsdecode(a) for a in raw.split(b"\0") if a]
