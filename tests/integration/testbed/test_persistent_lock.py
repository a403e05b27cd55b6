"""Runs on the persistent testbed: one at a time, and only with the testbed's settings.

Everything in a namespace standing in for the host (the fake_host fixture):
`host setup` and every `run` go through `ip netns exec`. The runs are the real
CLI, held in their VM stage before anything boots (tests/integration/runs.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import Dirs, needs_root
from tests.integration.runs import cli, fake_image, held_run, job_file, start_run
from tests.integration.testbed.clients import sh, tlc_in

pytestmark = [needs_root]

# What `host setup --no-apt-proxy` made, as a job says it.
SAME = {"mode": "persistent", "apt_proxy": False}


def errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.fixture
def persistent(fake_host: str, dirs: Dirs) -> str:
    setup = tlc_in(fake_host, dirs, "host", "setup", "--no-apt-proxy")
    assert setup.returncode == 0, setup.stderr
    yield fake_host
    down = tlc_in(fake_host, dirs, "host", "teardown")
    assert down.returncode == 0, down.stderr


def run_once(ns: str, dirs: Dirs, job: Path, output: Path,
             *args: str) -> subprocess.CompletedProcess[str]:
    """A run that is refused: it must end on its own, before the image."""
    return subprocess.run(cli("run", str(job), "--output", str(output), *args, netns=ns),
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, **dirs.env()})


@pytest.mark.parametrize("key, value, said, had", [
    ("nat", True, "true", "false"),
    ("apt_proxy", True, "true", "false"),
    ("guest_mac", "52:54:00:00:00:09", "52:54:00:00:00:09", "52:54:00:7e:57:02"),
    ("host_address", "192.168.7.1/24", "192.168.7.1/24", "192.168.100.1/24"),
    ("guest_address", "192.168.100.9", "192.168.100.9", "192.168.100.2"),
    ("host_ipv6", None, "none", "fd74:6c63:0:1::1/64"),
])
def test_a_job_with_other_testbed_settings_is_refused(
        persistent: str, dirs: Dirs, tmp_path: Path, key: str, value: object, said: str,
        had: str) -> None:
    job = job_file(tmp_path, **{**SAME, key: value})
    before = links_and_rules(persistent), sorted(dirs.state.rglob("*"))
    result = run_once(persistent, dirs, job, tmp_path / "out")
    assert result.returncode == 20, result.stderr
    assert errors(result.stderr) == [
        f"error: {job}: testbed.{key}: the job says {said}, the persistent testbed tempest was "
        f"set up with {had}"], result.stderr
    # Refused before anything but its summary (every run leaves one).
    assert "Preparing the image" not in result.stderr
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["exit_code"] == 20
    assert (links_and_rules(persistent), sorted(dirs.state.rglob("*"))) == before


def test_a_second_run_is_refused_at_once_or_after_its_wait(
        persistent: str, dirs: Dirs, tmp_path: Path) -> None:
    job = job_file(tmp_path, **SAME)
    fake_image(job)
    with held_run(dirs, job, tmp_path / "first", "qemu", netns=persistent) as first:
        first_id = run_id_of(first.log())
        assert "Booting the guest" in first.log()
        refused = run_once(persistent, dirs, job, tmp_path / "second")
        assert refused.returncode == 16, refused.stderr
        line = errors(refused.stderr)
        assert len(line) == 1, refused.stderr
        assert re.fullmatch(rf"error: testbed tempest is in use by run {first_id} "
                            rf"\(pid {first.process.pid}, since \d\d:\d\d:\d\d\)", line[0]), line
        assert "--testbed-wait" in refused.stderr
        # It never got to its image.
        assert "Preparing the image" not in refused.stderr

        started = time.monotonic()
        waited = run_once(persistent, dirs, job, tmp_path / "third", "--testbed-wait", "2")
        assert time.monotonic() - started >= 2
        assert waited.returncode == 16, waited.stderr
        assert f"in use by run {first_id}" in waited.stderr
        assert "waiting for it" in waited.stderr
        assert errors(waited.stderr)[0].endswith("; waited 2s")


def test_a_waiting_run_goes_on_when_the_first_one_is_killed(
        persistent: str, dirs: Dirs, tmp_path: Path) -> None:
    """SIGKILL frees the testbed (flock): no stale lock, no cleanup needed first."""
    job = job_file(tmp_path, **SAME)
    fake_image(job)
    with held_run(dirs, job, tmp_path / "first", "qemu", netns=persistent) as first:
        first_id = run_id_of(first.log())
        second = start_run(dirs, job, tmp_path / "second", "qemu", "--testbed-wait", "120",
                           netns=persistent)
        try:
            wait_for(lambda: "waiting for it" in second.log(), second.log)
            assert f"in use by run {first_id}" in second.log()
            first.kill()
            second.wait_held(60)
            second_id = run_id_of(second.log())
            assert f"is free now: taken by run {second_id}" in second.log()
            assert "Booting the guest" in second.log()
        finally:
            second.kill()


def test_a_guest_kept_on_the_testbed_holds_it_until_vm_destroy(
        persistent: str, dirs: Dirs, tmp_path: Path) -> None:
    from tempest_live_ci.testbed.lifecycle import load_testbed
    from tests.integration.testbed.test_vm_destroy import keep_a_guest

    _, testbed = load_testbed("tempest")
    keep_a_guest(testbed, dirs)
    job = job_file(tmp_path, **SAME)
    fake_image(job)
    refused = run_once(persistent, dirs, job, tmp_path / "refused")
    assert refused.returncode == 16, refused.stderr
    assert errors(refused.stderr) == [
        f"error: testbed tempest is in use by the guest of run {testbed.run_id}, kept running "
        f"(tempest-live-ci vm destroy --run-id {testbed.run_id} frees it)"]
    destroyed = tlc_in(persistent, dirs, "vm", "destroy", "--run-id", testbed.run_id)
    assert destroyed.returncode == 0, destroyed.stderr
    with held_run(dirs, job, tmp_path / "after", "qemu", netns=persistent) as run:
        assert "Booting the guest" in run.log()


# A run on the persistent testbed as boot_vm leaves it once its guest is up: the
# testbed's lock held, the guest's record written (vm/boot.py); and with
# --keep-on-failure, `keep` beside it. No guest: its domain is libvirt's test driver's.
GUEST_RECORDED = """
import sys, time
sys.path.insert(0, {ci!r})
from tempest_live_ci.testbed.lifecycle import keep_testbed, load_testbed
from tempest_live_ci.testbed.lock import testbed_lock
from tempest_live_ci.vm.boot import VMState
from tempest_live_ci.vm.domain import domain_name
_, testbed = load_testbed("tempest")
with testbed_lock("tempest", f"run {{testbed.run_id}}"):
    if {kept!r}:
        keep_testbed(testbed)
    VMState(run_id=testbed.run_id, uri="test:///default", domain=domain_name(testbed.run_id),
            address=str(testbed.guest_address), netns=testbed.netns, private_key="/nonexistent",
            host_key="ssh-ed25519 AAAA", output_dir="/nonexistent",
            private_libvirtd=False).write(testbed.state_dir)
    print(testbed.run_id, flush=True)
    time.sleep(600)
