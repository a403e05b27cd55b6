"""Boot the guest on a testbed and reach it over SSH.

    with boot_vm(testbed, image, output_dir, VMConfig()) as vm:
        vm.ssh.run("cat /proc/cmdline", timeout=30)

Stages, undone in reverse order on success, error, Ctrl-C and SIGTERM:
accelerator (KVM if it really works, else TCG) → libvirt (system or private
daemon in the run's namespace) → transient domain → boot progress → phases
with their own timeouts (DHCP, kernel, SSH) → SSH login with the pinned key.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from tempest_live_ci import proc, registry
from tempest_live_ci.errors import TestbedError
from tempest_live_ci.files import create as create_file
from tempest_live_ci.guest.ssh import GuestSSH, SSHTarget, wait_for_ssh
from tempest_live_ci.image.model import Image
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import log, step
from tempest_live_ci.testbed.lifecycle import keep_testbed
from tempest_live_ci.testbed.lock import GuestState
from tempest_live_ci.testbed.model import Testbed
from tempest_live_ci.vm import domain as vmdomain
from tempest_live_ci.vm import kvm
from tempest_live_ci.vm.bootfiles import IMAGE_DIR, boot_cmdline, publish_boot_files
from tempest_live_ci.vm.config import BootTimeouts, VMConfig
from tempest_live_ci.vm.domain import DomainSpec, Keep
from tempest_live_ci.vm.libvirtd import LibvirtDaemon, libvirt_for_run, open_connection
from tempest_live_ci.vm.progress import BootProgress, console_tail

if TYPE_CHECKING:
    import libvirt
else:
    libvirt = lazy_module("libvirt")

STATE_FILE = "vm.json"
# The guest's serial console: also where the kernel's messages go.
CONSOLE = "console=ttyS0,115200n8"
# Reboot 1 s after a panic (libvirt restarts the domain: on_reboot).
PANIC_REBOOT = "panic=1"
DEFAULT_TIMEOUTS = BootTimeouts()


@dataclass(frozen=True)
class BootFiles:
    """What the guest boots: an image's files, or a tiny test guest's."""

    vmlinuz: Path
    initrd: Path
    squashfs: Path | None
    cmdline: str  # without fetch= (added for the testbed) and without console=

    @classmethod
    def of_image(cls, image: Image) -> BootFiles:
        return cls(image.vmlinuz, image.initrd, image.squashfs, image.kernel_cmdline)


@dataclass
class VM:
    testbed: Testbed
    name: str
    uri: str
    domain: libvirt.virDomain
    accelerator: kvm.Accelerator
    console_log: Path
    output_dir: Path
    boot: str
    progress: BootProgress
    ssh: GuestSSH | None = None
    timings: dict[str, float] = field(default_factory=dict)

    def running(self) -> bool:
        return vmdomain.is_running(self.domain)


@dataclass(frozen=True)
class VMState:
    """What `vm ssh` and `vm destroy` need of a guest left running, in STATE_FILE."""

    run_id: str
    uri: str
    domain: str
    address: str
    netns: str | None
    private_key: str
    host_key: str
    output_dir: str
    private_libvirtd: bool
    # Who wrote it (proc.identity): a record whose writer is gone and that is not
    # kept is what a killed run left (testbed/lock.py: guest_record; cleanup.py).
    owner: str = ""

    def write(self, state_dir: Path) -> Path:
        path = state_dir / STATE_FILE
        # Recorded first, kept with the testbed's `keep` (testbed/lock.py: guest_record).
        kept = (state_dir / "keep").exists()
        recorded = registry.named(GuestState, state_dir.name)
        if not recorded:
            registry.add(GuestState(name=state_dir.name, path=str(path), run_id=self.run_id),
                         kept=kept)
        for entry in recorded:
            if kept and not entry.kept:
                registry.keep(entry)
        data = {**asdict(self), "owner": self.owner or proc.identity()}
        path.write_text(json.dumps(data, indent=1) + "\n")
        return path

    @classmethod
    def read(cls, state_dir: Path) -> VMState:
        return cls(**json.loads((state_dir / STATE_FILE).read_text()))


def with_serial_console(cmdline: str) -> str:
    """The console.log of a run is the serial port: make sure the kernel writes there.

    And a kernel that panics reboots at once (unless the image says otherwise),
    into another network boot: under TCG with several vCPUs a guest kernel
    now and then oopses while it patches its own code at boot (int3 in
    text_poke), and would sit in its panic until the boot phase timed out.
    A second panic fails the phase at once (_guest_alive).
    """
    args = cmdline.split()
    if not any(arg.split(",")[0] == "console=ttyS0" for arg in args):
        args.append(CONSOLE)
    if not any(arg.startswith("panic=") for arg in args):
        args.append(PANIC_REBOOT)
    return " ".join(args)


def _phase_failed(vm: VM, phase: str, why: str) -> TestbedError:
    tail = console_tail(vm.console_log, 5)
    shown = " | ".join(line.strip()[:120] for line in tail) if tail else "(console empty)"
    for line in console_tail(vm.console_log, 20):
        log.info("console: %s", line)
    return TestbedError(f"boot phase {phase}: {why}; console.log ends: {shown}",
                        hint=f"full console: {vm.console_log}")


def _guest_alive(vm: VM, phase: str) -> None:
    if not vm.running():
        raise _phase_failed(vm, phase, f"the guest stopped after {vm.progress.elapsed():.0f}s")
    if vm.progress.panics >= 2:
        raise _phase_failed(vm, phase, f"the guest's kernel panicked {vm.progress.panics} times "
                            f"in {vm.progress.elapsed():.0f}s")


def wait_for_phase(vm: VM, phase: str, events: tuple[str, ...], timeout: float) -> None:
    remaining = timeout - vm.progress.elapsed()
    if not vm.progress.wait_for(events, remaining, check=lambda: _guest_alive(vm, phase)):
        missing = [e for e in events if e not in vm.progress.times]
        raise _phase_failed(vm, phase, f"no {', '.join(missing)} within {timeout:.0f}s")


@contextlib.contextmanager
def start_vm(testbed: Testbed, files: BootFiles, output_dir: Path, config: VMConfig, *,
             keep: Keep | None = None, accelerator: kvm.Accelerator | None = None,
             debug: bool = False) -> Iterator[VM]:
    """Start the guest (not waiting for anything) with boot progress reported as it comes."""
    keep = keep or Keep()
    output_dir.mkdir(parents=True, exist_ok=True)
    # libvirtd (root) appends the guest's console to this path: a link or a
    # FIFO someone left in the directory is replaced, never written through
    # (so is domain.xml).
    console_log = output_dir / "console.log"
    create_file(console_log).close()
    if accelerator is None:
        with step("Checking KVM"):
            accelerator = kvm.detect_accelerator(files.vmlinuz)
    if accelerator.usable:
        log.info("accelerator: kvm (%s)", accelerator.reason)
    else:
        log.warning("accelerator: tcg, the guest will be slow (%s)", accelerator.reason)
    publish_boot_files(testbed, vmlinuz=files.vmlinuz, initrd=files.initrd,
                       squashfs=files.squashfs, cmdline=with_serial_console(files.cmdline))
    published = testbed.http_root / IMAGE_DIR
    spec = DomainSpec(
        name=vmdomain.domain_name(testbed.run_id),
        run_id=testbed.run_id,
        state_dir=testbed.state_dir,
        domain_type=accelerator.domain_type,
        memory_mib=vmdomain.guest_memory_mib(config.memory_mib),
        vcpus=config.vcpus,
        tap=testbed.tap,
        mac=testbed.guest_mac,
        nic_model=config.nic_model,
        boot=config.boot,
        console_log=console_log,
        # Direct boot: the same files the network boot fetches, the same fetch=.
        kernel=published / "vmlinuz",
        initrd=published / "initrd.img",
        cmdline=boot_cmdline(testbed, with_serial_console(files.cmdline),
                             files.squashfs is not None),
    )
    xml = vmdomain.render_domain_xml(spec)
    with create_file(output_dir / "domain.xml") as out:
        out.write(xml.encode())
    with contextlib.ExitStack() as stack:
        daemon: LibvirtDaemon = stack.enter_context(
            libvirt_for_run(testbed.state_dir, testbed.netns, debug=debug, keep=keep))
        conn = open_connection(daemon.uri)
        stack.callback(conn.close)
        progress = BootProgress(testbed.guest_mac, testbed.dnsmasq_log, testbed.http_log,
                                console_log)
        with step(f"Starting {spec.domain_type} domain {spec.name} ({config.boot} boot, "
                  f"{spec.memory_mib} MiB, {spec.vcpus} vCPUs)"):
            dom = stack.enter_context(vmdomain.start_domain(conn, xml, keep=keep))
        progress.start = time.monotonic()
        stack.enter_context(progress)
        yield VM(testbed, spec.name, daemon.uri, dom, accelerator, console_log, output_dir,
                 config.boot, progress, timings=progress.times)
        if not keep.keep:
            log.debug("tearing down domain %s", spec.name)


@contextlib.contextmanager
def boot_vm(testbed: Testbed, image: Image, output_dir: Path, config: VMConfig, *,
            timeouts: BootTimeouts = DEFAULT_TIMEOUTS, keep: Keep | None = None,
            keep_on_failure: bool = False, accelerator: kvm.Accelerator | None = None,
            debug: bool = False) -> Iterator[VM]:
    """Boot `image` on `testbed`, wait for SSH, log in; torn down when the block ends.

    keep_on_failure leaves the guest running when the block fails and says how
    to reach and destroy it.
    """
    keep = keep or Keep()
    with contextlib.ExitStack() as stack:
        # The guest's record goes with the guest: on a persistent testbed, a
        # record left behind would say a guest is kept there (testbed/lock.py).
        stack.callback(_forget_unless_kept, testbed, keep)
        vm = stack.enter_context(start_vm(testbed, BootFiles.of_image(image), output_dir, config,
                                          keep=keep, accelerator=accelerator, debug=debug))
        try:
            with step("Booting the guest"):
                if config.boot == "network":
                    wait_for_phase(vm, "DHCP", ("dhcp",), timeouts.dhcp)
                    wait_for_phase(vm, "kernel", ("kernel", "initrd"), timeouts.kernel)
                wait_for_guest_ssh(vm, timeouts.ssh)
            target = SSHTarget(str(testbed.guest_address), image.host_key, image.ssh_private_key,
                               netns=testbed.netns)
            with step("Logging in over SSH"):
                try:
                    vm.ssh = GuestSSH(target)
                    vm.ssh.connect()
                except TestbedError as e:
                    raise _phase_failed(vm, "SSH login", e.message) from e
            vm.progress.mark("login", f"logged in as root@{testbed.guest_address}")
            record_state(vm, image, daemon_private=_is_private(vm.uri))
            try:
                yield vm
            finally:
                vm.ssh.close()
        except Exception:
            # A failure, not Ctrl-C or SIGTERM: those always tear down.
            if keep_on_failure:
                keep.keep = True
                keep_testbed(testbed)
                record_state(vm, image, daemon_private=_is_private(vm.uri))
                log.info("the guest is kept running: tempest-live-ci vm ssh --run-id %s; "
                         "remove it with: tempest-live-ci vm destroy --run-id %s",
                         testbed.run_id, testbed.run_id)
            raise


def _forget_unless_kept(testbed: Testbed, keep: Keep) -> None:
    if not keep.keep:
        (testbed.state_dir / STATE_FILE).unlink(missing_ok=True)
        registry.forget(GuestState, testbed.state_dir.name)


def wait_for_guest_ssh(vm: VM, timeout: float) -> None:
    testbed = vm.testbed
    remaining = timeout - vm.progress.elapsed()

    def alive() -> None:
        _guest_alive(vm, "SSH")

    try:
        wait_for_ssh(str(testbed.guest_address), max(remaining, 1), netns=testbed.netns,
                     while_waiting=alive)
    except TestbedError as e:
        if "did not open" in e.message:
            raise _phase_failed(vm, "SSH", f"port 22 of {testbed.guest_address} did not open "
                                f"within {timeout:.0f}s") from e
        raise
    vm.progress.mark("ssh", f"SSH port of {testbed.guest_address} open")


def _is_private(uri: str) -> bool:
    return "socket=" in uri


def record_state(vm: VM, image: Image, *, daemon_private: bool) -> Path:
    return VMState(
        run_id=vm.testbed.run_id, uri=vm.uri, domain=vm.name,
        address=str(vm.testbed.guest_address), netns=vm.testbed.netns,
        private_key=str(image.ssh_private_key), host_key=image.host_key,
        output_dir=str(vm.output_dir), private_libvirtd=daemon_private,
    ).write(vm.testbed.state_dir)
