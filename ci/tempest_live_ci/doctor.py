"""`tempest-live-ci doctor`: can this host run a job? One line per check."""

from __future__ import annotations

import importlib.util
import json
import os
import pwd
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from tempest_live_ci import paths, proc
from tempest_live_ci.errors import ExitCode, TLCError
from tempest_live_ci.testbed import links
from tempest_live_ci.testbed.dnsmasq import IPXE_DIR, TFTP_FILES
from tempest_live_ci.vm import tinyguest
from tempest_live_ci.vm.kvm import DEV_KVM, detect_accelerator
from tempest_live_ci.vm.nested import nested_kvm_status

OK, WARN, FAIL = "ok", "warn", "FAIL"

# Binaries a run needs, and what each is for.
BINARIES = {
    "ip": "links and namespaces",
    "dnsmasq": "DHCP and TFTP for network boot",
    "qemu-system-x86_64": "the guest",
    "libvirtd": "the guest's domain",
    "virtlogd": "libvirt's console logging",
    "socat": "the apt proxy inside namespaces",
    "nft": "NAT (persistent testbeds)",
    "apt-cacher-ng": "the apt proxy",
    "lb": "building the live image",
    "debootstrap": "building the live image",
    "mksquashfs": "building the live image",
    "ssh-keygen": "the image's SSH keys",
    "cpio": "the KVM probe's initramfs",
}
OPTIONAL = {"nft"}
MODULES = ("click", "jinja2", "yaml", "paramiko", "libvirt", "subunit", "testtools")
MIN_RAM_GIB = 4.0
GOOD_RAM_GIB = 8.0
MIN_DISK_GIB = 5.0
# A GitLab runner's shell executor runs jobs as this user, which gitlab/run-job takes to
# root through `sudo -n` and the drop-in host-setup/gitlab-runner/sudoers.
RUNNER_USER = "gitlab-runner"
RUNNER_SUDOERS = ("install -m 0440 /usr/share/tempest-live-ci/host-setup/gitlab-runner/sudoers "
                  "/etc/sudoers.d/tempest-live-ci")


@dataclass(frozen=True)
class Check:
    name: str
    status: str
    detail: str


def _meminfo() -> dict[str, int]:
    values = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        key, rest = line.split(":", 1)
        values[key] = int(rest.split()[0]) * 1024
    return values


