"""Is KVM usable here? Decided by booting a real kernel under it, not by looking at /dev/kvm.

A /dev/kvm can exist and still not run a stock kernel: nested or PVM-style
hypervisors reject MSRs (`-cpu host`) or hang early in boot. So the probe
boots a stock kernel with a busybox initramfs that prints a marker and powers
off. The verdict is cached per (kernel, qemu, /dev/kvm, host boot):

- "usable" until the host reboots (or qemu, the kernel or /dev/kvm change);
- "unusable" because qemu failed or the kernel stopped for NEGATIVE_TTL only:
  a host is not stuck on TCG (about ten times slower) until its next reboot;
- a probe that timed out is not cached at all: on a loaded host the kernel may
  just have been slow, the next call tries again.

`doctor --recheck-kvm` ignores the cache and probes again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tempest_live_ci import paths, proc, registry
from tempest_live_ci.digest import sha256_file
from tempest_live_ci.errors import TLCError
from tempest_live_ci.log import log
from tempest_live_ci.vm import tinyguest
from tempest_live_ci.vm.nested import nested_kvm_status

DEV_KVM = Path("/dev/kvm")
MARKER = "TEMPEST-LIVE-CI-KVM-PROBE-OK"
QEMU = "qemu-system-x86_64"
# How long a negative verdict (qemu failed, the kernel stopped) is trusted.
NEGATIVE_TTL = 600.0


@dataclass(frozen=True)
class Accelerator:
    kind: str  # "kvm" or "tcg"
    reason: str  # one line: why this accelerator
    usable: bool  # KVM works (kind == "kvm")

    @property
    def domain_type(self) -> str:
        """The libvirt <domain type=...>."""
        return "kvm" if self.kind == "kvm" else "qemu"


def probe_kernel() -> Path | None:
    """The kernel the probe boots when none is given: the host's, else one cached by us."""
    host = Path(f"/boot/vmlinuz-{os.uname().release}")
    if host.exists() and os.access(host, os.R_OK):
        return host
    try:
        return tinyguest.debian_kernel(paths.cache_dir() / "probe")
    except TLCError as e:
        log.debug("no probe kernel: %s", e.message)
        return None


def _qemu_version() -> str:
    out = proc.run([QEMU, "--version"], capture=True, check=False).stdout
    return out.splitlines()[0] if out else "unknown"


def _kvm_identity() -> str:
    st = DEV_KVM.stat()
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}:{st.st_ino}:{boot_id}"


def _cache_file(kernel: Path) -> Path:
    key = "\n".join((sha256_file(kernel), _qemu_version(), _kvm_identity()))
    name = hashlib.sha256(key.encode()).hexdigest()[:24] + ".json"
    return paths.cache_dir() / "kvm-probe" / name


def _cached(cache: Path) -> Accelerator | None:
    """The verdict in a cache file if it still holds: usable for the boot, unusable for a while."""
    try:
        data = json.loads(cache.read_text())
        verdict = Accelerator(str(data["kind"]), str(data["reason"]), bool(data["usable"]))
        checked = float(data.get("checked", 0))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    if verdict.usable:
        return verdict
    # Files without a time were written by versions that cached "unusable" for good.
    age = time.time() - checked
    if 0 <= age < NEGATIVE_TTL:
        return verdict
    log.debug("KVM verdict in %s is %.0fs old: probing again", cache, age)
    return None


def _store(cache: Path, verdict: Accelerator) -> None:
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({**asdict(verdict), "checked": time.time()}))
    tmp.replace(cache)


def detect_accelerator(kernel: Path | None = None, timeout: float = 20, *,
                       recheck: bool = False, busybox: Path = tinyguest.BUSYBOX) -> Accelerator:
    """KVM if a stock kernel really boots under it, else TCG, with the reason on one line.

    recheck=True ignores a cached verdict. A TLCError (TestbedError) when the
    probe cannot be made at all (no static busybox): that is no verdict on KVM.
    """
    if not DEV_KVM.exists():
        return Accelerator("tcg", "/dev/kvm does not exist", False)
    if not os.access(DEV_KVM, os.R_OK | os.W_OK):
        return Accelerator("tcg", "/dev/kvm is not readable and writable by this user", False)
    kernel = kernel or probe_kernel()
    if kernel is None:
        return Accelerator("tcg", "/dev/kvm present but no kernel to try it with", False)
    cache = _cache_file(kernel)
    if not recheck:
        cached = _cached(cache)
        if cached is not None:
            return cached
    accelerator, timed_out = _probe(kernel, timeout, busybox)
    if timed_out:
        # No verdict to keep: a loaded host may boot the kernel slowly.
        cache.unlink(missing_ok=True)
    else:
        _store(cache, accelerator)
    return accelerator


