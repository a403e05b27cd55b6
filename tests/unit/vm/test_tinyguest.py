"""The newc writer, checked by the cpio tool that reads it (and by the kernel in the slow tests)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tests.guestkit import busybox_initramfs


@pytest.mark.skipif(shutil.which("cpio") is None,
                    reason="cpio not installed (tools/deps/test.list)")
def test_initramfs_lists_and_extracts_with_cpio(tmp_path: Path) -> None:
    image = busybox_initramfs(tmp_path / "initrd.img", "echo MARKER > /dev/console")
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=image.read_bytes(),
                             capture_output=True, check=True).stdout.decode().split()
    assert {"init", "bin/busybox", "dev/console", "dev/ttyS0"} <= set(listing)
    verbose = subprocess.run(["cpio", "-itv", "--quiet"], input=image.read_bytes(),
                             capture_output=True, check=True).stdout.decode()
    assert any(line.startswith("crw") and line.endswith("dev/console")
               for line in verbose.splitlines())
    extract = tmp_path / "x"
    extract.mkdir()
    subprocess.run(["cpio", "-id", "--quiet", "init", "bin/busybox"], input=image.read_bytes(),
                   cwd=extract, check=True)
    init = (extract / "init").read_text()
    assert init.startswith("#!/bin/busybox sh\n") and "echo MARKER > /dev/console" in init
    assert (extract / "bin" / "busybox").read_bytes() == Path("/bin/busybox").read_bytes()
