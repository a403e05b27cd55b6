"""The KVM probe: a real boot attempt under /dev/kvm, cached; tcg when it does not work.

This machine's /dev/kvm cannot run a stock kernel, so only the "unusable"
verdicts can be observed for real here; the kvm verdict needs a host with
working KVM.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tempest_live_ci.errors import TLCError
from tempest_live_ci.vm import kvm
from tests.conftest import Dirs
from tests.guestkit import stock_kernel

# qemu on /dev/kvm, verdicts in the cache: root.
pytestmark = [pytest.mark.skipif(not kvm.DEV_KVM.exists(), reason="no /dev/kvm on this host"),
              pytest.mark.root]


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
    if "did not boot under KVM in" in first.reason:
        # A timeout is no verdict to keep (a loaded host may just be slow).
        assert cached == []
    else:
        assert len(cached) == 1
        assert json.loads(cached[0].read_text())["kind"] == first.kind
    # The cached verdict is what the second call returns, even if the file says otherwise.
    _verdict_file(kernel, usable=False, age=0)
    assert kvm.detect_accelerator(kernel).reason == "from the cache"


# The cache policy, with real verdict files where detect_accelerator() looks
# for them. The kernel is a file qemu refuses: a real probe fails at once.

def _junk_kernel(tmp_path: Path) -> Path:
    junk = tmp_path / "vmlinuz"
    junk.write_bytes(b"\0" * 4096)
    return junk


def _verdict_file(kernel: Path, *, usable: bool, age: float | None) -> Path:
    cache = kvm._cache_file(kernel)
    cache.parent.mkdir(parents=True, exist_ok=True)
    verdict: dict[str, object] = {"kind": "kvm" if usable else "tcg",
                                  "reason": "from the cache", "usable": usable}
    if age is not None:
        verdict["checked"] = time.time() - age
    cache.write_text(json.dumps(verdict))
    return cache


def test_usable_verdict_holds_until_reboot(dirs: Dirs, tmp_path: Path) -> None:
    kernel = _junk_kernel(tmp_path)
    _verdict_file(kernel, usable=True, age=3 * 86400)
    accel = kvm.detect_accelerator(kernel)
    assert (accel.kind, accel.reason, accel.usable) == ("kvm", "from the cache", True)
    # The key has the host's boot id: after a reboot the file is another one.
    boot_id = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert boot_id in kvm._kvm_identity()


def test_recent_unusable_verdict_is_kept(dirs: Dirs, tmp_path: Path) -> None:
    kernel = _junk_kernel(tmp_path)
    _verdict_file(kernel, usable=False, age=kvm.NEGATIVE_TTL - 60)
    assert kvm.detect_accelerator(kernel).reason == "from the cache"


@pytest.mark.parametrize("age", [kvm.NEGATIVE_TTL + 1, None, -3600.0],
                         ids=["expired", "no-time", "future"])
def test_unusable_verdict_expires(dirs: Dirs, tmp_path: Path, age: float | None) -> None:
    kernel = _junk_kernel(tmp_path)
    cache = _verdict_file(kernel, usable=False, age=age)
    before = time.time()
    accel = kvm.detect_accelerator(kernel, timeout=20)
    # Probed again for real: qemu refuses the file.
    assert accel.reason.startswith("/dev/kvm present but unusable: qemu -accel kvm")
    stored = json.loads(cache.read_text())
    assert stored["reason"] == accel.reason and stored["usable"] is False
    assert stored["checked"] >= before


def test_a_timeout_is_never_cached(dirs: Dirs, tmp_path: Path) -> None:
    kernel = _junk_kernel(tmp_path)
    cache = _verdict_file(kernel, usable=False, age=kvm.NEGATIVE_TTL + 1)
    # No time at all to boot: the probe runs out of time, as on a loaded host.
    accel = kvm.detect_accelerator(kernel, timeout=0)
    assert not accel.usable and "did not boot under KVM in 0s" in accel.reason
    assert not cache.exists()
    # So the next call probes again (and this verdict, a real one, is kept).
    again = kvm.detect_accelerator(kernel, timeout=20)
    assert again.reason.startswith("/dev/kvm present but unusable: qemu -accel kvm")
    assert json.loads(cache.read_text())["reason"] == again.reason


def test_recheck_ignores_the_cache(dirs: Dirs, tmp_path: Path) -> None:
    kernel = _junk_kernel(tmp_path)
    cache = _verdict_file(kernel, usable=True, age=10)
    accel = kvm.detect_accelerator(kernel, recheck=True)
    assert not accel.usable and accel.reason != "from the cache"
    assert json.loads(cache.read_text())["usable"] is False


def test_no_static_busybox_is_an_error_not_a_verdict(dirs: Dirs, tmp_path: Path) -> None:
    kernel = _junk_kernel(tmp_path)
    with pytest.raises(TLCError, match="busybox-static"):
        kvm.detect_accelerator(kernel, busybox=Path(sys.executable).resolve())
    assert not kvm._cache_file(kernel).exists()
