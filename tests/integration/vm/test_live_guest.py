"""End to end: the real live image booted over the network on a real testbed, SSH with the
pinned host key, /proc/cmdline, a file in and out. Needs the image engineer's `live_image`
fixture (tests/fixtures_image.py), which builds or reuses an image."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tempest_live_ci.image import Image
from tempest_live_ci.testbed.config import TestbedConfig, new_run_id
from tempest_live_ci.testbed.lifecycle import start_testbed
from tempest_live_ci.vm.boot import boot_vm
from tempest_live_ci.vm.config import VMConfig
from tests.conftest import Dirs, needs_root

Tlc = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [needs_root, pytest.mark.slow]


# Direct boot is exercised with the tiny guest (test_tiny_guest.py) and by the
# boot benchmark; here the network boot, which is what runs use.
@pytest.mark.parametrize("boot", ["network"])
def test_live_image_boots_and_answers_over_ssh(dirs: Dirs, no_leaks: None, tmp_path: Path,
                                                live_image: object, boot: str) -> None:
    image = live_image
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    payload = tmp_path / "payload"
    payload.write_bytes(b"tempest-live-ci\n" * 1000)
    with start_testbed(config) as testbed, boot_vm(
            testbed, image, dirs.top / "out", VMConfig(memory_mib=4096, boot=boot)) as vm:  # type: ignore[arg-type]
        assert vm.ssh is not None
        cmdline = vm.ssh.output("cat /proc/cmdline", timeout=60)
        assert f"fetch={testbed.http_url}/img/filesystem.squashfs" in cmdline
        assert "console=ttyS0" in cmdline
        # systemd finished booting: nothing waits, nothing failed but what is allowed to.
        state = vm.ssh.output("systemctl is-system-running --wait || true", timeout=300).strip()
        failed = vm.ssh.output("systemctl --failed --no-legend --plain", timeout=60)
        assert state == "running", f"system {state}; failed units:\n{failed}"
        assert vm.ssh.output("systemctl is-active ssh", timeout=60).strip() == "active"
        vm.ssh.put(payload, "/root/payload")
        assert vm.ssh.run("sha256sum /root/payload > /root/payload.sum", timeout=60) == 0
        vm.ssh.get("/root/payload", tmp_path / "back")
        timings = dict(vm.timings)
    assert (tmp_path / "back").read_bytes() == payload.read_bytes()
    assert {"ssh", "login", "squashfs"} <= set(timings), timings
    if boot == "network":
        assert {"dhcp", "boot.ipxe", "kernel", "initrd"} <= set(timings), timings


def test_vm_boot_ssh_destroy_through_the_cli(tlc: Tlc, dirs: Dirs, no_leaks: None,
                                             live_image: Image) -> None:
    env = {"TEMPEST_LIVE_CI_CACHE_DIR": str(live_image.directory.parent.parent)}
    run_id = new_run_id()
    boot = tlc("vm", "boot", "--run-id", run_id, "--image", live_image.hash, "--memory", "4096",
               env=env, timeout=1200)
    try:
        assert boot.returncode == 0, boot.stderr[-3000:]
        assert f"vm ssh --run-id {run_id}" in boot.stderr + boot.stdout
        # The guest outlives the command that booted it.
        assert run_id in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                        text=True).stdout
        ssh = tlc("vm", "ssh", "--run-id", run_id, "--", "cat", "/proc/cmdline", env=env)
        assert ssh.returncode == 0, ssh.stderr
        assert "fetch=http://192.168.100.1/img/filesystem.squashfs" in ssh.stdout
        status = tlc("vm", "ssh", "--run-id", run_id, "--", "exit", "3", env=env)
        assert status.returncode == 3
    finally:
        destroy = tlc("vm", "destroy", "--run-id", run_id, env=env)
    assert destroy.returncode == 0, destroy.stderr
    assert run_id not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                        text=True).stdout
    assert not (dirs.state / run_id).exists()
