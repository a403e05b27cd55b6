"""What an image build takes (ImageOptions) and what it gives (Image)."""

from __future__ import annotations

import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tempest_live_ci import paths
from tempest_live_ci.deploy.profiles import PROFILES, get_profile
from tempest_live_ci.errors import UsageError, shown
from tempest_live_ci.inputs import check_regular, read_regular

SUITES = ("bookworm", "trixie", "sid")
DEFAULT_SUITE = "trixie"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Level ranges mksquashfs accepts; xz and lz4 take no level.
COMPRESSION_LEVELS: dict[str, tuple[int, int] | None] = {
    "zstd": (1, 22),
    "xz": None,
    "lz4": None,
    "gzip": (1, 9),
}
# zstd-3 compressed the chroot in 2.9 s against 75 s for xz, for 30 % more bytes
# that download at ~70 MB/s on the testbed bridge.
DEFAULT_COMPRESSION = "zstd"
DEFAULT_LEVEL = {"zstd": 3}
APT_PROXY_AUTO = "auto"
# Debian policy 5.6.1: lower case letters, digits, + - . ; at least two
# characters, starting with an alphanumeric.
# The patterns are applied with fullmatch(): with match(), `$` lets a
# trailing newline through.
_PACKAGE_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
# What a mirror or proxy URL may hold: it ends up in live-build's auto/config
# (a shell script run as root), in apt's configuration and on command lines.
_URL_CHARACTERS = re.compile(r"[A-Za-z0-9._~:/%+@\[\]-]+")
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")
_USERINFO = re.compile(r"[A-Za-z0-9._~%+-]+")


def url_problem(value: str) -> str | None:
    """Why `value` is not an acceptable http(s) URL for a mirror or proxy; None if it is.

    Strict on purpose: a scheme, a host name or address, an optional port,
    user and path of letters, digits and -._~/%+: only. No query, no
    fragment, no `..` segment, nothing a shell or a configuration file would
    read as syntax.
    """
    if not isinstance(value, str) or not value:
        return "empty"
    if not _URL_CHARACTERS.fullmatch(value):
        bad = sorted({c for c in value if not _URL_CHARACTERS.fullmatch(c)})
        return f"holds {shown(''.join(bad), 20)} (letters, digits and -._~:/%+@ only)"
    try:
        parts = urllib.parse.urlsplit(value)
        port = parts.port
    except ValueError as e:
        return str(e)
    if parts.scheme not in ("http", "https"):
        return "not an http:// or https:// URL"
    if parts.query or parts.fragment or value.endswith(("?", "#")):
        return "a query or fragment"
    host = parts.hostname
    if not host:
        return "no host"
    if host.startswith("["):
        host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.fullmatch(host):
            return f"{shown(host)} is not a host name"
    if port is not None and not 0 < port < 65536:
        return f"port {port} out of range"
    for part in (parts.username, parts.password):
        if part is not None and part != "" and not _USERINFO.fullmatch(part):
            return "a malformed user or password"
    if ".." in parts.path.split("/") or "//" in parts.path:
        return "a path with '..' or '//'"
    return None


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
    compression: str = DEFAULT_COMPRESSION
    compression_level: int | None = None
    output: Path | None = None
    ssh_key: Path | None = None
    rebuild: bool = False
    # False: the archive's Release may be past its Valid-Until (a snapshot, a
    # frozen mirror). Every apt of the build reads it so; not an input of the
    # image (the same packages make the same image).
    check_valid_until: bool = True

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


def cli_option(key: str) -> str:
    return f"--{key}"


def validate(options: ImageOptions, *, option: Callable[[str], str] = cli_option) -> None:
    """Raise UsageError naming the first bad option and its value; touches nothing.

    option(key) is how a key is named in the message: "--mirror" on the
    command line (the default), "image.mirror" for a job file.
    """
    if options.suite not in SUITES:
        raise UsageError(f"{option('suite')} {shown(options.suite)}: unknown suite "
                         f"(one of {', '.join(SUITES)})")
    problem = url_problem(options.mirror)
    if problem is not None:
        raise UsageError(f"{option('mirror')} {shown(options.mirror)}: not a usable http:// or "
                         f"https:// URL: {problem}")
    proxy = options.apt_proxy
    if proxy is not None and proxy != APT_PROXY_AUTO:
        problem = url_problem(proxy)
        if problem is not None:
            raise UsageError(f"{option('apt-proxy')} {shown(proxy)}: not a URL (or 'auto', or "
                             f"'none'): {problem}")
    for name in options.packages:
        if not isinstance(name, str) or not _PACKAGE_NAME.fullmatch(name):
            raise UsageError(f"{option('packages')}: {shown(name)} is not a Debian package name")
    if options.profile is not None and options.profile not in PROFILES:
        raise UsageError(f"{option('profile')} {shown(options.profile)}: unknown profile "
                         f"(one of {', '.join(PROFILES)})")
    if options.compression not in COMPRESSION_LEVELS:
        raise UsageError(
            f"{option('compression')} {shown(options.compression)}: unknown "
            f"(one of {', '.join(COMPRESSION_LEVELS)})")
    levels = COMPRESSION_LEVELS[options.compression]
    if options.compression_level is not None:
        if levels is None:
            raise UsageError(
                f"{option('compression-level')} {options.compression_level}: "
                f"{options.compression} takes no level")
        low, high = levels
        if not low <= options.compression_level <= high:
            raise UsageError(
                f"{option('compression-level')} {options.compression_level}: "
                f"{options.compression} takes {low} to {high}")
    if options.ssh_key is not None:
        for key in (options.ssh_key, options.ssh_public_key):
            assert key is not None
            if not os.path.lexists(key) or not os.access(key, os.R_OK, follow_symlinks=False):
                raise UsageError(f"{option('ssh-key')}: cannot read {key}",
                                 hint="give a private key whose public key is next to it as .pub")
            check_regular(key, option("ssh-key"))
        public = options.ssh_public_key
        assert public is not None
        if not read_regular(public, option("ssh-key"), limit=64 * 1024).startswith(
                (b"ssh-", b"ecdsa-", b"sk-")):
            raise UsageError(f"{option('ssh-key')}: {public} is not an OpenSSH public key")
    if options.output is not None and options.output.exists() and not options.output.is_dir():
        raise UsageError(f"{option('output')} {options.output}: not a directory")


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
