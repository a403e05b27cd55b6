"""The `libvirt` backend: the job's image booted from the network on a testbed of its own.

    archive  the versions the archive offers (a package it lacks ends the run, exit 20)
    image    build_image(): a cached image when its inputs did not change
    testbed  start_testbed(): isolated namespace, or the persistent testbed (locked,
             its settings checked against the job's), the job's extra archives
    vm       boot_vm(): libvirt domain, network boot, SSH with the image's pinned host key

The guest's memory is promised to the run before the image (vm/reservation.py):
minutes of build for a run that cannot start would be a waste. Everything
is undone in reverse order when the block ends; the testbed's logs are
copied to the output directory first.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

from tempest_live_ci import registry
from tempest_live_ci.archives import EXTRA_PORT, extra_archives, job_sources
from tempest_live_ci.errors import TestbedError, UsageError, shown
from tempest_live_ci.image.livebuild import build_image, look_up_archive
from tempest_live_ci.job import Job, image_options, plan_lines, testbed_config
from tempest_live_ci.log import log
from tempest_live_ci.machine import GuestNetwork, Machine, MachineOptions, Opening
from tempest_live_ci.machine.ssh import SSHMachine
from tempest_live_ci.testbed.aptproxy import forward_into_netns, start_apt_cacher_ng
from tempest_live_ci.testbed.config import PERSISTENT, TestbedConfig
from tempest_live_ci.testbed.http import Served
from tempest_live_ci.testbed.journal import Journal
from tempest_live_ci.testbed.lifecycle import start_testbed
from tempest_live_ci.testbed.lock import testbed_lock
from tempest_live_ci.testbed.model import Testbed
from tempest_live_ci.testbed.persistent import persistent_testbed
from tempest_live_ci.vm.boot import VM, boot_vm
from tempest_live_ci.vm.config import BootTimeouts, VMConfig
from tempest_live_ci.vm.reservation import admit_guest

# Under the testbed's HTTP root: what serve() publishes, one directory per run
# (a persistent testbed's server outlives runs).
SERVED = "runs"
TESTBED_LOGS = ("dnsmasq.log", "http.log", "dnsmasq.conf", "nftables.conf")


def guest_network(job: Job, testbed: Testbed) -> GuestNetwork:
    """The guest as the testbed places it: its archive through the apt proxy (or NAT), the
    testbed's own servers reached directly, the extra archives on the proxy's EXTRA_PORT."""
    proxied = job.testbed.apt_proxy
    return GuestNetwork(
        address=str(testbed.guest_address),
        apt_proxy=testbed.apt_proxy if proxied else None,
        direct=(str(testbed.host_address),) if proxied else (),
        extra_proxy=f"http://{testbed.host_address}:{EXTRA_PORT}" if proxied else None)


class LibvirtMachine(SSHMachine):
    """The booted guest: SSH for commands and files, the testbed's HTTP server for serve()."""

    def __init__(self, vm: VM, testbed: Testbed, network: GuestNetwork,
                 capabilities: frozenset[str]) -> None:
        if vm.ssh is None:
            raise TestbedError("the guest was booted without an SSH session")
        super().__init__(vm.ssh, network, capabilities, alive=self._running)
        self.vm = vm
        self.testbed = testbed

    def _running(self) -> None:
        if not self.vm.running():
            raise TestbedError("the guest stopped (its domain is no longer running)")

    def serve(self, local: Path, name: str) -> str:
        return serve_over_http(self.testbed, local, name)

    def close(self) -> None:
        # The SSH session is boot_vm's to close, after the guest's logs; what was
        # served goes with its record (open's registry.holding).
        pass


def testbed_served(testbed: Testbed) -> Path:
    """Where the run's served files are under the testbed's HTTP root."""
    return testbed.http_root / SERVED / testbed.run_id


def serve_over_http(testbed: Testbed, local: Path, name: str) -> str:
    """`local` (a file, or a directory's regular files) copied under the testbed's HTTP
    root, readable by its server (root) alone, since a job's image may be private; its URL.
    """
    name = name.strip("/")
    destination = testbed_served(testbed) / name
    url = f"{testbed.http_url}/{SERVED}/{testbed.run_id}/{name}"
    if not local.is_dir():
        _copy_private(local, destination)
        return url
    for root, _dirs, names in os.walk(local):
        for entry in names:
            path = Path(root, entry)
            if not path.is_symlink() and path.is_file():
                _copy_private(path, destination / path.relative_to(local))
    return url + "/"


def _copy_private(source: Path, destination: Path) -> None:
    for parent in reversed(destination.parents):
        if not parent.exists():
            parent.mkdir(mode=0o700)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    with source.open("rb") as f, os.fdopen(os.open(destination, flags, 0o600), "wb") as out:
        shutil.copyfileobj(f, out, 1024 * 1024)


def collect_testbed_logs(state_dir: Path, output_dir: Path) -> None:
    for name in TESTBED_LOGS:
        source = state_dir / name
        if source.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(source, output_dir / name)


