"""A real network boot on an isolated testbed: qemu (TCG) with its NIC on the
tap, iPXE ROM → DHCP → boot.ipxe over HTTP → kernel and initramfs over HTTP →
a marker on the serial console → power off. Then nothing is left behind."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.testbed.config import TestbedConfig, new_run_id
from tempest_live_ci.testbed.lifecycle import start_testbed
from tempest_live_ci.vm.bootfiles import publish_boot_files
from tests.conftest import Dirs, needs_root
from tests.guestkit import busybox_initramfs, stock_kernel

pytestmark = [needs_root, pytest.mark.slow]

MARKER = "TLC-NETBOOT-MARKER-7f3a"
MAC = "52:54:00:7e:57:99"


def test_ipxe_network_boot_reaches_the_guest_and_leaves_nothing(
        dirs: Dirs, no_leaks: None, tmp_path: Path) -> None:
    kernel = stock_kernel()
    initrd = busybox_initramfs(tmp_path / "initrd.img",
                               f"echo {MARKER} $(cat /proc/cmdline) > /dev/console")
    console = dirs.top / "console.log"
    config = TestbedConfig(name=new_run_id(), guest_mac=MAC, apt_proxy=False)
    with start_testbed(config) as testbed:
        url = publish_boot_files(testbed, vmlinuz=kernel, initrd=initrd, squashfs=None,
                                 cmdline="console=ttyS0,115200n8 quiet panic=-1")
        assert url == "http://192.168.100.1/boot.ipxe"
        started = time.monotonic()
        with proc.spawn(
            ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max",
             "-m", "512", "-smp", "1", "-display", "none", "-no-reboot",
             "-serial", f"file:{console}", "-monitor", "none",
             "-netdev", f"tap,id=n0,ifname={testbed.tap},script=no,downscript=no",
             "-device", f"virtio-net-pci,netdev=n0,mac={MAC}",
             "-boot", "n", "-name", f"tlc-test,debug-threads=on,process={testbed.run_id}"],
            netns=testbed.netns, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        ) as qemu:
            try:
                qemu.wait(timeout=180)
            except subprocess.TimeoutExpired:
                pytest.fail("the guest did not power off within 180 s:\n"
                            + console.read_text(errors="replace")[-2000:])
        elapsed = time.monotonic() - started
        text = console.read_text(errors="replace")
        http_log = testbed.http_log.read_text()
        dhcp_log = testbed.dnsmasq_log.read_text()
    print(f"network boot to marker and power-off: {elapsed:.1f} s")
    assert MARKER in text, text[-2000:]
    # The kernel saw the command line from boot.ipxe.
    assert "initrd=initrd.img console=ttyS0,115200n8" in text
    assert '"GET /boot.ipxe HTTP/1.1" 200' in http_log
    assert '"GET /img/vmlinuz HTTP/1.1" 200' in http_log
    assert '"GET /img/initrd.img HTTP/1.1" 200' in http_log
    # iPXE asked and was recognised as iPXE.
    assert f"DHCPACK(tempestbr) 192.168.100.2 {MAC}" in dhcp_log
    assert "user class: iPXE" in dhcp_log
    assert not testbed.state_dir.exists()
