"""What an image build takes (ImageOptions) and what it gives (Image)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tempest_live_ci import paths
from tempest_live_ci.errors import UsageError

SUITES = ("bookworm", "trixie", "sid")
DEFAULT_SUITE = "trixie"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Level ranges mksquashfs accepts; xz and lz4 take no level.
COMPRESSION_LEVELS: dict[str, tuple[int, int] | None] = {
    "zstd": (1, 22),
    "gzip": (1, 9),
    "xz": None,
    "lz4": None,
}
# zstd-3 compressed the chroot in 2.9 s against 75 s for xz, for 30 % more bytes
# that download at ~70 MB/s on the testbed bridge.
DEFAULT_LEVEL = {"zstd": 3}
APT_PROXY_AUTO = "auto"
# Debian policy 5.6.1: lower case letters, digits, + - . ; at least two
# characters, starting with an alphanumeric.
_PACKAGE_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


def images_dir() -> Path:
    return paths.cache_dir() / "images"


@dataclass(frozen=True)
class ImageOptions:
    """Everything that decides an image.

    apt_proxy is "auto" (the shared apt-cacher-ng of testbed.aptproxy), None
    (straight to the mirror) or the URL of an HTTP proxy to use. output is the
    directory holding images (default cache_dir()/images); the image itself is
    output/<hash>.
    """

    suite: str = DEFAULT_SUITE
    mirror: str = DEFAULT_MIRROR
    apt_proxy: str | None = APT_PROXY_AUTO
    packages: tuple[str, ...] = ()
    profile: str | None = None  # OpenStack profile preinstalled (deploy/profiles.py)
    compression: str = "zstd"
    compression_level: int | None = None
    output: Path | None = None
    ssh_key: Path | None = None
    rebuild: bool = False

    @property
    def store(self) -> Path:
        return self.output if self.output is not None else images_dir()

    @property
    def effective_compression_level(self) -> int | None:
        if self.compression_level is not None:
            return self.compression_level
        return DEFAULT_LEVEL.get(self.compression)

    @property
    def all_packages(self) -> tuple[str, ...]:
        """The extra packages and the preinstalled profile's, in that order."""
        names = list(self.packages)
        if self.profile is not None:
            from tempest_live_ci.deploy.profiles import get_profile

            names.extend(p for p in get_profile(self.profile).all_packages if p not in names)
        return tuple(names)

    @property
    def ssh_public_key(self) -> Path | None:
        return None if self.ssh_key is None else Path(f"{self.ssh_key}.pub")

    @property
    def security(self) -> bool:
        """sid has no security archive."""
        return self.suite != "sid"

    @property
    def security_mirror(self) -> str:
        base = self.mirror.rstrip("/")
        if base.endswith("/debian"):
            return base + "-security"
        return "http://deb.debian.org/debian-security"


def split_packages(values: Iterable[str]) -> tuple[str, ...]:
    """"a,b c" and repeated options → ("a", "b", "c"), order kept, duplicates dropped."""
    names: list[str] = []
    for value in values:
        for name in re.split(r"[,\s]+", value.strip()):
            if name and name not in names:
                names.append(name)
    return tuple(names)


def validate(options: ImageOptions) -> None:
    """Raise UsageError naming the first bad option; touches nothing."""
    if options.suite not in SUITES:
        raise UsageError(f"--suite {options.suite!r}: unknown suite (one of {', '.join(SUITES)})")
    if not _URL.match(options.mirror):
        raise UsageError(f"--mirror {options.mirror!r}: not an http:// or https:// URL")
    proxy = options.apt_proxy
    if proxy is not None and proxy != APT_PROXY_AUTO and not _URL.match(proxy):
        raise UsageError(
            f"--apt-proxy {options.apt_proxy!r}: not a URL (or 'auto', or 'none')")
    for name in options.packages:
        if not _PACKAGE_NAME.match(name):
            raise UsageError(f"--packages: {name!r} is not a Debian package name")
    if options.profile is not None:
        from tempest_live_ci.deploy.profiles import PROFILES

        if options.profile not in PROFILES:
            raise UsageError(f"--profile {options.profile!r}: unknown profile "
                             f"(one of {', '.join(PROFILES)})")
    if options.compression not in COMPRESSION_LEVELS:
        raise UsageError(
            f"--compression {options.compression!r}: unknown "
            f"(one of {', '.join(COMPRESSION_LEVELS)})")
    levels = COMPRESSION_LEVELS[options.compression]
    if options.compression_level is not None:
        if levels is None:
            raise UsageError(
                f"--compression-level {options.compression_level}: "
                f"{options.compression} takes no level")
        low, high = levels
        if not low <= options.compression_level <= high:
            raise UsageError(
                f"--compression-level {options.compression_level}: "
                f"{options.compression} takes {low} to {high}")
    if options.ssh_key is not None:
        for key in (options.ssh_key, options.ssh_public_key):
            assert key is not None
            if not key.is_file() or not os.access(key, os.R_OK):
                raise UsageError(f"--ssh-key: cannot read {key}",
                                 hint="give a private key whose public key is next to it as .pub")
        public = options.ssh_public_key
        assert public is not None
        if not public.read_text(errors="replace").startswith(("ssh-", "ecdsa-", "sk-")):
            raise UsageError(f"--ssh-key: {public} is not an OpenSSH public key")
    if options.output is not None and options.output.exists() and not options.output.is_dir():
        raise UsageError(f"--output {options.output}: not a directory")


@dataclass(frozen=True)
class Image:
    """A built image, as the VM runner uses it."""

    directory: Path
    hash: str
    vmlinuz: Path
    initrd: Path
    squashfs: Path
    ssh_private_key: Path
    host_key: str  # the public key line, e.g. "ssh-ed25519 AAAA... root@tempest-live-ci"
    host_key_fingerprint: str  # "SHA256:..." as ssh-keygen -lf prints it
    kernel_cmdline: str  # everything but fetch=, which the testbed adds
    manifest: Mapping[str, Any] = field(compare=False, hash=False, repr=False)
