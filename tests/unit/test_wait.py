"""proc.wait_until, the host side's one waiting loop, against real processes."""

from __future__ import annotations

import subprocess
import time

import pytest

from tempest_live_ci import proc
from tempest_live_ci.errors import TestbedError


def test_returns_true_once_a_real_child_has_exited() -> None:
    child = subprocess.Popen(["sleep", "0.3"])
    start = time.monotonic()
    assert proc.wait_until(lambda: child.poll() is not None, 10)
    waited = time.monotonic() - start
    assert 0.25 < waited < 2, waited


def test_returns_false_after_the_timeout_and_polls_meanwhile() -> None:
    polls = []
    start = time.monotonic()
    assert not proc.wait_until(lambda: bool(polls.append(1)), 0.3, interval=0.05)
    waited = time.monotonic() - start
    assert 0.3 <= waited < 1.5, waited
    # Polled at the start, every interval, and once at the deadline.
    assert 4 <= len(polls) <= 8, len(polls)


def test_a_condition_already_met_costs_no_sleep() -> None:
    start = time.monotonic()
    assert proc.wait_until(lambda: True, 10, interval=5)
    assert time.monotonic() - start < 0.5


def test_check_stops_the_wait_when_what_is_awaited_died() -> None:
    child = subprocess.Popen(["true"])
    child.wait()

    def alive() -> None:
        if child.poll() is not None:
            raise TestbedError("the daemon exited before listening")

    start = time.monotonic()
    with pytest.raises(TestbedError, match="exited before listening"):
        proc.wait_until(lambda: False, 30, check=alive)
    assert time.monotonic() - start < 1


def test_kill_pid_waits_for_a_process_that_is_not_our_child() -> None:
    # A daemon: started through a shell that exits, so it is not our child.
    out = subprocess.run(["sh", "-c", "sleep 30 > /dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True).stdout
    pid = int(out)
    assert proc.pid_alive(pid)
    assert proc.kill_pid(pid, grace=5)
    assert not proc.pid_alive(pid)
    assert not proc.kill_pid(pid)
