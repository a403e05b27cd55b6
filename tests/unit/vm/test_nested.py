"""The one line doctor prints on nested KVM, against what sysfs says on this host."""

from __future__ import annotations

from pathlib import Path

from tempest_live_ci.vm import nested


def test_nested_status_says_what_sysfs_says() -> None:
    status = nested.nested_kvm_status()
    assert "\n" not in status
    for module in ("kvm_intel", "kvm_amd"):
        parameter = Path(f"/sys/module/{module}/parameters/nested")
        if parameter.exists():
            value = parameter.read_text().strip()
            enabled = value in ("Y", "1")
            assert status == f"{module} nested={value} ({'enabled' if enabled else 'disabled'})"
            return
    if Path("/sys/module/kvm_pvm").exists():
        assert status.startswith("kvm_pvm loaded (PVM-style nested KVM")
    elif Path("/sys/module/kvm").exists():
        assert status == "kvm loaded without kvm_intel/kvm_amd"
    else:
        assert status == "no kvm module loaded"
