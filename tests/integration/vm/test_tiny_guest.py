"""A private libvirtd in the run's namespace boots the tiny guest (TCG): direct and network boot.

Real libvirtd, real qemu, real testbed (dnsmasq, HTTP); the guest is a stock
Debian kernel with a busybox initramfs that prints a marker and powers off.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.errors import TestbedError
from tempest_live_ci.image.model import Image
from tempest_live_ci.testbed.config import TestbedConfig, new_run_id
from tempest_live_ci.testbed.lifecycle import start_testbed
from tempest_live_ci.vm.boot import BootFiles, boot_vm, start_vm, wait_for_phase, with_serial_console
from tempest_live_ci.vm.commands import destroy_guest
from tempest_live_ci.vm.config import BootTimeouts, VMConfig
from tempest_live_ci.vm.kvm import Accelerator
from tempest_live_ci.vm.libvirtd import qemu_account
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


def _status_ids(pid: int) -> tuple[set[int], set[int]]:
    """The real, effective, saved and filesystem uids and gids of a process."""
    fields = dict(line.split(":", 1) for line in
                  Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return ({int(v) for v in fields["Uid"].split()}, {int(v) for v in fields["Gid"].split()})


def test_qemu_runs_unprivileged_and_writes_through_no_link(
        dirs: Dirs, no_leaks: None, tmp_path: Path) -> None:
    kvm_before = os.stat("/dev/kvm") if os.path.exists("/dev/kvm") else None
    initrd = busybox_initramfs(tmp_path / "initrd.img",
                               f"echo {MARKER} > /dev/console; sleep 600")
    files = BootFiles(stock_kernel(), initrd, None, "panic=-1")
    # Closed to others, as a home directory is: libvirtd opens the serial
    # file for qemu, which could not reach it itself.
    output = dirs.top / "private" / "out"
    output.parent.mkdir(mode=0o700)
    # Links someone left in the output directory (vm boot --output takes any
    # directory): libvirtd and the harness replace them, never write through.
    output.mkdir()
    victim = dirs.top / "victim"
    victim.write_text("intact\n")
    for name in ("console.log", "domain.xml"):
        (output / name).symlink_to(victim)
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    account = qemu_account()
    assert account.uid != 0 and account.gid != 0
    with start_testbed(config) as testbed, start_vm(
            testbed, files, output, VMConfig(memory_mib=512, boot="direct"),
            accelerator=TCG) as vm:
        pidfile = testbed.state_dir / "libvirt" / "run" / "qemu" / f"{vm.name}.pid"
        assert proc.wait_until(pidfile.exists, 30, interval=0.2), "no qemu pid file"
        pid = proc.read_pidfile(pidfile)
        assert pid is not None
        uids, gids = _status_ids(pid)
        assert uids == {account.uid}, uids
        assert gids == {account.gid}, gids
        assert proc.wait_until(
            lambda: MARKER in (output / "console.log").read_text(errors="replace"), 120,
            interval=0.5), (output / "console.log").read_text(errors="replace")[-2000:]
        if kvm_before is not None:
            # Inside the daemon's namespace qemu's /dev/kvm is the same device, its own.
            seen = os.stat(f"/proc/{pid}/root/dev/kvm")
            assert (seen.st_rdev, seen.st_uid) == (kvm_before.st_rdev, account.uid)
    assert victim.read_text() == "intact\n"
    assert not (output / "console.log").is_symlink() and not (output / "domain.xml").is_symlink()
    if kvm_before is not None:
        after = os.stat("/dev/kvm")
        assert (after.st_mode, after.st_uid, after.st_gid) == (
            kvm_before.st_mode, kvm_before.st_uid, kvm_before.st_gid)


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


def _image_of(tmp_path: Path, init_script: str) -> Image:
    """An Image record around the tiny guest: it boots, but never runs sshd."""
    initrd = busybox_initramfs(tmp_path / "initrd.img", init_script)
    squashfs = tmp_path / "filesystem.squashfs"
    squashfs.write_bytes(b"")
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "key"])
    host_key = (tmp_path / "key.pub").read_text().strip()
    return Image(tmp_path, "tiny", stock_kernel(), initrd, squashfs, tmp_path / "key", host_key,
                 "SHA256:unused", "panic=-1", manifest={})


def test_ssh_phase_timeout_names_the_phase_and_keep_on_failure_keeps_the_guest(
        dirs: Dirs, no_leaks: None, tmp_path: Path) -> None:
    image = _image_of(tmp_path, f"echo {MARKER} > /dev/console; sleep 600")
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    with pytest.raises(TestbedError) as raised, start_testbed(config) as testbed, boot_vm(
            testbed, image, dirs.top / "out", VMConfig(memory_mib=512, boot="direct"),
            timeouts=BootTimeouts(ssh=20), keep_on_failure=True, accelerator=TCG):
        pytest.fail("the tiny guest has no sshd")
    message = raised.value.message
    assert message.startswith("boot phase SSH: port 22 of 192.168.100.2 did not open"), message
    assert MARKER in message  # the console's last lines
    state = dirs.state / config.name
    assert (state / "vm.json").exists() and (state / "keep").exists()
    assert proc.read_pidfile(state / "libvirtd.pid") is not None
    assert destroy_guest(config.name) == 0
    assert not state.exists()


def test_a_guest_that_stops_fails_its_phase_at_once(dirs: Dirs, no_leaks: None,
                                                    tmp_path: Path) -> None:
    image = _image_of(tmp_path, f"echo {MARKER} > /dev/console")
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    started = time.monotonic()
    with pytest.raises(TestbedError, match="boot phase SSH: the guest stopped after"), \
            start_testbed(config) as testbed, boot_vm(
            testbed, image, dirs.top / "out", VMConfig(memory_mib=512, boot="direct"),
            accelerator=TCG):
        pytest.fail("the tiny guest powers off")
    assert time.monotonic() - started < BootTimeouts.ssh
    assert not (dirs.state / config.name).exists()


def test_a_guest_whose_kernel_panics_reboots_once_then_fails_its_phase(
        dirs: Dirs, no_leaks: None, tmp_path: Path) -> None:
    # sysrq's crash: the panic a TCG guest now and then meets at boot, on purpose.
    image = _image_of(tmp_path, "echo c > /proc/sysrq-trigger; sleep 600")
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    with pytest.raises(TestbedError) as raised, start_testbed(config) as testbed, boot_vm(
            testbed, image, dirs.top / "out", VMConfig(memory_mib=512, boot="direct"),
            accelerator=TCG):
        pytest.fail("the tiny guest panics")
    message = raised.value.message
    assert message.startswith("boot phase SSH: the guest's kernel panicked 2 times in "), message
    console = (dirs.top / "out" / "console.log").read_text(errors="replace")
    # The first panic rebooted the guest (panic=-1 of its command line), the second ended it.
    assert console.count("Kernel panic - not syncing: sysrq triggered crash") >= 2, console[-3000:]
    assert not (dirs.state / config.name).exists()


def test_the_kernel_reboots_on_a_panic_unless_the_image_says_otherwise() -> None:
    assert with_serial_console("boot=live quiet") == "boot=live quiet " \
        "console=ttyS0,115200n8 panic=1"
    assert with_serial_console("boot=live panic=-1 console=ttyS0") == \
        "boot=live panic=-1 console=ttyS0"


def test_a_guest_without_a_lease_fails_in_the_dhcp_phase(dirs: Dirs, no_leaks: None,
                                                         tmp_path: Path) -> None:
    image = _image_of(tmp_path, "sleep 600")
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    with pytest.raises(TestbedError) as raised, start_testbed(config) as testbed:
        # dnsmasq leases the testbed's MAC; the domain gets another one.
        stranger = dataclasses.replace(testbed, guest_mac="52:54:00:de:ad:01")
        with boot_vm(stranger, image, dirs.top / "out", VMConfig(memory_mib=512),
                     timeouts=BootTimeouts(dhcp=30), accelerator=TCG):
            pytest.fail("a guest without a lease cannot boot")
    assert raised.value.exit_code == 16
    assert raised.value.message.startswith("boot phase DHCP"), raised.value.message
    assert not (dirs.state / config.name).exists()


SSH_WAIT_INTERRUPTED = """
import sys
sys.path[:0] = [{ci!r}, {top!r}]
from pathlib import Path
from tempest_live_ci.log import setup_logging
from tempest_live_ci.testbed.config import TestbedConfig
from tempest_live_ci.testbed.lifecycle import start_testbed
from tempest_live_ci.vm.boot import boot_vm
from tempest_live_ci.vm.config import VMConfig
from tests.integration.vm.test_tiny_guest import TCG, _image_of
setup_logging()
image = _image_of(Path({tmp!r}), "sleep 600")
try:
    with start_testbed(TestbedConfig(name={run_id!r}, apt_proxy=False)) as testbed:
        with boot_vm(testbed, image, Path({out!r}), VMConfig(memory_mib=512), accelerator=TCG):
            pass
except KeyboardInterrupt:
    sys.exit(130)
"""


def test_sigint_during_the_ssh_wait_leaves_nothing(dirs: Dirs, no_leaks: None,
                                                   tmp_path: Path) -> None:
    run_id = new_run_id()
    script = SSH_WAIT_INTERRUPTED.format(ci=str(TOP / "ci"), top=str(TOP), tmp=str(tmp_path),
                                         run_id=run_id, out=str(dirs.top / "out"))
    stderr = tmp_path / "stderr"
    with open(stderr, "wb") as err:
        process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                                   stderr=err, env={**os.environ, **dirs.env()})
        try:
            deadline = time.monotonic() + 180
            # The kernel and initrd are fetched: the harness now waits for SSH.
            while "initrd fetched" not in stderr.read_text():
                assert process.poll() is None, stderr.read_text()
                assert time.monotonic() < deadline, stderr.read_text()
                time.sleep(0.2)
            time.sleep(2)
            process.send_signal(signal.SIGINT)
            assert process.wait(60) == 130, stderr.read_text()
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert not (dirs.state / run_id).exists()
    assert run_id not in proc.run(["ip", "netns", "list"], capture=True).stdout
