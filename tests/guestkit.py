"""A tiny real guest for tests: a stock Debian kernel and a busybox initramfs.

    kernel = stock_kernel()
    initrd = busybox_initramfs(tmp_path / "initrd.img", "echo MARKER > /dev/console")

The kernel is downloaded once with apt-get from the host's suite and kept in
/var/tmp/tempest-live-ci-test-kernel. Under TCG it boots to /init in 5–7 s here.
"""

from __future__ import annotations

from pathlib import Path

from tempest_live_ci.vm import tinyguest

KERNEL_CACHE = Path("/var/tmp/tempest-live-ci-test-kernel")


def stock_kernel() -> Path:
    """Path of a stock Debian vmlinuz (downloaded on first use)."""
    return tinyguest.debian_kernel(KERNEL_CACHE)


def busybox_initramfs(path: Path, init_script: str) -> Path:
    """Write an initramfs at `path` whose /init runs `init_script` with busybox sh, then powers off.

    /proc, /sys and /dev are mounted; the kernel console is wherever console= says
    (ttyS0 in the tests). Write markers to /dev/console.
    """
    return tinyguest.busybox_initramfs(path, init_script)
