"""The newc writer, checked by the cpio tool that reads it (and by the kernel in the slow tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tempest_live_ci.errors import TLCError
from tempest_live_ci.vm import tinyguest
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


def test_elf_interpreter_of_real_executables() -> None:
    # busybox-static's busybox has no loader; Python (like any Debian program) has one.
    assert tinyguest.elf_interpreter(Path("/bin/busybox").read_bytes()) is None
    loader = tinyguest.elf_interpreter(Path(sys.executable).resolve().read_bytes())
    assert loader is not None and loader.startswith("/lib") and "ld-linux" in loader
    with pytest.raises(ValueError, match="not an ELF file"):
        tinyguest.elf_interpreter(Path(__file__).read_bytes())


@pytest.mark.parametrize(("busybox", "message"), [
    # Debian's dynamically linked busybox would be copied alone into the
    # initramfs, where its libraries are not: /init could never run.
    (Path(sys.executable).resolve(), "is dynamically linked (loader /lib"),
    (Path(__file__), "not an ELF file"),
    (Path("/nonexistent/busybox"), "/nonexistent/busybox not found"),
])
def test_initramfs_needs_a_static_busybox(tmp_path: Path, busybox: Path, message: str) -> None:
    with pytest.raises(TLCError) as error:
        tinyguest.busybox_initramfs(tmp_path / "initrd.img", "true", busybox=busybox)
    assert message in error.value.message
    assert "busybox-static" in error.value.message
    assert error.value.hint is not None and "apt-get install busybox-static" in error.value.hint
    assert not (tmp_path / "initrd.img").exists()
