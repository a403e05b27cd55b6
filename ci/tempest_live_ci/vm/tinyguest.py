"""A tiny guest: a stock Debian kernel and a busybox initramfs whose /init runs a script.

Used to probe whether KVM really works (vm/kvm.py) and by the tests to
boot something real in seconds instead of a full live image.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import struct
import subprocess
import tempfile
from pathlib import Path

from tempest_live_ci import proc
from tempest_live_ci.errors import TestbedError

BUSYBOX = Path("/bin/busybox")
BUSYBOX_HINT = "apt-get install busybox-static (it replaces the dynamically linked busybox)"

_PT_INTERP = 3  # ELF program header type: the path of the dynamic loader

# The initramfs: its directories, and the console devices the kernel opens for
# /init before anything could mount devtmpfs (name, mode, major, minor).
DIRECTORIES = ("bin", "dev", "proc", "sys", "tmp")
DEVICES = (("dev/console", 0o600, 5, 1), ("dev/ttyS0", 0o600, 4, 64), ("dev/null", 0o666, 1, 3))


def elf_interpreter(data: bytes) -> str | None:
    """The dynamic loader an ELF executable asks for (its PT_INTERP), None if it is static.

    Raises ValueError for what is no ELF file.
    """
    if len(data) < 64 or data[:4] != b"\x7fELF" or data[4] not in (1, 2) or data[5] not in (1, 2):
        raise ValueError("not an ELF file")
    is64 = data[4] == 2
    order = "<" if data[5] == 1 else ">"
    if is64:
        phoff, = struct.unpack_from(order + "Q", data, 0x20)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x36)
    else:
        phoff, = struct.unpack_from(order + "I", data, 0x1C)
        phentsize, phnum = struct.unpack_from(order + "HH", data, 0x2A)
    for i in range(phnum):
        entry = phoff + i * phentsize
        if entry + (56 if is64 else 32) > len(data):
            raise ValueError("truncated ELF program headers")
        p_type, = struct.unpack_from(order + "I", data, entry)
        if p_type != _PT_INTERP:
            continue
        if is64:
            offset, = struct.unpack_from(order + "Q", data, entry + 0x08)
            size, = struct.unpack_from(order + "Q", data, entry + 0x20)
        else:
            offset, = struct.unpack_from(order + "I", data, entry + 0x04)
            size, = struct.unpack_from(order + "I", data, entry + 0x10)
        return data[offset:offset + size].split(b"\0", 1)[0].decode(errors="replace")
    return None


def static_busybox(busybox: Path = BUSYBOX) -> bytes:
    """The content of a statically linked busybox: the only kind that runs as an initramfs's
    /init with no libraries beside it. A TestbedError naming busybox-static otherwise."""
    try:
        data = busybox.read_bytes()
    except FileNotFoundError:
        raise TestbedError(f"{busybox} not found: the KVM probe needs busybox-static",
                           hint=BUSYBOX_HINT) from None
    except OSError as e:
        raise TestbedError(f"{busybox}: {e.strerror}: the KVM probe needs busybox-static",
                           hint=BUSYBOX_HINT) from None
    try:
        interpreter = elf_interpreter(data)
    except ValueError as e:
        raise TestbedError(f"{busybox}: {e}: the KVM probe needs busybox-static",
                           hint=BUSYBOX_HINT) from None
    if interpreter is not None:
        raise TestbedError(
            f"{busybox} is dynamically linked (loader {interpreter}), it cannot run in an "
            "initramfs: the KVM probe needs busybox-static", hint=BUSYBOX_HINT)
    return data


def busybox_initramfs(path: Path, init_script: str, *, busybox: Path = BUSYBOX) -> Path:
    """Write an initramfs whose /init sets up /proc, /sys, /dev and runs `init_script` (sh).

    The console device nodes are in the archive itself: the kernel opens
    /dev/console for init before anything could mount devtmpfs. `busybox` must
    be statically linked (busybox-static): nothing else is in the archive.
    The archive is written by cpio (newc, the format the kernel unpacks, as
    initramfs-tools does) from a staging tree; making its device nodes needs root.
    """
    busybox_data = static_busybox(busybox)
    init = (
        "#!/bin/busybox sh\n"
        "/bin/busybox --install -s /bin\n"
        "export PATH=/bin\n"
        "mount -t proc proc /proc\n"
        "mount -t sysfs sysfs /sys\n"
        "mount -t devtmpfs devtmpfs /dev 2>/dev/null\n"
        + init_script
        + "\npoweroff -f\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".initramfs-") as staging:
        root = Path(staging)
        for name in DIRECTORIES:
            (root / name).mkdir()
            (root / name).chmod(0o755)
        for name, mode, major, minor in DEVICES:
            try:
                os.mknod(root / name, stat.S_IFCHR | mode, os.makedev(major, minor))
            except PermissionError as e:
                raise TestbedError(f"cannot make the initramfs's {name}: {e.strerror} "
                                   "(device nodes need root)") from None
            (root / name).chmod(mode)
        for name, data in (("bin/busybox", busybox_data), ("init", init.encode())):
            (root / name).write_bytes(data)
            (root / name).chmod(0o755)
        # cpio archives the names it reads, in that order, as they are in the
        # staging tree: directories before what they hold.
        names = [*DIRECTORIES, *(d[0] for d in DEVICES), "bin/busybox", "init"]
        with open(tmp, "wb") as out:
            proc.run(["cpio", "--create", "--format=newc", "--owner=0:0", "--reproducible",
                      "--quiet"], input="\n".join(names) + "\n", cwd=root, stdout=out,
                     stderr=subprocess.PIPE)
    tmp.replace(path)
    return path


def debian_kernel_package() -> str:
    """The versioned linux-image package the host's suite's linux-image-amd64 points at."""
    out = proc.run(["apt-cache", "depends", "linux-image-amd64"], capture=True).stdout
    found = re.findall(r"Depends:\s*(linux-image-[0-9][^\s]*)", out)
    if not found:
        raise TestbedError(
            "apt-cache knows no linux-image-amd64 dependency",
            hint="run apt-get update",
        )
    return str(found[0])


def debian_kernel(directory: Path) -> Path:
    """A stock Debian vmlinuz in `directory`, downloaded with apt-get once and reused.

    Only the kernel image is kept (the package's modules are not needed to
    boot an initramfs that has everything built in).
    """
    directory.mkdir(parents=True, exist_ok=True)
    existing = sorted(directory.glob("vmlinuz-*"))
    if existing:
        return existing[-1]
    package = debian_kernel_package()
    with tempfile.TemporaryDirectory(dir=directory) as tmp:
        proc.run(["apt-get", "download", package], cwd=tmp, capture=True)
        debs = list(Path(tmp).glob("*.deb"))
        if not debs:
            raise TestbedError(f"apt-get download {package} produced no .deb")
        tree = Path(tmp) / "tree"
        proc.run(["dpkg-deb", "-x", debs[0], tree])
        kernels = sorted((tree / "boot").glob("vmlinuz-*"))
        if not kernels:
            raise TestbedError(f"{debs[0].name} holds no boot/vmlinuz-*")
        destination = directory / kernels[0].name
        shutil.copyfile(kernels[0], destination.with_name(destination.name + ".tmp"))
        os.replace(destination.with_name(destination.name + ".tmp"), destination)
    return destination