def start_extra_archives(job: Job, stack: contextlib.ExitStack, testbed: Testbed,
                         facts: dict[str, object]) -> None:
    """Through the apt proxy: the job's repositories outside Debian's archive, each under a
    prefix of its own on the testbed's EXTRA_PORT (archives.py), and nothing else there."""
    if not job.testbed.apt_proxy:
        return
    archives = extra_archives([line for lines in job_sources(
        job.guest.sources_list, job.guest.candidate_sources, apt_proxy=True) for line in lines])
    if not archives:
        return
    for archive in archives:
        log.info("extra archive %s: /%s/ on the apt proxy", archive.backend, archive.name)

    def kept() -> Journal | None:
        """A kept guest keeps its extra archives too, like the testbed's own apt proxy."""
        return Journal(testbed.state_dir) if (testbed.state_dir / "keep").exists() else None

    proxy = stack.enter_context(start_apt_cacher_ng(archives, kept=kept))
    stack.enter_context(forward_into_netns(proxy, testbed.netns, str(testbed.host_address),
                                           EXTRA_PORT, kept=kept))
    facts["extra_archives"] = {archive.name: archive.backend for archive in archives}


def job_testbed_words(job: Job, wanted: TestbedConfig) -> dict[str, object]:
    """The job's testbed.* as its file says them (the defaults named), for the refusal."""
    t = job.testbed
    return {"host_address": t.host_address, "host_ipv6": t.host_ipv6,
            "guest_address": t.guest_address or f"{wanted.guest_ip} (the default)",
            "guest_mac": t.guest_mac, "apt_proxy": t.apt_proxy, "nat": t.nat}


def persistent_for(job: Job, run_id: str) -> Testbed:
    wanted = testbed_config(job, "tlc-check")
    return persistent_testbed(job.source, wanted, job_testbed_words(job, wanted), run_id)


class LibvirtBackend:
    name = "libvirt"

    def check(self, job: Job) -> None:
        image_options(job)

    def plan(self, job: Job) -> list[str]:
        return plan_lines(job, ("testbed", "image", "vm"))

    @contextlib.contextmanager
    def open(self, job: Job, opening: Opening) -> Iterator[Machine]:
        run_id, facts, stage = opening.run_id, opening.facts, opening.stage
        persistent = persistent_for(job, run_id) if job.testbed.mode == PERSISTENT else None
        with contextlib.ExitStack() as stack:
            if persistent is not None:
                # One run at a time on it, from before the image to the end (testbed/lock.py).
                stack.enter_context(testbed_lock(persistent.name, f"run {run_id}",
                                                 wait=opening.testbed_wait))
                # It may have changed while this run waited for it.
                persistent = persistent_for(job, run_id)
            stack.enter_context(admit_guest(run_id, job.vm.memory_mib,
                                            what=f"{job.source}: vm.memory: {job.vm.memory}"))
            # The archive is read before the image and the testbed: a package it
            # lacks, or a Release past its Valid-Until the job did not accept,
            # ends the run here (exit 20, its summary the only trace).
            options = image_options(job)
            with stage("archive", "Reading the archive"):
                archive = look_up_archive(options)
            with stage("image", "Preparing the image"):
                image = build_image(options, archive)
                facts["image"] = {"directory": str(image.directory), "hash": image.hash,
                                  "host_key_fingerprint": image.host_key_fingerprint,
                                  "preinstalled_profile": image.manifest["inputs"].get("profile"),
                                  "sizes": {name: a["size"] for name, a
                                            in image.manifest["artifacts"].items()}}
            with stage("testbed", "Setting up the testbed"):
                testbed = persistent if persistent is not None else stack.enter_context(
                    start_testbed(testbed_config(job, run_id)))
                start_extra_archives(job, stack, testbed, facts)
                # What the run serves, recorded before it exists: a persistent testbed's
                # server outlives the run, and would serve it to every later one.
                stack.enter_context(registry.holding(Served(
                    name=run_id, path=str(testbed_served(testbed)),
                    what="files served to the guest")))
                urls = {name: serve_over_http(testbed, path, name)
                        for name, path in opening.serve.items()}
            stack.callback(collect_testbed_logs, testbed.state_dir, opening.output_dir)
            with stage("vm", "Booting the guest"):
                vm = stack.enter_context(boot_vm(
                    testbed, image, opening.output_dir,
                    VMConfig(memory_mib=job.vm.memory_mib, vcpus=job.vm.vcpus or VMConfig.vcpus,
                             boot=job.vm.boot, nic_model=job.vm.nic_model),
                    timeouts=BootTimeouts(dhcp=job.vm.dhcp_timeout, kernel=job.vm.kernel_timeout,
                                          ssh=job.vm.ssh_timeout),
                    keep_on_failure=opening.keep_on_failure, debug=opening.debug))
                facts["boot"] = dict(vm.timings)
                facts["accelerator"] = "kvm" if vm.accelerator.usable else "tcg"
            machine = LibvirtMachine(vm, testbed, guest_network(job, testbed), frozenset(
                {"root", "serves-files", *(("kvm",) if vm.accelerator.usable else ())}))
            machine.urls = urls
            stack.callback(machine.close)
            yield machine


def parse(rest: str, options: MachineOptions) -> LibvirtBackend:
    """--machine libvirt: the job's own testbed.* and vm.* say everything."""
    if rest:
        raise UsageError(f"--machine libvirt:{shown(rest)}: libvirt takes no address (the job's "
                         "testbed.* and vm.* say where and how it boots)")
    for flag, value in (("--ssh-key", options.ssh_key), ("--host-key", options.host_key),
                        ("--ssh-netns", options.netns)):
        if value is not None:
            raise UsageError(f"{flag}: only with --machine ssh:USER@HOST:PORT")
    return LibvirtBackend()
