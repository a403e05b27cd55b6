"""`cleanup` after a run killed with SIGKILL: it could undo nothing itself."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable

from tempest_live_ci import proc
from tempest_live_ci.testbed.config import new_run_id
from tests.conftest import TOP, Dirs, needs_root

Tlc = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [needs_root]

KILLED_RUN = """
import sys, time
sys.path.insert(0, {ci!r})
from tempest_live_ci.testbed import TestbedConfig, create_testbed
create_testbed(TestbedConfig(name={run_id!r}, apt_proxy=False))
print("up", flush=True)
time.sleep(600)
"""


def netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


def test_cleanup_removes_what_a_killed_run_left(tlc: Tlc, dirs: Dirs, no_leaks: None) -> None:
    run_id = new_run_id()
    owner = subprocess.Popen(
        [sys.executable, "-c", KILLED_RUN.format(ci=str(TOP / "ci"), run_id=run_id)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, **dirs.env()},
    )
    try:
        assert owner.stdout is not None and owner.stdout.readline().strip() == "up"
        # While its owner lives, a run is not a leftover.
        assert run_id not in tlc("cleanup", "--dry-run").stdout
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert run_id in netns()
    pids = [int(p.read_text()) for p in (dirs.state / run_id).glob("*.pid")]
    assert pids
    found = tlc("cleanup", "--dry-run")
    assert f"{run_id}: its run is gone" in found.stdout
    result = tlc("cleanup", check=True)
    assert f"{run_id}: removed network namespace {run_id}" in result.stdout
    assert "(dnsmasq)" in result.stdout
    assert run_id not in netns()
    assert not (dirs.state / run_id).exists()
    for pid in pids:
        assert not proc.pid_alive(pid)
    assert tlc("cleanup", check=True).stderr.strip().endswith("nothing to clean up")


def test_cleanup_removes_an_orphan_namespace_and_spares_kept_testbeds(
        tlc: Tlc, dirs: Dirs, no_leaks: None) -> None:
    orphan = new_run_id()
    subprocess.run(["ip", "netns", "add", orphan], check=True)
    kept = new_run_id()
    assert tlc("host", "setup", "--netns", kept, "--no-apt-proxy").returncode == 0
    try:
        result = tlc("cleanup", check=True)
        assert f"{orphan}: removed network namespace {orphan}" in result.stdout
        assert kept not in result.stdout
        assert "kept on purpose" in result.stderr
        assert kept in netns()
        forced = tlc("cleanup", "--include-kept", check=True)
        assert f"{kept}: removed network namespace {kept}" in forced.stdout
    finally:
        subprocess.run(["ip", "netns", "delete", orphan], capture_output=True)
        tlc("host", "teardown", "--netns", kept)
