"""The step that runs, on record; and `stop STEP`, which ends it and what it started.

A step is its own process group (tempest's workers, keystone-manage, apt
are in it) and writes steps/STEP.pid: the group and its leader's start time.
When the host is interrupted mid-step (Ctrl-C, a CI runner's timeout), it
closes its SSH channel, and nothing tells the step: on a machine that is not
the run's own (--machine ssh:) tempest would run on. So the host runs
`python3 -m deploy stop STEP` first: SIGTERM to the group, SIGKILL to what
is left after STOP_SECONDS. The start time tells a group that has ended, its
id since given to another process, from the step's own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

from . import util

STOP_SECONDS = 15.0


def pid_file(name: str) -> Path:
    return util.STATE / "steps" / f"{name}.pid"


def start_time(pid: int) -> int | None:
    """The process's start time (clock ticks since boot, /proc/PID/stat field 22); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after it.
    return int(stat.rpartition(")")[2].split()[19])


@contextlib.contextmanager
def on_record(name: str) -> Iterator[None]:
    """Run the step as a process group of its own, on record in steps/NAME.pid."""
    with contextlib.suppress(PermissionError):
        # A session leader (the step started by setsid) is a group leader already.
        os.setpgid(0, 0)
    pgid = os.getpgrp()
    path = pid_file(name)
    util.write_file(path, json.dumps({"pgid": pgid, "start": start_time(pgid)}) + "\n")
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def stop(name: str, seconds: str = str(STOP_SECONDS)) -> None:
    """End the running step NAME and its process group, SIGKILLed after SECONDS; says what
    it found and did."""
    if not re.fullmatch(r"[a-z][a-z-]*", name):
        raise util.StepError(f"stop: {name!r} is not a step's name")
    try:
        grace = float(seconds)
    except ValueError:
        raise util.StepError(f"stop: {seconds!r} is not a number of seconds") from None
    path = pid_file(name)
    try:
        record = json.loads(path.read_text())
        pgid, started = int(record["pgid"]), record["start"]
    except FileNotFoundError:
        util.say(f"no step {name} is running")
        util.facts["stopped"] = "not running"
        return
    except (ValueError, KeyError, TypeError) as e:
        raise util.StepError(f"{path} is not a step's record: {e}") from None
    leader = start_time(pgid)
    # Its leader may have ended before what it started (the group lives on, and
    # its id is not given out again meanwhile); a leader of another start time
    # is another process: the step ended without removing its record (killed).
    if pgid <= 1 or pgid == os.getpgrp() or not _group_alive(pgid) \
            or leader not in (started, None):
        util.say(f"step {name} (process group {pgid}) has ended")
        util.facts["stopped"] = "ended"
        path.unlink(missing_ok=True)
        return
    util.say(f"stopping step {name}: SIGTERM to process group {pgid}")
    os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _group_alive(pgid):
        util.say(f"step {name} still running after {grace:g} s: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)
        while _group_alive(pgid) and time.monotonic() < deadline + 5:
            time.sleep(0.1)
        util.facts["stopped"] = "killed"
    else:
        util.facts["stopped"] = "terminated"
    path.unlink(missing_ok=True)