"""


@pytest.mark.parametrize("kept", [False, True], ids=["killed", "killed-kept"])
def test_the_guest_record_of_a_killed_run_is_removed_by_cleanup(
        persistent: str, dirs: Dirs, tmp_path: Path, kept: bool) -> None:
    """SIGKILL leaves vm.json on the persistent testbed: every later run is refused (its
    guest may still run on the tap) until `cleanup` removes the record; one kept on
    purpose (--keep-on-failure) stays until `vm destroy`."""
    from tests.conftest import TOP

    record = dirs.state / "tempest" / "vm.json"
    child = subprocess.Popen(
        ["ip", "netns", "exec", persistent, sys.executable, "-c",
         GUEST_RECORDED.format(ci=str(TOP / "ci"), kept=kept)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, **dirs.env()})
    try:
        assert child.stdout is not None
        guest_run = child.stdout.readline().strip()
        assert re.fullmatch(r"tlc-[0-9a-f]{8}", guest_run) and record.exists(), guest_run
        # While its run lives, the record is the run's.
        live = tlc_in(persistent, dirs, "cleanup", "--dry-run")
        assert live.returncode == 0 and "tempest:" not in live.stdout, live.stdout
    finally:
        child.kill()
        child.wait()
    assert record.exists()
    job = job_file(tmp_path, **SAME)
    refused = run_once(persistent, dirs, job, tmp_path / "refused")
    assert refused.returncode == 16, refused.stderr
    dry = tlc_in(persistent, dirs, "cleanup", "--dry-run")
    result = tlc_in(persistent, dirs, "cleanup")
    assert result.returncode == 0, result.stderr
    if kept:
        assert errors(refused.stderr) == [
            f"error: testbed tempest is in use by the guest of run {guest_run}, kept running "
            f"(tempest-live-ci vm destroy --run-id {guest_run} frees it)"], refused.stderr
        assert "tempest:" not in dry.stdout + result.stdout
        assert record.exists()
        destroyed = tlc_in(persistent, dirs, "vm", "destroy", "--run-id", guest_run)
        assert destroyed.returncode == 0, destroyed.stderr
    else:
        assert errors(refused.stderr) == [
            f"error: testbed tempest is in use by the guest of run {guest_run}, whose run was "
            "killed (tempest-live-ci cleanup removes it)"], refused.stderr
        assert f"tempest: the record of the guest of run {guest_run}, whose run is gone" \
            in dry.stdout, dry.stdout
        assert f"tempest: removed the record of the guest of run {guest_run} ({record})" \
            in result.stdout, result.stdout
    assert not record.exists()
    # The testbed is left up, and free: the next run boots (held before anything starts).
    status = tlc_in(persistent, dirs, "host", "status")
    assert status.returncode == 0 and "tempest: up" in status.stdout, status.stdout
    fake_image(job)
    with held_run(dirs, job, tmp_path / "after", "qemu", netns=persistent) as run:
        assert "Booting the guest" in run.log()


def test_host_setup_with_nothing_to_do_does_not_wait_for_a_run(
        persistent: str, dirs: Dirs, tmp_path: Path) -> None:
    job = job_file(tmp_path, **SAME)
    fake_image(job)
    with held_run(dirs, job, tmp_path / "first", "qemu", netns=persistent):
        started = time.monotonic()
        again = tlc_in(persistent, dirs, "host", "setup", "--no-apt-proxy")
        assert again.returncode == 0 and "nothing changed" in again.stderr
        assert time.monotonic() - started < 10


def links_and_rules(ns: str) -> str:
    """Link names and the ruleset (addresses and link details change with time: RAs, timers)."""
    links = sh("ip", "-n", ns, "-o", "link", "show").stdout
    names = sorted(line.split(":")[1].strip() for line in links.splitlines())
    return " ".join(names) + sh("ip", "netns", "exec", ns, "nft", "list", "ruleset").stdout


def run_id_of(log: str) -> str:
    found = re.search(r"run id (tlc-[0-9a-f]{8})", log)
    assert found is not None, log
    return found.group(1)


def wait_for(condition, what, timeout: float = 60) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what()
        time.sleep(0.1)
