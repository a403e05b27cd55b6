"""The host side of the in-guest stages: push deploy/ into the guest, run its steps.

    guest = Guest(machine, output_dir)
    guest.push(params, files)
    guest.step("prepare", timeout=900)
    with open(output_dir / "tempest.subunit", "wb") as stream:
        guest.step("tempest", timeout=7200, stdout=stream)

Each step's output (stderr) is kept in guest-logs/steps/STEP.log and in the
run's log as it arrives; what the step learned (its parts' times, package
versions) comes back from its result file. A failed step is a TestbedError
naming the step and the last lines of what failed. The machine is any
backend's (machine/): these steps know nothing of libvirt or namespaces.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shlex
import shutil
import tarfile
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tempest_live_ci import deploy, files
from tempest_live_ci.errors import TestbedError, UsageError
from tempest_live_ci.files import parse_json
from tempest_live_ci.log import log
from tempest_live_ci.machine import Machine, Sink

# Where the deploy package lives in the guest: `python3 -m deploy` from here.
GUEST_LIB = "/usr/local/lib/tempest-live-ci"
GUEST_STATE = "/var/lib/tempest-live-ci"
FAILED = 3  # deploy/__main__.py's status for a failed step
LOG_TAIL = 12
# For `deploy stop`: its SIGTERM wait and SIGKILL (deploy/running.py), and a slow guest's python.
STOP_TIMEOUT = 60


class LineLog(files.Recorded):
    """A byte stream written line by line to a file and to the log.

    The step's "==>" / "<==" lines (its parts) show on the console; every
    other line goes to the run's log at debug level.
    """

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(files.create(path, append=True))
        self.path = path
        self.pending = b""
        self.tail: list[str] = []

    def take(self, data: bytes) -> None:
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for raw in lines:
            self._line(raw.decode(errors="replace").rstrip())

    def _line(self, line: str) -> None:
        self.tail = [*self.tail[-(LOG_TAIL * 4):], line]
        level = logging.INFO if line.startswith(("==> ", "<== ")) else logging.DEBUG
        log.log(level, "guest: %s", line)

    def close(self) -> None:
        if self.pending:
            self._line(self.pending.decode(errors="replace").rstrip())
            self.pending = b""
        self.file.close()
        super().close()


class StepFailed(TestbedError):
    """A step ran and failed: its result (facts included) says what it learned first."""

    def __init__(self, message: str, *, hint: str | None, result: StepResult) -> None:
        super().__init__(message, hint=hint)
        self.result = result


@dataclass
class StepResult:
    name: str
    seconds: float
    parts: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # what the step said went wrong


def deploy_archive(params: Mapping[str, Any], files: Mapping[str, bytes], *,
                   lib: str = GUEST_LIB, state: str = GUEST_STATE) -> bytes:
    """deploy/ from this source tree, params.json and the job's files, as one tar.gz.

    Extracted at / in the guest: the package under `lib`, the rest under
    `state` (the names in `files` are relative to it).
    """
    source = Path(deploy.__file__).parent
    out = io.BytesIO()

    def add(name: str, data: bytes, mode: int = 0o644) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, int(time.time())
        tar.addfile(info, io.BytesIO(data))

    with tarfile.open(fileobj=out, mode="w:gz") as tar:
        for path in sorted(source.glob("*.py")):
            add(f"{lib.lstrip('/')}/deploy/{path.name}", path.read_bytes())
        add(f"{state.lstrip('/')}/params.json",
            (json.dumps(params, indent=1) + "\n").encode(), 0o600)
        for name, data in files.items():
            add(f"{state.lstrip('/')}/{name}", data)
    return out.getvalue()


class Guest:
    """The in-guest steps of one run; lib and state are the guest's directories
    (elsewhere only when the tests run steps on a host of their own)."""

    def __init__(self, machine: Machine, output_dir: Path, *,
                 lib: str = GUEST_LIB, state: str = GUEST_STATE) -> None:
        self.machine = machine
        self.logs = output_dir / "guest-logs"
        self.results: dict[str, StepResult] = {}
        self.lib = lib
        self.state = state

    def put_file(self, name: str, data: bytes) -> None:
        """A file under the guest's state directory (a load list, say)."""
        done = self.machine.run(["install", "-D", "-m", "0644", "/dev/stdin",
                                 f"{self.state}/{name}"], timeout=60, stdin=data)
        if done.returncode != 0:
            raise TestbedError(f"cannot write {self.state}/{name} in the guest "
                               f"(status {done.returncode})")

    def push(self, params: Mapping[str, Any], files: Mapping[str, bytes] | None = None) -> None:
        """The deploy code from this source tree, and the run's parameters."""
        archive = deploy_archive(params, files or {}, lib=self.lib, state=self.state)
        command = (f"rm -rf {shlex.quote(self.lib)}/deploy {shlex.quote(self.state)}/steps && "
                   "tar -xzf - --no-same-owner -C /")
        done = self.machine.run(["sh", "-c", command], timeout=120, stdin=archive)
        if done.returncode != 0:
            raise TestbedError(f"pushing the deploy code into the guest failed (status "
                               f"{done.returncode}): {done.stderr.decode(errors='replace').strip()}")
        log.debug("deploy code pushed (%d bytes)", len(archive))

    def step(self, name: str, timeout: float, *, args: tuple[str, ...] = (),
             stdout: Sink | None = None, log_name: str | None = None) -> StepResult:
        """Run `python3 -m deploy NAME` in the guest; raise TestbedError if it fails."""
        command = ["env", f"PYTHONPATH={self.lib}", f"TEMPEST_LIVE_CI_GUEST_STATE={self.state}",
                   "python3", "-m", "deploy", name, *args]
        started = time.monotonic()
        output = LineLog(self.logs / "steps" / f"{log_name or name}.log")
        try:
            status = self.machine.stream(command, stdout if stdout is not None else output,
                                         stderr=output, timeout=timeout)
        except TestbedError as e:
            raise TestbedError(f"step {name}: {e.message}",
                               hint=f"its output: {output.path}") from e
        except KeyboardInterrupt:
            # The closed channel tells the step nothing: a machine that is not the
            # run's own would go on running it (tempest against its cloud).
            self.stop(name, output)
            raise
        finally:
            output.close()
        result = self._result(name, time.monotonic() - started)
        if status != 0:
            raise self._failure(name, status, result, output)
        self.results[log_name or name] = result
        return result

    def stop(self, name: str, output: LineLog) -> None:
        """End step NAME in the guest with what it started (deploy/running.py); its words go
        to the step's log. A guest that cannot be asked is left to its backend's teardown."""
        command = ["env", f"PYTHONPATH={self.lib}", f"TEMPEST_LIVE_CI_GUEST_STATE={self.state}",
                   "python3", "-m", "deploy", "stop", name]
        log.info("stopping step %s in the guest", name)
        try:
            status = self.machine.stream(command, output, timeout=STOP_TIMEOUT)
        except TestbedError as e:
            log.warning("could not stop step %s in the guest: %s", name, e.message)
            return
        if status != 0:
            log.warning("could not stop step %s in the guest (status %d): %s", name, status,
                        " | ".join(line for line in output.tail[-3:] if line.strip()))

    def _result(self, name: str, seconds: float) -> StepResult:
        try:
            done = self.machine.run(["cat", f"{self.state}/steps/{name}.json"], timeout=30)
            if done.returncode != 0:
                raise TestbedError(f"no result of step {name}: "
                                   f"{done.stderr.decode(errors='replace').strip()}")
            data = parse_json(done.text(), f"the result of step {name}")
        except (TestbedError, UsageError) as e:
            log.debug("%s", e.message)
            data = {}
        if not isinstance(data, dict):
            data = {}
        parts, facts, error = data.get("parts"), data.get("facts"), data.get("error")
        return StepResult(name, round(seconds, 1), parts if isinstance(parts, dict) else {},
                          facts if isinstance(facts, dict) else {},
                          error if isinstance(error, str) else None)

    def _failure(self, name: str, status: int, result: StepResult,
                 output: LineLog) -> StepFailed:
        error = result.error
        if not error:
            marker = f"tempest-live-ci step {name} failed: "
            lines = [line for line in output.tail if line.strip()]
            error = next((line[len(marker):] for line in reversed(lines)
                          if line.startswith(marker)), None)
            if error is None:
                error = " | ".join(lines[-3:]) or "no output"
                error = f"exited with status {status}: {error}"
        for line in output.tail[-LOG_TAIL:]:
            log.error("  guest: %s", line)
        detail = " | ".join(part.strip() for part in str(error).splitlines() if part.strip())
        return StepFailed(f"step {name} failed: {detail}",
                          hint=f"its output: {output.path}", result=result)

    def collect_logs(self) -> Path | None:
        """guest-logs/: the guest's journal, /var/log, configuration, package list, memory, disk."""
        archive = self.logs / "guest-logs.tar.gz"
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            self.machine.alive()
        except TestbedError as e:
            log.warning("no logs from the guest: %s", e.message)
            return None
        try:
            with files.create(archive) as out:
                self.step("collect", 300, stdout=out)
        except TestbedError as e:
            log.warning("could not collect the guest's logs: %s", e.message)
            return None
        extract_logs(archive, self.logs)
        archive.unlink()
        return self.logs


