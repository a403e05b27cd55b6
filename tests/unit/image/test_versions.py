"""The installed versions an image's hash takes in, as dpkg knows them."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tempest_live_ci.image.cache import installed_version, live_build_version

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian host")


def _dpkg_status_field(package: str) -> str:
    """The Version field of `dpkg --status` (another way to ask dpkg than dpkg-query -W)."""
    out = subprocess.run(["dpkg", "--status", package], capture_output=True, text=True,
                         check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in out.splitlines()
                if line.startswith("Version:"))


def test_installed_version_is_dpkgs() -> None:
    # dpkg is installed on every Debian system; its version has digits and dots.
    assert installed_version("dpkg") == _dpkg_status_field("dpkg")
    if shutil.which("lb") is not None:
        assert live_build_version() == _dpkg_status_field("live-build")


def test_a_package_not_installed_is_unknown() -> None:
    assert installed_version("tempest-live-ci-no-such-package") == "unknown"
    # dpkg-query fails on a name that is not a package name at all: unknown too.
    assert installed_version("not a package") == "unknown"
