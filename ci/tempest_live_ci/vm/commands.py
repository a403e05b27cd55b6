"""`tempest-live-ci vm boot|ssh|destroy`: a guest to look at by hand, outside a job."""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tempest_live_ci import paths, proc, registry
from tempest_live_ci.errors import TestbedError, UsageError, shown
from tempest_live_ci.guest.ssh import known_hosts_line
from tempest_live_ci.image.cache import resolve_image
from tempest_live_ci.image.model import images_dir
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import log, step
from tempest_live_ci.options import Renamed
from tempest_live_ci.testbed.config import TestbedConfig, check_name, new_run_id
from tempest_live_ci.testbed.lifecycle import keep_testbed, start_testbed, teardown_testbed
from tempest_live_ci.testbed.lock import GuestState
from tempest_live_ci.vm.boot import STATE_FILE, BootFiles, VMState, boot_vm, start_vm, wait_for_phase
from tempest_live_ci.vm.bootfiles import check_cmdline
from tempest_live_ci.vm.config import (
    BOOT_MODES,
    DEFAULT_MEMORY_MIB,
    NIC_MODELS,
    BootTimeouts,
    VMConfig,
)
from tempest_live_ci.vm.domain import DomainRecord, Keep, destroy_domain
from tempest_live_ci.vm.libvirtd import PrivateLibvirtd, open_connection, stop_private_libvirtd

# libvirt and paramiko are imported when a command uses them (lazy.py):
# `--help` and shell completion load neither.
if TYPE_CHECKING:
    import libvirt
else:
    libvirt = lazy_module("libvirt")


@click.group()
def vm() -> None:
    """Boot the live image in a VM, reach it over SSH, destroy it."""


@vm.command()
@click.option("--run-id", default=None, help="Name of the run (netns, state). [default: random]")
@click.option("--image", "image_ref", default="latest", show_default=True,
              help="Image hash (or prefix) in the image store, or 'latest'.")
@click.option("--kernel", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Boot this kernel instead of an image (with --initrd); "
                   "wait until it powers off.")
