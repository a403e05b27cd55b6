"""What the guest boots: kernel, initrd and squashfs under the HTTP root, and
the iPXE script that ties them together with the kernel command line.

The image carries no address: the command line, fetch= included, is written
here from the testbed's own address, so one image boots on any subnet.
"""

from __future__ import annotations

import os
from pathlib import Path

from tempest_live_ci import render
from tempest_live_ci.errors import UsageError, shown
from tempest_live_ci.image.cache import SQUASHFS, SQUASHFS_MODE
from tempest_live_ci.testbed.model import Testbed

IMAGE_DIR = "img"


def check_cmdline(cmdline: str, option: str = "kernel command line") -> str:
    """A kernel command line for boot.ipxe: one line of printable ASCII without `$`.

    It is written into an iPXE script, where a newline starts a command of
    its own and ${...} is expanded as an iPXE setting.
    """
    bad = sorted({c for c in cmdline if not " " <= c <= "~" or c == "$"})
    if bad:
        raise UsageError(f"{option} {shown(cmdline)}: holds {shown(''.join(bad), 20)} (printable ASCII "
                         "without $ only)")
    return cmdline


def _link(source: Path, destination: Path) -> None:
    """A hard link when on the same file system (no copy of 300 MB), else a symlink."""
    destination.unlink(missing_ok=True)
    try:
        os.link(source, destination)
    except OSError:
        destination.symlink_to(source.resolve())


def boot_cmdline(testbed: Testbed, base_cmdline: str, squashfs: bool = True) -> str:
    """The image's command line plus where to fetch the root filesystem from."""
    parts = [check_cmdline(base_cmdline).strip()]
    if squashfs:
        parts.append(f"fetch={testbed.http_url}/{IMAGE_DIR}/{SQUASHFS}")
    return " ".join(p for p in parts if p)


def publish_boot_files(testbed: Testbed, *, vmlinuz: Path, initrd: Path,
                       squashfs: Path | None, cmdline: str) -> str:
    """Put the boot files under the HTTP root, write boot.ipxe; return its URL.

    `cmdline` is the image's kernel command line without fetch=, which is
    added here when there is a squashfs to fetch.
    """
    directory = testbed.http_root / IMAGE_DIR
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    _link(vmlinuz, directory / "vmlinuz")
    _link(initrd, directory / "initrd.img")
    if squashfs is not None:
        # The link shares the store's file (its inode, its mode): an image stored before
        # its mode was root's only is made so here, under both names.
        squashfs.chmod(SQUASHFS_MODE)
        _link(squashfs, directory / SQUASHFS)
    script = render.render(
        "host-setup/boot.ipxe.j2",
        name=testbed.run_id,
        base_url=testbed.http_url,
        kernel=f"{IMAGE_DIR}/vmlinuz",
        initrd=f"{IMAGE_DIR}/initrd.img",
        initrd_name="initrd.img",
        cmdline=boot_cmdline(testbed, cmdline, squashfs is not None),
    )
    (testbed.http_root / "boot.ipxe").write_text(script)
    return f"{testbed.http_url}/boot.ipxe"
