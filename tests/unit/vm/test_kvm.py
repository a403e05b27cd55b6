"""The KVM probe: a real boot attempt under /dev/kvm, cached; tcg when it does not work.

This machine's /dev/kvm cannot run a stock kernel, so only the "unusable"
verdicts can be observed for real here; the kvm verdict needs a host with
working KVM.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tempest_live_ci.testbed import kvm
from tests.conftest import Dirs
from tests.guestkit import stock_kernel

pytestmark = pytest.mark.skipif(not kvm.DEV_KVM.exists(), reason="no /dev/kvm on this host")


def test_a_file_that_is_no_kernel_makes_qemu_fail_and_the_verdict_says_why(
        dirs: Dirs, tmp_path: Path) -> None:
    junk = tmp_path / "vmlinuz"
    junk.write_bytes(b"\0" * 4096)
    accel = kvm.detect_accelerator(junk, timeout=20)
    assert accel.kind == "tcg" and not accel.usable
    assert accel.domain_type == "qemu"
    assert accel.reason.startswith("/dev/kvm present but unusable: qemu -accel kvm")
    assert "\n" not in accel.reason


@pytest.mark.slow
def test_verdict_on_a_stock_kernel_is_cached(dirs: Dirs) -> None:
    kernel = stock_kernel()
    first = kvm.detect_accelerator(kernel, timeout=15)
    if first.usable:
        assert first.kind == "kvm" and first.domain_type == "kvm"
    else:
        assert first.kind == "tcg" and "unusable" in first.reason
    cached = list((dirs.cache / "kvm-probe").glob("*.json"))
    assert len(cached) == 1
    assert json.loads(cached[0].read_text())["kind"] == first.kind
    # The cached verdict is what the second call returns, even if the file says otherwise.
    cached[0].write_text(json.dumps({"kind": "tcg", "reason": "from the cache", "usable": False}))
    assert kvm.detect_accelerator(kernel).reason == "from the cache"


def test_nested_status_is_one_line() -> None:
    status = kvm.nested_kvm_status()
    assert status and "\n" not in status
