"""`doctor` on this very machine: every check, and the KVM verdict it must reach here."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.doctor import FAIL, OK, WARN, busybox_check, kvm_check, runner_check
from tests.conftest import TOP, Dirs, needs_root

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
    # Human output: one line per check on stdout (`doctor | less`), the verdict last.
    human = tlc("doctor", env={"TEMPEST_LIVE_CI_CACHE_DIR": "/var/cache/tempest-live-ci"})
    lines = human.stdout.strip().splitlines()
    assert lines[-1] == "a run is possible"
    assert len(lines) == len(checks) + 1


needs_kvm_device = pytest.mark.skipif(not Path("/dev/kvm").exists(), reason="no /dev/kvm")


def _checks(result: subprocess.CompletedProcess[str]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in json.loads(result.stdout)["checks"]}


@needs_root
@needs_kvm_device
def test_doctor_recheck_kvm_replaces_the_cached_verdict(tlc: Tlc, dirs: Dirs,
                                                        tmp_path: Path) -> None:
    # A file qemu refuses as a kernel: every real probe fails at once, no guest boots.
    junk = tmp_path / "vmlinuz"
    junk.write_bytes(b"\0" * 4096)
    first = _checks(tlc("doctor", "--json", "--kernel", str(junk)))["kvm"]
    assert first["status"] == "warn" and "qemu -accel kvm -cpu host failed" in first["detail"]
    [cached] = (dirs.cache / "kvm-probe").glob("*.json")
    cached.write_text(json.dumps({"kind": "kvm", "reason": "from the cache", "usable": True}))
    second = _checks(tlc("doctor", "--json", "--kernel", str(junk)))["kvm"]
    assert second == {"name": "kvm", "status": "ok", "detail": "usable: from the cache"}
    third = _checks(tlc("doctor", "--json", "--kernel", str(junk), "--recheck-kvm"))["kvm"]
    assert third == first
    assert json.loads(cached.read_text())["usable"] is False


@needs_root
@needs_kvm_device
def test_kvm_check_without_a_static_busybox_is_a_failed_check(dirs: Dirs,
                                                               tmp_path: Path) -> None:
    junk = tmp_path / "vmlinuz"
    junk.write_bytes(b"\0" * 4096)
    dynamic = Path(sys.executable).resolve()  # a dynamically linked program, like busybox
    check = kvm_check(junk, busybox=dynamic)
    assert check.status == FAIL
    assert check.detail.startswith(f"cannot probe KVM: {dynamic} is dynamically linked")
    assert "apt-get install busybox-static" in check.detail
    assert busybox_check(dynamic).status == FAIL
    assert busybox_check(tmp_path / "missing").status == FAIL
    ok = busybox_check()  # this host has busybox-static (tools/deps/host.list)
    assert ok.status == OK and ok.detail == "/bin/busybox is statically linked"


@needs_root
def test_the_gitlab_runner_check_asks_sudo_whether_the_runners_user_may_run_the_tool() -> None:
    """Through the real sudo and this machine's sudoers (tools/install-deps test installs
    sudo): Debian's sudoers lets root run anything, and nobody nothing."""
    if proc.which("sudo") is None:
        pytest.fail("sudo is missing: tools/install-deps test installs it")
    tool = str(TOP / "bin" / "tempest-live-ci")
    allowed = runner_check("root", tool)
    assert allowed is not None and allowed.status == OK, allowed
    assert "root may run" in allowed.detail
    refused = runner_check("nobody", tool)
    assert refused is not None and refused.status == WARN, refused
    assert "nobody's jobs may not run" in refused.detail
    assert "/etc/sudoers.d/tempest-live-ci" in refused.detail
    # No runner's user on the machine: nothing to check, no line in doctor's report.
    assert runner_check("tlc-no-such-user", tool) is None
    # The user, and no tool where its jobs look for it.
    missing = runner_check("nobody", str(TOP / "no-such-tool"))
    assert missing is not None and missing.status == WARN and "not installed" in missing.detail