@click.option("--initrd", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--cmdline", default="", help="Kernel command line with --kernel.")
@click.option("--boot", "boot_mode", type=click.Choice(BOOT_MODES), default=VMConfig.boot,
              show_default=True, help="iPXE over HTTP, or kernel and initrd given to libvirt.")
@click.option("--nic-model", type=click.Choice(NIC_MODELS), default=VMConfig.nic_model,
              show_default=True, help="The guest's NIC.")
@click.option("--memory", type=int, default=None,
              help=f"MiB [default: {DEFAULT_MEMORY_MIB}, capped by free RAM]")
@click.option("--vcpus", type=int, default=VMConfig.vcpus, show_default=True)
@click.option("--output", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory: console.log and domain.xml. [default: the run's state dir]")
@click.option("--ssh-timeout", "--timeout-ssh", "ssh_timeout", cls=Renamed, type=float,
              default=BootTimeouts.ssh, show_default=True,
              help="Seconds from the start of the guest until its sshd answers (a job's "
                   "vm.ssh_timeout).")
@click.pass_context
def boot(ctx: click.Context, run_id: str | None, image_ref: str, kernel: Path | None,
         initrd: Path | None, cmdline: str, boot_mode: str, nic_model: str, memory: int | None,
         vcpus: int, output: Path | None, ssh_timeout: float) -> int:
    """Boot a guest on a fresh isolated testbed, wait for SSH and leave it running."""
    if run_id is not None:
        check_name("--run-id", run_id, "run id")
    check_cmdline(cmdline, "--cmdline")
    if (kernel is None) != (initrd is None):
        raise UsageError("--kernel and --initrd go together")
    config = VMConfig(memory_mib=memory, vcpus=vcpus, nic_model=nic_model, boot=boot_mode)
    debug = bool(ctx.obj and ctx.obj.get("debug"))
    if kernel is not None and initrd is not None:
        return boot_kernel(BootFiles(kernel, initrd, None, cmdline), config, run_id=run_id,
                           output=output, debug=debug)
    return boot_image(image_ref, config, run_id=run_id, output=output,
                      timeouts=BootTimeouts(ssh=ssh_timeout), debug=debug)


def _testbed_config(run_id: str | None, *, apt_proxy: bool) -> TestbedConfig:
    return TestbedConfig(name=run_id or new_run_id(), apt_proxy=apt_proxy)


def boot_image(image_ref: str, config: VMConfig, *, run_id: str | None, output: Path | None,
               timeouts: BootTimeouts, debug: bool = False) -> int:
    """Boot an image from the store on a new isolated testbed; leave it running. Returns 0."""
    image = resolve_image(images_dir(), image_ref)
    testbed_config = _testbed_config(run_id, apt_proxy=True)
    keep = Keep()
    with start_testbed(testbed_config) as testbed:
        out = output or testbed.state_dir / "output"
        with boot_vm(testbed, image, out, config, timeouts=timeouts, keep=keep,
                     keep_on_failure=False, debug=debug) as guest:
            keep.keep = True
            keep_testbed(testbed)
            name = testbed.run_id
            log.info("guest %s is up at root@%s (%s boot, %s); console: %s", guest.name,
                     testbed.guest_address, config.boot, guest.accelerator.kind,
                     guest.console_log)
            log.info("reach it: tempest-live-ci vm ssh --run-id %s", name)
            log.info("remove it: tempest-live-ci vm destroy --run-id %s", name)
            print(name)
    return 0


def boot_kernel(files: BootFiles, config: VMConfig, *, run_id: str | None, output: Path | None,
                timeout: float = 600, debug: bool = False) -> int:
    """Boot a bare kernel + initrd on a new isolated testbed and wait until it powers off.

    A smoke test of the testbed and of libvirt; everything is removed at the end.
    """
    testbed_config = _testbed_config(run_id, apt_proxy=False)
    with start_testbed(testbed_config) as testbed:
        out = output or testbed.state_dir / "output"
        with start_vm(testbed, files, out, config, debug=debug) as guest, \
                step("Booting the guest"):
            if config.boot == "network":
                wait_for_phase(guest, "DHCP", ("dhcp",), BootTimeouts.dhcp)
                wait_for_phase(guest, "kernel", ("kernel", "initrd"), BootTimeouts.kernel)
            if not proc.wait_until(lambda: not guest.running(), timeout, interval=0.5):
                raise TestbedError(f"the guest did not power off within {timeout:.0f}s",
                                   hint=f"console: {guest.console_log}")
            log.info("the guest powered off after %.1fs; console: %s",
                     guest.progress.elapsed(), guest.console_log)
    return 0


def _find_run(run_id: str | None) -> Path:
    """The state directory holding the guest of run `run_id` (or the only guest there is).

    A guest of an isolated run lives in its run's directory; a guest booted
    on a persistent testbed in the testbed's directory, under its own run id.
    """
    root = paths.state_dir()
    if run_id is not None:
        check_name("--run-id", run_id, "run id")
        directory = root / run_id
        if (directory / STATE_FILE).exists():
            return directory
        for state in sorted(root.glob(f"*/{STATE_FILE}")):
            with contextlib.suppress(OSError, ValueError):
                if json.loads(state.read_text()).get("run_id") == run_id:
                    return state.parent
        raise UsageError(f"--run-id {shown(run_id)}: no guest recorded in {directory / STATE_FILE}")
    found = sorted(p.parent for p in root.glob(f"*/{STATE_FILE}"))
    if len(found) != 1:
        names = ", ".join(p.name for p in found)
        raise UsageError("no guest is running" if not found
                         else f"{len(found)} guests are running: give --run-id ({names})")
    return found[0]


@vm.command()
@click.option("--run-id", "--run", "run_id", cls=Renamed, default=None,
              help="The run whose guest to reach.")
@click.argument("command", nargs=-1)
def ssh(run_id: str | None, command: tuple[str, ...]) -> int:
    """Open a shell in the guest, or run COMMAND (after --)."""
    return ssh_to_guest(run_id, list(command))


def ssh_to_guest(run_id: str | None, command: list[str]) -> int:
    """Run the system ssh client against the recorded guest, host key pinned. Returns its status."""
    directory = _find_run(run_id)
    state = VMState.read(directory)
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(known_hosts_line(state.address, state.host_key))
    argv = ["ssh", "-i", state.private_key, "-o", f"UserKnownHostsFile={known_hosts}",
            "-o", "StrictHostKeyChecking=yes", "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "IdentitiesOnly=yes"]
    if command:
        argv.append("-T")
    elif sys.stdin.isatty():
        argv.append("-t")
    argv += [f"root@{state.address}", *command]
    return proc.run(argv, netns=state.netns, check=False).returncode


@vm.command()
@click.option("--run-id", "--run", "run_id", cls=Renamed, default=None,
              help="The run whose guest to destroy.")
def destroy(run_id: str | None) -> int:
    """Destroy the guest left by `vm boot` and its testbed."""
    return destroy_guest(run_id)


def _owns_its_testbed(directory: Path, run_id: str) -> bool:
    """Was the testbed in `directory` made for run `run_id` alone (isolated, same name)?

    A persistent testbed (`host setup`) outlives the runs booted on it.
    """
    try:
        mode = json.loads((directory / "testbed.json").read_text()).get("mode")
    except (OSError, ValueError):
        mode = None
    return directory.name == run_id and mode != "persistent"


def destroy_guest(run_id: str | None) -> int:
    """Destroy the recorded guest, stop its private libvirtd and remove its testbed,
    unless that testbed is a persistent one the guest only used. Returns 0."""

    directory = _find_run(run_id)
    state = VMState.read(directory)
    with step(f"Destroying guest {state.domain}"):
        with contextlib.suppress(TestbedError):
            conn = open_connection(state.uri)
            try:
                destroy_domain(conn.lookupByName(state.domain))
            except libvirt.libvirtError:
                log.info("domain %s was already gone", state.domain)
            finally:
                conn.close()
        if state.private_libvirtd:
            stop_private_libvirtd(directory)
        (directory / STATE_FILE).unlink(missing_ok=True)
        registry.forget(DomainRecord, state.domain)
        registry.forget(PrivateLibvirtd, directory.name)
        registry.forget(GuestState, directory.name)
        if _owns_its_testbed(directory, state.run_id):
            teardown_testbed(directory.name, quiet=True)
        else:
            # The run kept it with the guest; the testbed itself stays up.
            (directory / "keep").unlink(missing_ok=True)
            log.info("testbed %s is persistent: left up (host teardown removes it)",
                     directory.name)
    return 0
