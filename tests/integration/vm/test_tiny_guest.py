"""A private libvirtd in the run's namespace boots the tiny guest (TCG): direct and network boot.

Real libvirtd, real qemu, real testbed (dnsmasq, HTTP); the guest is a stock
Debian kernel with a busybox initramfs that prints a marker and powers off.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.testbed import TestbedConfig, start_testbed
from tempest_live_ci.testbed.config import new_run_id
from tempest_live_ci.testbed.kvm import Accelerator
from tempest_live_ci.vm.boot import BootFiles, start_vm, wait_for_phase
from tempest_live_ci.vm.domain import VMConfig
from tests.conftest import TOP, Dirs, needs_root
from tests.guestkit import busybox_initramfs, stock_kernel

pytestmark = [needs_root, pytest.mark.slow]

MARKER = "TLC-VM-TINY-MARKER-42"
TCG = Accelerator("tcg", "forced by the test", False)


def _tiny(tmp_path: Path) -> BootFiles:
    initrd = busybox_initramfs(tmp_path / "initrd.img",
                               f"echo {MARKER} $(cat /proc/cmdline) > /dev/console")
    return BootFiles(stock_kernel(), initrd, None, "panic=-1")


@pytest.mark.parametrize("boot", ["direct", "network"])
def test_tiny_guest_boots_under_a_private_libvirtd(
        dirs: Dirs, no_leaks: None, tmp_path: Path, boot: str) -> None:
    output = dirs.top / "out"
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    with start_testbed(config) as testbed:
        with start_vm(testbed, _tiny(tmp_path), output, VMConfig(memory_mib=512, boot=boot),
                      accelerator=TCG) as vm:
            assert vm.uri.startswith("qemu:///system?socket=")
            assert (testbed.state_dir / "libvirtd.pid").exists()
            if boot == "network":
                wait_for_phase(vm, "DHCP", ("dhcp",), 120)
                wait_for_phase(vm, "kernel", ("kernel", "initrd"), 120)
            deadline = time.monotonic() + 180
            while vm.running() and time.monotonic() < deadline:
                time.sleep(0.5)
            assert not vm.running(), "the guest did not power off"
            timings = dict(vm.timings)
        assert not (testbed.state_dir / "libvirtd.pid").exists()
    console = (output / "console.log").read_text(errors="replace")
    assert MARKER in console, console[-2000:]
    # Direct boot passes the same command line the network boot gets from boot.ipxe.
    assert "console=ttyS0,115200n8" in console
    assert (output / "domain.xml").read_text().count("<boot dev='network'/>") == (
        boot == "network")
    if boot == "network":
        assert {"dhcp", "boot.ipxe", "kernel", "initrd"} <= set(timings), timings


def test_sigint_during_boot_exits_130_and_leaves_nothing(
        dirs: Dirs, no_leaks: None, tmp_path: Path) -> None:
    initrd = busybox_initramfs(tmp_path / "initrd.img", "sleep 600")
    run_id = new_run_id()
    env = {**os.environ, **dirs.env()}
    with open(tmp_path / "stderr", "wb") as err:
        process = subprocess.Popen(
            [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "vm", "boot",
             "--run-id", run_id, "--kernel", str(stock_kernel()), "--initrd", str(initrd),
             "--boot", "direct", "--memory", "512", "--output", str(dirs.top / "out")],
            stdout=subprocess.DEVNULL, stderr=err, env=env)
        try:
            deadline = time.monotonic() + 120
            while "Booting the guest" not in (tmp_path / "stderr").read_text():
                assert process.poll() is None, (tmp_path / "stderr").read_text()
                assert time.monotonic() < deadline, (tmp_path / "stderr").read_text()
                time.sleep(0.2)
            time.sleep(1)
            process.send_signal(signal.SIGINT)
            assert process.wait(60) == 130, (tmp_path / "stderr").read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert not (dirs.state / run_id).exists()
    assert proc.run(["ip", "netns", "list"], capture=True).stdout.count(run_id) == 0
