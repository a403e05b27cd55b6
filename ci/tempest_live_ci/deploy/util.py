"""What every in-guest step uses: one command runner, timed parts, ini edits, waiting."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from .params import Params

# The runner's tests point the state directory elsewhere to run steps on a test host.
STATE = Path(os.environ.get("TEMPEST_LIVE_CI_GUEST_STATE", "/var/lib/tempest-live-ci"))
PARAMS = STATE / "params.json"
LOG_DIR = Path("/var/log/tempest-live-ci")

# Times of the parts of the running step, written into its result file.
parts: dict[str, float] = {}
facts: dict[str, Any] = {}


class StepError(Exception):
    """A step failed: the message names what, with the command's last lines."""


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def params() -> Params:
    """params.json as the host wrote it (guest/plan.py), each value of its type."""
    return Params.from_dict(json.loads(PARAMS.read_text()))


@contextlib.contextmanager
def part(name: str) -> Iterator[None]:
    """A timed part of a step: "==> name" before, its seconds after."""
    say(f"==> {name}")
    start = time.monotonic()
    try:
        yield
    finally:
        seconds = round(time.monotonic() - start, 1)
        parts[name] = seconds
        say(f"<== {name} ({seconds:.1f} s)")


def run(argv: Sequence[str], *, env: Mapping[str, str] | None = None, check: bool = True,
        capture: bool = False, input: str | None = None, cwd: str | None = None,
        stdout: Any = None) -> subprocess.CompletedProcess[str]:
    """Run a command (argv, never a shell line); its output goes to our stderr.

    A failure raises StepError with the command, its status and the last lines
    of its output, so the host can name what failed without reading the log.
    """
    say("+ " + shlex.join(argv))
    full_env = {**os.environ, **env} if env else None
    if capture or check:
        # Keep the output to quote it on failure, and still show it as it comes.
        process = subprocess.Popen(
            list(argv), env=full_env, cwd=cwd, text=True, errors="replace",
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.STDOUT if stdout is None else subprocess.PIPE)
        if input is not None:
            assert process.stdin is not None
            process.stdin.write(input)
            process.stdin.close()
        lines: list[str] = []
        stream = process.stdout if stdout is None else process.stderr
        assert stream is not None
        for line in stream:
            lines.append(line)
            if not capture:
                sys.stderr.write(line)
                sys.stderr.flush()
        status = process.wait()
        output = "".join(lines)
    else:
        completed = subprocess.run(list(argv), env=full_env, cwd=cwd, text=True, input=input,
                                   stdout=sys.stderr if stdout is None else stdout, check=False)
        status, output = completed.returncode, ""
    if check and status != 0:
        tail = [line.rstrip() for line in output.splitlines() if line.strip()][-8:]
        raise StepError(f"{shlex.join(argv)} exited with status {status}"
                        + (":\n  " + "\n  ".join(tail) if tail else ""))
    return subprocess.CompletedProcess(list(argv), status, output, "")


def ini_set(path: str | Path, values: Mapping[str, str | int | bool]) -> None:
    """Set "section.key" values in an ini file in place, comments kept: one `crudini --merge`."""
    sections: dict[str, list[str]] = {}
    for dotted, value in values.items():
        section, _, key = dotted.partition(".")
        if isinstance(value, bool):
            value = "true" if value else "false"
        sections.setdefault(section or "DEFAULT", []).append(f"{key} = {value}")
    snippet = "".join(f"[{section}]\n" + "".join(f"{line}\n" for line in lines)
                      for section, lines in sections.items())
    run(["crudini", "--merge", str(path)], input=snippet)


def wait_for_url(url: str, timeout: float, *, what: str) -> float:
    """Poll until `url` answers HTTP (any status below 500); returns the seconds waited."""
    start = time.monotonic()
    last = "no answer"
    while time.monotonic() - start < timeout:
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                if response.status < 500:
                    return time.monotonic() - start
        except urllib.error.HTTPError as e:
            if e.code < 500:
                return time.monotonic() - start
            last = f"HTTP {e.code}"
        except (OSError, urllib.error.URLError) as e:
            last = str(getattr(e, "reason", e))
        time.sleep(1)
    raise StepError(f"{what}: {url} did not answer within {timeout:.0f} s ({last})")


def wait_for_port(port: int, timeout: float, *, what: str) -> None:
    """Poll until something listens on 127.0.0.1:`port` (a daemon that speaks no HTTP)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        with socket.socket() as s:
            s.settimeout(2)
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(1)
    raise StepError(f"{what}: nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


def log_tail(directories: Sequence[str | Path], lines: int = 8) -> str:
    """The last lines of the newest log file in `directories`, for a failure message.

    The newest file is the one the failing daemon wrote last: with nova's or
    neutron's several daemons that is the one that just broke. "" when there
    is none (a daemon that logs only to the journal).
    """
    logs = [f for d in directories for f in Path(d).glob("*.log") if f.is_file()]
    if not logs:
        return ""
    newest = max(logs, key=lambda f: f.stat().st_mtime)
    with open(newest, "rb") as f:
        f.seek(max(0, f.seek(0, os.SEEK_END) - 65536))
        text = f.read().decode(errors="replace")
    tail = [line.rstrip() for line in text.splitlines() if line.strip()][-lines:]
    return f"last lines of {newest}:\n  " + "\n  ".join(tail) if tail else ""


def write_file(path: str | Path, text: str, mode: int = 0o644) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tlc-new")
    tmp.write_text(text)
    tmp.chmod(mode)
    os.replace(tmp, path)


def package_versions(names: Sequence[str]) -> dict[str, str]:
    """Installed versions of the named packages (dpkg-query); absent ones are left out."""
    result = run(["dpkg-query", "-W", "-f", "${Package}\\t${Version}\\t${db:Status-Abbrev}\\n",
                  *names], check=False, capture=True)
    versions = {}
    for line in result.stdout.splitlines():
        fields = line.split("\t")
        if len(fields) == 3 and fields[2].startswith("ii"):
            versions[fields[0]] = fields[1]
    return versions
