"""`python3 -m deploy stop STEP`: the running step's process group ended, and only it.

Tempest cannot run on this host, so a process group started here (a leader
and a child, as the tempest step and its workers are) stands for the running
step, on record as a step records itself (deploy/running.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.unit.deploy.test_step_protocol import DEPLOY_PARENT

# A leader that starts a worker, then both wait (the leader ignores SIGTERM when asked).
GROUP = """
import signal, subprocess, sys, time
if sys.argv[1] == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
subprocess.Popen(["sleep", "300"])
time.sleep(300)
"""


def start_time(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[19])


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_until(predicate: object, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def state(tmp_path: Path) -> Path:
    (tmp_path / "state" / "steps").mkdir(parents=True)
    return tmp_path / "state"


@pytest.fixture
def groups() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if group_alive(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def a_running_step(groups: list[subprocess.Popen[bytes]], state: Path, name: str,
                   kind: str = "plain") -> int:
    process = subprocess.Popen([sys.executable, "-c", GROUP, kind], start_new_session=True)
    groups.append(process)
    # Reaped as it ends, as the guest's shell reaps the step: a zombie is still in its group.
    threading.Thread(target=process.wait, daemon=True).start()
    # Both members are there: the worker is started before the leader sleeps.
    assert wait_until(lambda: len(members(process.pid)) == 2)
    (state / "steps" / f"{name}.pid").write_text(
        json.dumps({"pgid": process.pid, "start": start_time(process.pid)}) + "\n")
    return process.pid


def members(pgid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    found.add(int(entry.name))
            except ProcessLookupError:
                continue
    return found


def stop(state: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    result = subprocess.run(
        [sys.executable, "-m", "deploy", "stop", *args], capture_output=True, text=True,
        timeout=60, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(DEPLOY_PARENT),
                         "TEMPEST_LIVE_CI_GUEST_STATE": str(state)})
    return result, json.loads((state / "steps" / "stop.json").read_text())


def test_the_running_step_and_its_workers_are_terminated(state: Path,
                                                         groups: list[subprocess.Popen[bytes]]
                                                         ) -> None:
    pgid = a_running_step(groups, state, "tempest")
    result, data = stop(state, "tempest")
    assert result.returncode == 0, result.stderr
    assert f"stopping step tempest: SIGTERM to process group {pgid}" in result.stderr
    assert not group_alive(pgid) and not members(pgid)
    assert data["facts"] == {"stopped": "terminated", "memory_peak_mib": data["facts"]
                             ["memory_peak_mib"]}  # type: ignore[index]
    assert not (state / "steps" / "tempest.pid").exists()


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(
        state: Path, groups: list[subprocess.Popen[bytes]]) -> None:
    pgid = a_running_step(groups, state, "configure", "stubborn")
    result, data = stop(state, "configure", "1")
    assert result.returncode == 0, result.stderr
    assert "step configure still running after 1 s: SIGKILL" in result.stderr
    assert not group_alive(pgid)
    assert data["facts"]["stopped"] == "killed"  # type: ignore[index]


def test_workers_whose_leader_is_gone_are_still_the_steps(
        state: Path, groups: list[subprocess.Popen[bytes]]) -> None:
    pgid = a_running_step(groups, state, "tempest")
    os.kill(pgid, signal.SIGKILL)
    # Reaped: no /proc/PGID, the worker alone holds the group.
    assert wait_until(lambda: not Path(f"/proc/{pgid}").exists())
    assert members(pgid)
    result, data = stop(state, "tempest")
    assert result.returncode == 0, result.stderr
    assert not group_alive(pgid)
    assert data["facts"]["stopped"] == "terminated"  # type: ignore[index]


def test_a_record_whose_group_has_another_leader_now_kills_nothing(
        state: Path, groups: list[subprocess.Popen[bytes]]) -> None:
    pgid = a_running_step(groups, state, "tempest")
    record = state / "steps" / "tempest.pid"
    # The same id, another start time: what a killed step's record looks like once
    # its id is given to a new process.
    record.write_text(json.dumps({"pgid": pgid, "start": start_time(pgid) - 1}) + "\n")
    result, data = stop(state, "tempest")
    assert result.returncode == 0, result.stderr
    assert f"step tempest (process group {pgid}) has ended" in result.stderr
    assert group_alive(pgid) and len(members(pgid)) == 2
    assert data["facts"]["stopped"] == "ended"  # type: ignore[index]
    assert not record.exists()


def test_no_record_is_nothing_to_stop(state: Path) -> None:
    result, data = stop(state, "tempest")
    assert result.returncode == 0, result.stderr
    assert "no step tempest is running" in result.stderr
    assert data["facts"]["stopped"] == "not running"  # type: ignore[index]


@pytest.mark.parametrize(("args", "said"), [
    (("../params",), "'../params' is not a step's name"),
    (("tempest", "soon"), "'soon' is not a number of seconds"),
])
def test_bad_arguments_are_a_failed_stop(state: Path, args: tuple[str, ...], said: str) -> None:
    result, data = stop(state, *args)
    assert result.returncode == 3
    assert said in str(data["error"])


def test_a_step_is_on_record_while_it_runs_only(state: Path) -> None:
    (state / "params.json").write_text("{}\n")
    # check: quick, changes nothing; its record is gone once it has ended.
    result = subprocess.run(
        [sys.executable, "-m", "deploy", "check"], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(DEPLOY_PARENT),
             "TEMPEST_LIVE_CI_GUEST_STATE": str(state)})
    assert result.returncode == 0, result.stderr
    assert (state / "steps" / "check.json").exists()
    assert not (state / "steps" / "check.pid").exists()