# What the guest's logs may unpack to: its journal, /var/log, configuration.
LOGS_LIMIT = 4 * 1024 ** 3
LOGS_MEMBERS = 100_000
_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _open_parents(top: int, parts: tuple[str, ...]) -> list[int]:
    """The directories top/parts[0]/..., made (0755) where missing, each opened without
    following a link: a name the tarball made a link or a file cannot lead elsewhere."""
    fds: list[int] = []
    fd = top
    try:
        for part in parts:
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o755, dir_fd=fd)
            fd = os.open(part, _DIRECTORY, dir_fd=fd)
            fds.append(fd)
            os.fchmod(fd, 0o755)
    except BaseException:
        for opened in fds:
            os.close(opened)
        raise
    return fds


def _extract(tar: tarfile.TarFile, member: tarfile.TarInfo, top: int, parts: tuple[str, ...],
             made: set[tuple[str, ...]]) -> bool:
    """One member under the directory `top`; False if it was left out."""
    if member.isdir():
        for fd in _open_parents(top, parts):
            os.close(fd)
        return True
    fds = _open_parents(top, parts[:-1])
    try:
        where = fds[-1] if fds else top
        try:
            os.stat(parts[-1], dir_fd=where, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if parts not in made:  # there before: a step's log, not the guest's to replace
                return False
        fd = os.open(parts[-1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o644, dir_fd=where)
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), 0o644)
            source = tar.extractfile(member)
            if source is not None:
                shutil.copyfileobj(source, out, 1024 * 1024)
        made.add(parts)
        return True
    finally:
        for fd in fds:
            os.close(fd)