def _existing_parent(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def kvm_check(kernel: Path | None = None, *, recheck: bool = False,
              busybox: Path | None = None) -> Check:
    """Whether guests get KVM: ok, warn (TCG), or FAIL when the probe cannot even be made."""
    if not proc.which("qemu-system-x86_64"):
        return Check("kvm", FAIL, "qemu-system-x86_64 is missing")
    try:
        accel = detect_accelerator(kernel, recheck=recheck,
                                   busybox=busybox or tinyguest.BUSYBOX)
    except TLCError as e:
        return Check("kvm", FAIL, f"cannot probe KVM: {e.message}"
                     + (f" ({e.hint})" if e.hint else ""))
    if accel.usable:
        return Check("kvm", OK, f"usable: {accel.reason}")
    return Check("kvm", WARN, f"guests run under TCG (slow): {accel.reason}")


def busybox_check(busybox: Path | None = None) -> Check:
    """The static busybox the KVM probe puts in its initramfs (checked even if a verdict is cached)."""
    path = busybox or tinyguest.BUSYBOX
    try:
        tinyguest.static_busybox(path)
    except TLCError as e:
        # Without /dev/kvm there is nothing to probe: guests run under TCG anyway.
        return Check("busybox", FAIL if DEV_KVM.exists() else WARN,
                     f"{e.message} ({e.hint})" if e.hint else e.message)
    return Check("busybox", OK, f"{path} is statically linked")


def runner_check(user: str = RUNNER_USER, tool: str | None = None) -> Check | None:
    """Whether a GitLab runner's jobs, run as `user`, may run the tool (`tool`: the one
    on PATH) as root with `sudo -n` (None: no such user here, so no runner to check)."""
    try:
        pwd.getpwnam(user)
    except KeyError:
        return None
    name = "gitlab runner"
    sudo = proc.which("sudo")
    if sudo is None:
        return Check(name, WARN, f"user {user} exists, and its jobs need sudo: apt-get install sudo")
    tool = tool or proc.which("tempest-live-ci") or "/usr/bin/tempest-live-ci"
    if not Path(tool).is_file():
        return Check(name, WARN, f"user {user} exists, and its jobs run {tool} (gitlab/run-job), "
                                 "which is not installed")
    # `sudo -l -U USER COMMAND` says whether USER may run COMMAND, without running it.
    allowed = proc.run([sudo, "-n", "-l", "-U", user, tool], check=False, capture=True)
    if allowed.returncode == 0:
        return Check(name, OK, f"{user} may run {tool} as root (sudo -n)")
    return Check(name, WARN, f"{user}'s jobs may not run {tool} as root: {RUNNER_SUDOERS}")


def run_checks(kernel: Path | None = None, *, recheck_kvm: bool = False) -> list[Check]:
    checks: list[Check] = []
    root = os.geteuid() == 0
    checks.append(Check("root", OK if root else FAIL,
                        "running as root" if root else "runs need root (namespaces, links, daemons)"))
    for binary, purpose in BINARIES.items():
        found = proc.which(binary)
        if found:
            checks.append(Check(binary, OK, found))
        else:
            package = proc.PACKAGE_OF.get(binary, binary)
            checks.append(Check(binary, WARN if binary in OPTIONAL else FAIL,
                                f"missing ({purpose}): apt-get install {package}"))
    missing_modules = [m for m in MODULES if importlib.util.find_spec(m) is None]
    checks.append(Check("python modules", FAIL if missing_modules else OK,
                        f"missing: {', '.join(missing_modules)}" if missing_modules
                        else ", ".join(MODULES)))
    missing_ipxe = [f for f in TFTP_FILES if not (IPXE_DIR / f).exists()]
    checks.append(Check("ipxe", FAIL if missing_ipxe else OK,
                        f"missing {', '.join(missing_ipxe)}: apt-get install ipxe" if missing_ipxe
                        else f"{', '.join(TFTP_FILES)} in {IPXE_DIR}"))
    if root and proc.which("ip"):
        dummy = links.kernel_has_dummy()
        checks.append(Check("dummy NIC", OK, "the kernel has dummy devices" if dummy else
                            "no dummy device in this kernel: a veth pair stands in"))
    checks.append(busybox_check())
    checks.append(kvm_check(kernel, recheck=recheck_kvm))
    checks.append(Check("nested kvm", OK, nested_kvm_status()))
    memory = _meminfo()
    available = memory.get("MemAvailable", 0) / 2**30
    status = OK if available >= GOOD_RAM_GIB else WARN if available >= MIN_RAM_GIB else FAIL
    checks.append(Check("memory", status,
                        f"{available:.1f} GiB available of {memory.get('MemTotal', 0) / 2**30:.1f} "
                        f"(a guest needs {MIN_RAM_GIB:.0f}, OpenStack wants {GOOD_RAM_GIB:.0f}+)"))
    cache = _existing_parent(paths.cache_dir())
    free = shutil.disk_usage(cache).free / 2**30
    checks.append(Check("disk", OK if free >= MIN_DISK_GIB else FAIL,
                        f"{free:.0f} GiB free under {cache} (images need {MIN_DISK_GIB:.0f})"))
    runner = runner_check()
    if runner is not None:
        checks.append(runner)
    return checks


def doctor_exit_code(checks: list[Check]) -> ExitCode:
    return ExitCode.TESTBED if any(c.status == FAIL for c in checks) else ExitCode.OK


@click.command()
@click.option("--kernel", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Kernel to try KVM with (default: the host's, or one the tool caches).")
@click.option("--recheck-kvm", is_flag=True,
              help="Probe KVM again, ignoring (and replacing) the cached verdict.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable, on stdout.")
def doctor(kernel: Path | None, recheck_kvm: bool, as_json: bool) -> int:
    """Check that this host can run jobs (exit 0: it can; TCG counts, with a warning)."""
    checks = run_checks(kernel, recheck_kvm=recheck_kvm)
    code = doctor_exit_code(checks)
    if as_json:
        click.echo(json.dumps({"checks": [asdict(c) for c in checks], "exit_code": int(code)},
                              indent=1))
    else:
        width = max(len(c.name) for c in checks)
        for c in checks:
            click.echo(f"{c.status:4} {c.name:{width}}  {c.detail}")
        click.echo("a run is possible" if code == ExitCode.OK else "a run is not possible")
    return code
