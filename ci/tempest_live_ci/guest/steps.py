"""The host side of the in-guest stages: push deploy/ into the guest, run its steps.

    guest = Guest(vm.ssh, output_dir, alive=check)
    guest.push(params, files)
    guest.step("prepare", timeout=900)
    with open(output_dir / "tempest.subunit", "wb") as stream:
        guest.step("tempest", timeout=7200, stdout=stream)

Each step's output (stderr) is kept in guest-logs/steps/STEP.log and in the
run's log as it arrives; what the step learned (its parts' times, package
versions) comes back from its result file. A failed step is a TestbedError
naming the step and the last lines of what failed.
"""

from __future__ import annotations

import io
import json
import logging
import shlex
import tarfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from tempest_live_ci import deploy
from tempest_live_ci.errors import TestbedError
from tempest_live_ci.guest.ssh import GuestSSH
from tempest_live_ci.log import log

# Where the deploy package lives in the guest: `python3 -m deploy` from here.
GUEST_LIB = "/usr/local/lib/tempest-live-ci"
GUEST_STATE = "/var/lib/tempest-live-ci"
FAILED = 3  # deploy/__main__.py's status for a failed step
LOG_TAIL = 12


class LineLog(io.RawIOBase):
    """A byte stream written line by line to a file and to the log.

    The step's "==>" / "<==" lines (its parts) show on the console; every
    other line goes to the run's log at debug level.
    """

    def __init__(self, path: Path) -> None:
        super().__init__()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = open(path, "ab")  # noqa: SIM115 - closed in close()
        self.pending = b""
        self.tail: list[str] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        data = bytes(data)
        self.file.write(data)
        self.file.flush()
        self.pending += data
        *lines, self.pending = self.pending.split(b"\n")
        for raw in lines:
            self._line(raw.decode(errors="replace").rstrip())
        return len(data)

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

    def __init__(self, ssh: GuestSSH, output_dir: Path,
                 alive: Callable[[], None] | None = None, *,
                 lib: str = GUEST_LIB, state: str = GUEST_STATE) -> None:
        self.ssh = ssh
        self.logs = output_dir / "guest-logs"
        self.alive = alive
        self.results: dict[str, StepResult] = {}
        self.lib = lib
        self.state = state

    def put_file(self, name: str, data: bytes) -> None:
        """A file under the guest's state directory (a load list, say)."""
        status = self.ssh.run(["install", "-D", "-m", "0644", "/dev/stdin", f"{self.state}/{name}"],
                              timeout=60, stdin=data)
        if status != 0:
            raise TestbedError(f"cannot write {self.state}/{name} in the guest (status {status})")

    def push(self, params: Mapping[str, Any], files: Mapping[str, bytes] | None = None) -> None:
        """The deploy code from this source tree, and the run's parameters."""
        archive = deploy_archive(params, files or {}, lib=self.lib, state=self.state)
        command = (f"rm -rf {shlex.quote(self.lib)}/deploy {shlex.quote(self.state)}/steps && "
                   "tar -xzf - --no-same-owner -C /")
        err = io.BytesIO()
        status = self.ssh.run(command, timeout=120, stdin=archive, stderr=[err])
        if status != 0:
            raise TestbedError(f"pushing the deploy code into the guest failed (status {status}): "
                               f"{err.getvalue().decode(errors='replace').strip()}")
        log.debug("deploy code pushed (%d bytes)", len(archive))

    def step(self, name: str, timeout: float, *, args: tuple[str, ...] = (),
             stdout: IO[bytes] | None = None, log_name: str | None = None) -> StepResult:
        """Run `python3 -m deploy NAME` in the guest; raise TestbedError if it fails."""
        command = ["env", f"PYTHONPATH={self.lib}", f"TEMPEST_LIVE_CI_GUEST_STATE={self.state}",
                   "python3", "-m", "deploy", name, *args]
        started = time.monotonic()
        output = LineLog(self.logs / "steps" / f"{log_name or name}.log")
        try:
            status = self.ssh.run(command, timeout, stderr=[output],
                                  stdout=[stdout] if stdout is not None else [output],
                                  while_waiting=self.alive)
        except TestbedError as e:
            raise TestbedError(f"step {name}: {e.message}",
                               hint=f"its output: {output.file.name}") from e
        finally:
            output.close()
        result = self._result(name, time.monotonic() - started)
        if status != 0:
            raise self._failure(name, status, result, output)
        self.results[log_name or name] = result
        return result

    def _result(self, name: str, seconds: float) -> StepResult:
        try:
            data = json.loads(self.ssh.output(["cat", f"{self.state}/steps/{name}.json"], 30))
        except (TestbedError, ValueError):
            data = {}
        return StepResult(name, round(seconds, 1), data.get("parts", {}), data.get("facts", {}),
                          data.get("error"))

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
                          hint=f"its output: {output.file.name}", result=result)

    def collect_logs(self) -> Path | None:
        """guest-logs/: the guest's journal, /var/log, configuration, package list, memory, disk."""
        archive = self.logs / "guest-logs.tar.gz"
        self.logs.mkdir(parents=True, exist_ok=True)
        try:
            if self.alive is not None:
                self.alive()
        except TestbedError as e:
            log.warning("no logs from the guest: %s", e.message)
            return None
        try:
            with open(archive, "wb") as out:
                self.step("collect", 300, stdout=out)
        except TestbedError as e:
            log.warning("could not collect the guest's logs: %s", e.message)
            return None
        extract_logs(archive, self.logs)
        archive.unlink()
        return self.logs


def extract_logs(archive: Path, destination: Path) -> None:
    """Unpack the guest's tar.gz: regular files and directories only, nothing outside."""
    with tarfile.open(archive, "r:gz") as tar:
        members = []
        for member in tar.getmembers():
            name = Path(member.name)
            if name.is_absolute() or ".." in name.parts:
                continue
            if member.isfile() or member.isdir():
                member.mode = 0o644 if member.isfile() else 0o755
                members.append(member)
        tar.extractall(destination, members=members)
