"""The image store: one directory per image, named by the hash of its inputs.

Every input that can change the image goes into the hash: the files under
live-build/, the options, the tool's and live-build's versions, the user's
public key. An image directory only ever appears complete (it is renamed into
place after a successful build), so its presence means a good image.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tempest_live_ci import __version__, paths, proc
from tempest_live_ci.deploy.profiles import held_services
from tempest_live_ci.errors import UsageError, shown
from tempest_live_ci.image.model import Image, ImageOptions
from tempest_live_ci.log import log

# What the guest's kernel needs besides fetch= (which names the testbed's HTTP
# server and so comes from the iPXE script). quiet: every kernel line on a
# 115200 baud serial console costs boot time under TCG. mitigations=off: the
# guest is a throwaway test machine, and page-table isolation and the like
# are expensive to emulate.
KERNEL_CMDLINE = ("boot=live components quiet systemd.show_status=auto mitigations=off "
                  "net.ifnames=0 console=ttyS0,115200n8")
HASH_LENGTH = 16
MANIFEST = "manifest.json"
ARTIFACTS = ("vmlinuz", "initrd.img", "filesystem.squashfs")
SQUASHFS = "filesystem.squashfs"
# The squashfs holds the guest's SSH host private key (image/livebuild.py): a
# local user who reads it can pose as the guest. Root's only, in the store and
# where a testbed publishes it (vm/bootfiles.py): the HTTP server (root) serves
# it, the guest fetches it over HTTP, qemu never opens it.
SQUASHFS_MODE = 0o600
FORMAT = 1


def live_build_files() -> Iterator[tuple[str, Path]]:
    """(relative name, path) of every file of the live-build configuration, sorted."""
    top = paths.live_build_dir()
    for path in sorted(top.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            yield path.relative_to(top).as_posix(), path


def installed_version(package: str) -> str:
    """The installed version of a package, from dpkg-query; "unknown" when it is not installed."""
    result = proc.run(["dpkg-query", "--show", "--showformat", "${db:Status-Status} ${Version}",
                       package], check=False, capture=True)
    status, _, version = result.stdout.partition(" ")
    return version if result.returncode == 0 and status == "installed" and version else "unknown"


def live_build_version() -> str:
    """The installed live-build's version: an input of every image."""
    return installed_version("live-build")


def image_inputs(options: ImageOptions,
                 archive: dict[str, str] | None = None) -> dict[str, Any]:
    """Everything that decides the image's content, as JSON-able data.

    archive: the versions the archive offers today for a preinstalled
    profile's packages and what they pull in (image/archive.py).
    """
    files = {}
    for name, path in live_build_files():
        mode = "x" if path.stat().st_mode & 0o111 else "-"
        files[name] = f"{mode}{hashlib.sha256(path.read_bytes()).hexdigest()}"
    public_key = None
    if options.ssh_public_key is not None:
        public_key = " ".join(options.ssh_public_key.read_text().split()[:2])
    inputs = {
        "format": FORMAT,
        "tool_version": __version__,
        "live_build_version": live_build_version(),
        "suite": options.suite,
        "mirror": options.mirror.rstrip("/"),
        "packages": list(options.packages),
        "profile": options.profile,
        "profile_packages": [p for p in options.all_packages if p not in options.packages],
        "compression": options.compression,
        "compression_level": options.effective_compression_level,
        "ssh_public_key": public_key,
        "kernel_cmdline": KERNEL_CMDLINE,
        "files": files,
    }
    if options.profile is not None:
        inputs["held_services"] = list(held_services(options.profile))
    if archive is not None:
        inputs["archive"] = archive
    return inputs


def inputs_hash(inputs: dict[str, Any]) -> str:
    canonical = json.dumps(inputs, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:HASH_LENGTH]


def load_image(directory: Path) -> Image:
    """The image in `directory`, from its manifest."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
    except (OSError, ValueError) as e:
        raise UsageError(f"{directory / MANIFEST}: not a readable image manifest ({e})") from e
    if manifest.get("ssh_key_generated"):
        # The generated key travels with the image directory, wherever it is.
        private_key = directory / manifest["ssh_private_key_relative"]
    else:
        private_key = Path(manifest["ssh_private_key"])
    return Image(
        directory=directory,
        hash=manifest["hash"],
        vmlinuz=directory / "vmlinuz",
        initrd=directory / "initrd.img",
        squashfs=directory / "filesystem.squashfs",
        ssh_private_key=private_key,
        host_key=manifest["host_key"],
        host_key_fingerprint=manifest["host_key_fingerprint"],
        kernel_cmdline=manifest["kernel_cmdline"],
        manifest=manifest,
    )


def is_complete(directory: Path) -> bool:
    """All artifacts present with the sizes the manifest recorded (cheap: no hashing)."""
    try:
        manifest = json.loads((directory / MANIFEST).read_text())
        return all(
            (directory / name).stat().st_size == manifest["artifacts"][name]["size"]
            for name in ARTIFACTS
        )
    except (OSError, ValueError, KeyError, TypeError):
        return False


def find_image(options: ImageOptions) -> Image | None:
    """The stored image built from exactly these options and files, if there is one."""
    directory = options.store / inputs_hash(image_inputs(options))
    if is_complete(directory):
        return load_image(directory)
    return None


def list_images(store: Path) -> list[Image]:
    """Complete images in the store, newest first."""
    images = []
    if store.is_dir():
        for directory in store.iterdir():
            if directory.is_dir() and not directory.name.startswith((".", "failed-")) \
                    and is_complete(directory):
                images.append(load_image(directory))
    images.sort(key=lambda i: str(i.manifest.get("built_at", "")), reverse=True)
    return images


def resolve_image(store: Path, ref: str) -> Image:
    """An image by hash (or unique prefix of it), or "latest"."""
    images = list_images(store)
    if ref == "latest":
        if not images:
            raise UsageError(f"no image in {store}", hint="tempest-live-ci image build")
        return images[0]
    matches = [i for i in images if i.hash.startswith(ref)]
    if len(matches) != 1:
        problem = "no image" if not matches else f"{len(matches)} images"
        raise UsageError(f"{problem} matching {shown(ref)} in {store}")
    return matches[0]


def prune_images(store: Path, keep: int) -> list[Path]:
    """Remove all but the `keep` newest images, and the logs of failed builds."""
    removed = []
    for image in list_images(store)[keep:]:
        shutil.rmtree(image.directory)
        removed.append(image.directory)
    if store.is_dir():
        for directory in store.iterdir():
            if directory.name.startswith("failed-"):
                shutil.rmtree(directory)
                removed.append(directory)
    for path in removed:
        log.info("removed %s", path)
    return removed
