"""`doctor` on this very machine: every check, and the KVM verdict it must reach here."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import needs_root

Tlc = Callable[..., subprocess.CompletedProcess[str]]


@needs_root
@pytest.mark.slow
def test_doctor_reports_this_machine(tlc: Tlc) -> None:
    # The real cache: the KVM probe's verdict and kernel are kept there across runs.
    result = tlc("doctor", "--json", env={"TEMPEST_LIVE_CI_CACHE_DIR": "/var/cache/tempest-live-ci"})
    report = json.loads(result.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["exit_code"] == result.returncode == 0, result.stderr
    assert {"root", "dnsmasq", "qemu-system-x86_64", "libvirtd", "socat", "kvm", "nested kvm",
            "memory", "disk", "dummy NIC"} <= set(checks)
    assert checks["root"]["status"] == "ok"
    kvm = checks["kvm"]
    if not Path("/dev/kvm").exists():
        assert kvm["status"] == "warn" and "does not exist" in kvm["detail"]
    elif Path("/sys/module/kvm_pvm").exists():
        # This machine: /dev/kvm is there, but a stock kernel does not boot under it.
        assert kvm["status"] == "warn"
        assert "present but unusable" in kvm["detail"] and "TCG" in kvm["detail"]
    has_dummy = subprocess.run(["modprobe", "-n", "dummy"], capture_output=True).returncode == 0
    if Path("/sys/module/kvm_pvm").exists() and not has_dummy:
        assert "veth pair stands in" in checks["dummy NIC"]["detail"]
    # Human output: one line per check on stderr, the verdict last.
    human = tlc("doctor", env={"TEMPEST_LIVE_CI_CACHE_DIR": "/var/cache/tempest-live-ci"})
    lines = human.stderr.strip().splitlines()
    assert lines[-1] == "a run is possible"
    assert len(lines) == len(checks) + 1
