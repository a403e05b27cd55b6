"""End to end: the real live image booted over the network on a real testbed, SSH with the
pinned host key, /proc/cmdline, a file in and out. Needs the image engineer's `live_image`
fixture (tests/fixtures_image.py), which builds or reuses an image."""

from __future__ import annotations

from pathlib import Path

import pytest

from tempest_live_ci.testbed import TestbedConfig, start_testbed
from tempest_live_ci.testbed.config import new_run_id
from tempest_live_ci.vm.boot import boot_vm
from tempest_live_ci.vm.domain import VMConfig
from tests.conftest import Dirs, needs_root

fixtures_image = pytest.importorskip("tests.fixtures_image")
# Until tests/conftest.py loads tests.fixtures_image as a plugin, use its fixtures from here.
live_image = fixtures_image.live_image
live_image_state_dir = fixtures_image.live_image_state_dir

pytestmark = [needs_root, pytest.mark.slow]


@pytest.mark.parametrize("boot", ["network", "direct"])
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
        vm.ssh.put(payload, "/root/payload")
        assert vm.ssh.run("sha256sum /root/payload > /root/payload.sum", timeout=60) == 0
        vm.ssh.get("/root/payload", tmp_path / "back")
        timings = dict(vm.timings)
    assert (tmp_path / "back").read_bytes() == payload.read_bytes()
    assert {"ssh", "login", "squashfs"} <= set(timings), timings
    if boot == "network":
        assert {"dhcp", "boot.ipxe", "kernel", "initrd"} <= set(timings), timings
