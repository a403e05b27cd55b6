"""proc.wait_until, the host side's one waiting loop, against real processes."""

from __future__ import annotations

import subprocess

import pytest

from tempest_live_ci import proc
from tempest_live_ci.errors import TestbedError


class Clock:
    """Time of the test's own: sleep() moves it on, nothing waits for real."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_returns_true_once_a_real_child_has_exited() -> None:
    child = subprocess.Popen(["sleep", "0.3"])
    polls = []

    def exited() -> bool:
        polls.append(child.poll())
        return polls[-1] is not None

    assert proc.wait_until(exited, 60)
    # It was still running when first polled, and the wait ended when it had exited.
    assert polls[0] is None and polls[-1] == 0
    assert all(p is None for p in polls[:-1])


def test_returns_false_after_the_timeout_and_polls_meanwhile() -> None:
    clock, polls = Clock(), []
    # Intervals exact in binary: the count does not hang on a rounding.
    assert not proc.wait_until(lambda: bool(polls.append(clock.now)), 1.5, interval=0.25,
                               clock=clock, sleep=clock.sleep)
    # Polled at the start, after each interval, and once at the deadline; then no sleep more.
    assert polls == [1000.0 + 0.25 * i for i in range(7)]
    assert clock.sleeps == [0.25] * 6


def test_a_condition_already_met_costs_no_sleep() -> None:
    clock = Clock()
    assert proc.wait_until(lambda: True, 10, interval=5, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == []


def test_a_condition_met_later_ends_the_wait_at_once() -> None:
    clock = Clock()
    assert proc.wait_until(lambda: clock.now >= 1002.0, 60, interval=0.5, clock=clock,
                           sleep=clock.sleep)
    assert clock.sleeps == [0.5] * 4


def test_check_stops_the_wait_when_what_is_awaited_died() -> None:
    child = subprocess.Popen(["true"])
    child.wait()
    clock, polls = Clock(), []

    def alive() -> None:
        if child.poll() is not None:
            raise TestbedError("the daemon exited before listening")

    with pytest.raises(TestbedError, match="exited before listening"):
        proc.wait_until(lambda: bool(polls.append(1)), 30, check=alive, clock=clock,
                        sleep=clock.sleep)
    # Checked before the first poll: no poll, no sleep.
    assert polls == [] and clock.sleeps == []


def test_kill_pid_waits_for_a_process_that_is_not_our_child() -> None:
    # A daemon: started through a shell that exits, so it is not our child.
    out = subprocess.run(["sh", "-c", "sleep 30 > /dev/null 2>&1 & echo $!"],
                         capture_output=True, text=True, check=True).stdout
    pid = int(out)
    assert proc.pid_alive(pid)
    assert proc.kill_pid(pid, grace=5)
    assert not proc.pid_alive(pid)
    assert not proc.kill_pid(pid)
