"""Nested KVM: the guest runs OpenStack, whose nova-compute wants /dev/kvm too."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tempest_live_ci import proc
from tempest_live_ci.log import log

MODPROBE_FILE = "tempest-live-ci-nested-kvm.conf"


@dataclass(frozen=True)
class NestedResult:
    module: str | None
    changed: bool
    active: bool
    message: str


def kvm_vendor_module(cpuinfo: str | None = None) -> str | None:
    text = cpuinfo if cpuinfo is not None else Path("/proc/cpuinfo").read_text()
    flags: set[str] = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
            break
    if "vmx" in flags:
        return "kvm_intel"
    if "svm" in flags:
        return "kvm_amd"
    return None


def nested_enabled(module: str, sys_module: Path = Path("/sys/module")) -> bool | None:
    try:
        value = (sys_module / module / "parameters" / "nested").read_text().strip()
    except OSError:
        return None
    return value in ("1", "Y", "y")


def _vms_running() -> bool:
    kvm = Path("/sys/kernel/debug/kvm")
    if kvm.is_dir():
        return any(p.is_dir() for p in kvm.iterdir())
    # Without debugfs, any qemu process with KVM counts.
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().startswith("qemu-system"):
                    return True
            except OSError:
                continue
    return False


def enable_nested_kvm(modprobe_dir: Path = Path("/etc/modprobe.d"),
                      sys_module: Path = Path("/sys/module"),
                      cpuinfo: str | None = None, reload: bool = True) -> NestedResult:
    """Write the modprobe.d option and reload the module when nothing uses it."""
    module = kvm_vendor_module(cpuinfo)
    if module is None:
        return NestedResult(None, False, False,
                            "nested KVM: this CPU has neither vmx nor svm; nothing to enable")
    option = f"options {module} nested=1\n"
    path = modprobe_dir / MODPROBE_FILE
    changed = not path.exists() or path.read_text() != option
    if changed:
        modprobe_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(option)
        log.info("wrote %s", path)
    if nested_enabled(module, sys_module):
        return NestedResult(module, changed, True, f"nested KVM: enabled ({module})")
    if not (sys_module / module).exists():
        present = sorted(p.name for p in sys_module.glob("kvm*")) if sys_module.exists() else []
        return NestedResult(
            module, changed, False,
            f"nested KVM: {module} is not loaded (loaded: {', '.join(present) or 'none'}); "
            f"the option in {path} applies when it is",
        )
    if not reload:
        return NestedResult(module, changed, False,
                            f"nested KVM: takes effect when {module} is next loaded")
    if _vms_running():
        return NestedResult(module, changed, False,
                            f"nested KVM: virtual machines are running, so {module} cannot be "
                            f"reloaded now; it takes effect when it is next loaded")
    unload = proc.run(["modprobe", "-r", module], check=False, capture=True)
    if unload.returncode != 0:
        return NestedResult(module, changed, False,
                            f"nested KVM: {module} is in use ({unload.stderr.strip()}); "
                            f"it takes effect when it is next loaded")
    proc.run(["modprobe", module])
    active = bool(nested_enabled(module, sys_module))
    return NestedResult(module, changed, active,
                        f"nested KVM: {'enabled' if active else 'still off after reload'} ({module})")


def nested_kvm_status() -> str:
    """One line on nested virtualisation of this host's KVM module."""
    for module in ("kvm_intel", "kvm_amd"):
        parameter = Path(f"/sys/module/{module}/parameters/nested")
        if parameter.exists():
            value = parameter.read_text().strip()
            enabled = value in ("Y", "1")
            return f"{module} nested={value} ({'enabled' if enabled else 'disabled'})"
    for module in ("kvm_pvm",):
        if Path(f"/sys/module/{module}").exists():
            return f"{module} loaded (PVM-style nested KVM; stock kernels may not boot under it)"
    if Path("/sys/module/kvm").exists():
        return "kvm loaded without kvm_intel/kvm_amd"
    return "no kvm module loaded"
