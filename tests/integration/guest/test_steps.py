"""The step protocol over real SSH: deploy/ pushed, `python3 -m deploy STEP` run, results read.

The "guest" is the sshd fixture's namespace on this host, so only steps that
change nothing run here (check; install failing on an unknown profile before
apt is called); their library and state directories are the test's own.
"""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
from pathlib import Path

import pytest

from tempest_live_ci.deploy.params import Params
from tempest_live_ci.errors import TestbedError
from tempest_live_ci.guest.ssh import GuestSSH, SSHTarget
from tempest_live_ci.guest.steps import Guest, LineLog
from tempest_live_ci.machine import GuestNetwork
from tempest_live_ci.machine.ssh import SSHMachine
from tests.unit.deploy.test_stop import a_running_step, group_alive

from .conftest import Sshd

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.root]


def guest(sshd: Sshd, tmp_path: Path) -> tuple[GuestSSH, Guest]:
    ssh = GuestSSH(SSHTarget(sshd.address, sshd.host_key, sshd.client_key, netns=sshd.netns))
    ssh.connect()
    machine = SSHMachine(ssh, GuestNetwork(sshd.address), frozenset())
    return ssh, Guest(machine, tmp_path / "out", lib=str(tmp_path / "lib"),
                      state=str(tmp_path / "state"))


def test_push_then_a_step_returns_its_facts_and_keeps_its_output(sshd: Sshd,
                                                                 tmp_path: Path) -> None:
    ssh, g = guest(sshd, tmp_path)
    with ssh:
        g.push({"profile": "identity"}, {"lists/include.list": b"tempest.api\n"})
        result = g.step("check", timeout=120)
    assert json.loads((tmp_path / "state" / "params.json").read_text()) == {"profile": "identity"}
    assert (tmp_path / "state" / "params.json").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state" / "lists" / "include.list").read_bytes() == b"tempest.api\n"
    assert result.facts["kernel"] == platform.release()
    assert result.facts["vcpus"] == os.cpu_count()
    assert result.facts["memory_kib"] > 0
    assert g.results["check"] is result
    log = (tmp_path / "out" / "guest-logs" / "steps" / "check.log").read_text()
    assert f"kernel {platform.release()}" in log
    saved = json.loads((tmp_path / "state" / "steps" / "check.json").read_text())
    assert saved["status"] == "ok" and saved["facts"] == result.facts


def test_a_failing_step_names_itself_and_why(sshd: Sshd, tmp_path: Path) -> None:
    ssh, g = guest(sshd, tmp_path)
    with ssh:
        g.push(Params(profile="no-such-profile", suite="trixie", image_suite="trixie",
                      mirror="http://deb.debian.org/debian", guest_address="192.0.2.2",
                      admin_password="admin", service_password="service").as_dict())
        with pytest.raises(TestbedError) as raised:
            g.step("install", timeout=120)
        with pytest.raises(TestbedError) as usage:
            g.step("no-such-step", timeout=120)
    assert raised.value.message.startswith("step install failed: ")
    assert "unknown profile 'no-such-profile'" in raised.value.message
    assert raised.value.hint and "install.log" in raised.value.hint
    saved = json.loads((tmp_path / "state" / "steps" / "install.json").read_text())
    assert saved["status"] == "failed" and "no-such-profile" in saved["error"]
    assert usage.value.message.startswith("step no-such-step failed: exited with status 2")
    assert "usage: python3 -m deploy" in usage.value.message


def test_a_second_push_replaces_the_code_and_the_old_results(sshd: Sshd, tmp_path: Path) -> None:
    ssh, g = guest(sshd, tmp_path)
    with ssh:
        g.push({"profile": "identity"})
        g.step("check", timeout=120)
        stale = tmp_path / "lib" / "deploy" / "stale.py"
        stale.write_text("raise SystemExit('old code')\n")
        g.push({"profile": "identity", "run": 2})
    assert not stale.exists()
    assert not (tmp_path / "state" / "steps").exists()
    assert json.loads((tmp_path / "state" / "params.json").read_text())["run"] == 2


def test_stop_ends_the_running_step_over_ssh(sshd: Sshd, tmp_path: Path) -> None:
    """What an interrupted run does first (Guest.step): `deploy stop` over the session.
    A process group of this host stands for the running tempest step (the sshd's
    namespace shares the host's processes), as in tests/unit/deploy/test_stop.py."""
    ssh, g = guest(sshd, tmp_path)
    started: list[subprocess.Popen[bytes]] = []
    try:
        with ssh:
            g.push({"profile": "identity"})
            (tmp_path / "state" / "steps").mkdir()
            pgid = a_running_step(started, tmp_path / "state", "tempest")
            output = LineLog(tmp_path / "stop.log")
            g.stop("tempest", output)
            output.close()
        assert not group_alive(pgid)
        said = (tmp_path / "stop.log").read_text()
        assert f"stopping step tempest: SIGTERM to process group {pgid}" in said
        assert not (tmp_path / "state" / "steps" / "tempest.pid").exists()
    finally:
        for process in started:
            if group_alive(process.pid):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