def _probe(kernel: Path, timeout: float, busybox: Path) -> tuple[Accelerator, bool]:
    """A verdict, and whether it is only that the probe ran out of time."""
    log.debug("probing KVM with %s (timeout %.0fs)", kernel, timeout)
    with _probe_directory() as tmp:
        initrd = tinyguest.busybox_initramfs(
            Path(tmp) / "initrd.img", f"echo {MARKER} > /dev/console", busybox=busybox
        )
        console = Path(tmp) / "console.log"
        argv: list[str | os.PathLike[str]] = [
            QEMU, "-machine", "q35", "-accel", "kvm", "-cpu", "host", "-m", "256",
            "-nodefaults", "-display", "none", "-no-reboot",
            "-serial", f"file:{console}",
            "-kernel", kernel, "-initrd", initrd,
            "-append", "console=ttyS0 panic=-1 quiet",
        ]
        start = time.monotonic()
        with open(Path(tmp) / "qemu.err", "w+b") as err, proc.spawn(
            argv, stdout=subprocess.DEVNULL, stderr=err, grace=1
        ) as qemu:
            proc.wait_until(lambda: MARKER in _read(console) or qemu.poll() is not None,
                            timeout, interval=0.1)
            if MARKER in _read(console):
                elapsed = time.monotonic() - start
                return Accelerator(
                    "kvm", f"KVM usable: a stock kernel booted under it in {elapsed:.1f}s", True
                ), False
            exited = qemu.poll() is not None
            err.flush()
            err.seek(0)
            error = err.read().decode(errors="replace").strip().splitlines()
        # The marker may have come with the exit.
        if MARKER in _read(console):
            return Accelerator("kvm", "KVM usable: a stock kernel booted under it", True), False
        last = [line for line in _read(console).splitlines() if line.strip()]
        where = f' (last console line: "{last[-1].strip()[:80]}")' if last else ""
        if exited and error and qemu.returncode != 0:
            detail = error[-1].removeprefix(f"{QEMU}: ")
            return Accelerator(
                "tcg", f"/dev/kvm present but unusable: qemu -accel kvm -cpu host failed: {detail}",
                False,
            ), False
        if exited:
            return Accelerator(
                "tcg", f"/dev/kvm present but unusable: a stock kernel stopped under KVM "
                f"before /init ran{where}; {nested_kvm_status()}", False,
            ), False
        return Accelerator(
            "tcg",
            f"/dev/kvm present but unusable: a stock kernel did not boot under KVM in "
            f"{timeout:.0f}s{where}; {nested_kvm_status()}",
            False,
        ), True


@registry.kind("kvm-probe")
@dataclass(kw_only=True)
class KvmProbe(registry.Resource):
    """A KVM probe (`name`: its scratch directory) and its qemu, which a stock kernel
    hanging under a nested KVM keeps running until it is killed."""

    def undo(self) -> list[str]:
        removed = []
        for pid, argv in proc.processes():
            if os.path.basename(argv[0]) == QEMU and any(self.name in a for a in argv) \
                    and proc.kill_pid(pid, grace=1):
                removed.append(f"process {pid} (qemu of the KVM probe)")
        if Path(self.name).is_dir():
            shutil.rmtree(self.name, ignore_errors=True)
            removed.append(f"directory {self.name}")
        return removed

    def describe(self) -> str:
        return f"KVM probe {self.name}"


@contextlib.contextmanager
def _probe_directory() -> Iterator[str]:
    """The probe's scratch directory, recorded (with the qemu that will name it) before it
    is made: a run killed while it probes leaves them to `cleanup`."""
    path = os.path.join(tempfile.gettempdir(), f"tlc-kvm-probe-{secrets.token_hex(6)}")
    probe = KvmProbe(name=path)
    try:
        entry: registry.Entry | None = registry.add(probe)
    except OSError as e:
        # No state directory of ours to write (doctor as a user): no run to clean up after.
        log.debug("KVM probe not recorded: %s", e)
        entry = None
    try:
        os.mkdir(path, 0o700)
        yield path
    finally:
        probe.undo()
        if entry is not None:
            registry.discard(entry)


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""