def extract_logs(archive: Path, destination: Path) -> None:
    """Unpack the guest's tar.gz: its regular files and directories, nothing else.

    The guest runs the packages under test, and its tarball is data: no name
    outside `destination` (absolute, '..'), no links, devices or FIFOs.
    Everything is the extracting user's, whatever uid or name the tarball
    gives (root's, when a run is root's), 0644 or 0755; no file is written
    through a link, none that was there before (the step logs) is replaced;
    LOGS_LIMIT bytes and LOGS_MEMBERS members at most. What was left out
    is counted in one warning.
    """
    destination.mkdir(parents=True, exist_ok=True)
    made: set[tuple[str, ...]] = set()
    top = os.open(destination, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _extract_all(archive, top, made)
    finally:
        os.close(top)


def _extract_all(archive: Path, top: int, made: set[tuple[str, ...]]) -> None:
    left_out, size = 0, 0
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for n, member in enumerate(tar):
                if n >= LOGS_MEMBERS or size + member.size > LOGS_LIMIT:
                    log.warning("%s: more than %d members or %d GiB, the rest left out",
                                archive.name, LOGS_MEMBERS, LOGS_LIMIT // 1024 ** 3)
                    break
                parts = tuple(p for p in member.name.split("/") if p not in ("", "."))
                if member.name.startswith("/") or ".." in parts or not parts \
                        or not (member.isfile() or member.isdir()):
                    left_out += 1
                    continue
                try:
                    extracted = _extract(tar, member, top, parts, made)
                except OSError:
                    extracted = False
                left_out += not extracted
                size += member.size if extracted and member.isfile() else 0
    except (tarfile.TarError, EOFError, zlib.error, OSError) as e:
        log.warning("%s: not a whole tar.gz (%s): what came before is kept", archive.name, e)
    if left_out:
        log.warning("%s: %d member%s left out (links, devices, FIFOs, names outside the logs, "
                    "or over what was there)", archive.name, left_out, "s" * (left_out != 1))
