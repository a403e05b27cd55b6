"""The KVM probe's initramfs as cpio writes it, read back by cpio (and by the kernel in the slow
tests)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tempest_live_ci.errors import TLCError
from tempest_live_ci.vm import tinyguest
from tests.guestkit import busybox_initramfs


@pytest.mark.root  # the device nodes (mknod)
@pytest.mark.skipif(shutil.which("cpio") is None,
                    reason="cpio not installed (tools/deps/host.list)")
def test_initramfs_lists_and_extracts_with_cpio(tmp_path: Path) -> None:
    image = busybox_initramfs(tmp_path / "initrd.img", "echo MARKER > /dev/console")
    # newc ("070701"), the format the kernel unpacks.
    assert image.read_bytes()[:6] == b"070701"
    listing = subprocess.run(["cpio", "-it", "--quiet"], input=image.read_bytes(),
                             capture_output=True, check=True).stdout.decode().split()
    # Directories before what they hold, as the kernel needs them.
    assert listing == ["bin", "dev", "proc", "sys", "tmp", "dev/console", "dev/ttyS0",
                       "dev/null", "bin/busybox", "init"]
    verbose = subprocess.run(["cpio", "-itv", "--quiet", "--numeric-uid-gid"],
                             input=image.read_bytes(), capture_output=True,
                             check=True).stdout.decode()
    rows = {line.split()[-1]: line.split() for line in verbose.splitlines()}
    # Mode, owner root:root, and the character devices' numbers.
    assert rows["dev/console"][:5] == ["crw-------", "1", "0", "0", "5,"]
    assert rows["dev/console"][5] == "1"
    assert rows["dev/ttyS0"][4:6] == ["4,", "64"] and rows["dev/null"][0] == "crw-rw-rw-"
    assert rows["init"][0] == "-rwxr-xr-x" and rows["bin"][0] == "drwxr-xr-x"
    assert all(row[2:4] == ["0", "0"] for row in rows.values())
    # Nothing of the staging tree is left beside the archive.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["initrd.img"]
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
