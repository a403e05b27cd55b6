"""Every template renders with StrictUndefined, and `lb config` really accepts the result."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from tempest_live_ci import paths, render
from tempest_live_ci.image.cache import KERNEL_CMDLINE
from tempest_live_ci.image.livebuild import Mirrors, prepare_config, template_context
from tempest_live_ci.image.model import COMPRESSION_LEVELS, SUITES, ImageOptions
from tempest_live_ci.testbed import aptproxy
from tests.conftest import Dirs

PROXY = Mirrors("http://127.0.0.1:3142/debian/", "http://127.0.0.1:3142/debian-security/", None)
DIRECT = Mirrors("http://deb.debian.org/debian/", "http://deb.debian.org/debian-security/",
                 "http://proxy.example:3128")

VARIANTS = [
    (ImageOptions(suite=suite, compression=compression, packages=packages), mirrors)
    for suite in SUITES
    for compression in COMPRESSION_LEVELS
    for packages in ((), ("keystone", "python3-tempest"))
    for mirrors in (PROXY, DIRECT)
] + [(ImageOptions(suite="sid", check_valid_until=False), PROXY)]


def live_build_templates() -> list[str]:
    top = paths.data_dir()
    return sorted(p.relative_to(top).as_posix()
                  for p in (top / "live-build").rglob("*.j2"))


def test_there_are_templates() -> None:
    assert "live-build/auto/config.j2" in live_build_templates()
    assert "live-build/config/package-lists/tempest-live-ci.list.chroot.j2" in live_build_templates()


@pytest.mark.parametrize("template", live_build_templates())
def test_live_build_templates_render(template: str) -> None:
    for options, mirrors in VARIANTS:
        text = render.render(template, **template_context(options, mirrors))
        assert "{{" not in text and "{%" not in text


@pytest.mark.parametrize("template", live_build_templates())
def test_a_missing_variable_is_an_error(template: str) -> None:
    context = template_context(ImageOptions(), PROXY)
    for name in context:
        partial = {k: v for k, v in context.items() if k != name}
        try:
            render.render(template, **partial)
        except jinja2.UndefinedError:
            continue
        # Not every template uses every variable; those that do must fail without it.
        assert f"{name}" not in (paths.data_dir() / template).read_text()


def test_auto_config_is_valid_sh_with_the_options(tmp_path: Path) -> None:
    options = ImageOptions(suite="sid", compression="gzip", compression_level=6)
    prepare_config(tmp_path, options, DIRECT)
    script = tmp_path / "auto" / "config"
    subprocess.run(["sh", "-n", script], check=True)
    text = script.read_text()
    assert script.stat().st_mode & 0o111
    assert "--distribution sid" in text and "--security false" in text
    assert "--chroot-squashfs-compression-type gzip" in text
    assert "--chroot-squashfs-compression-level 6" in text
    assert "--apt-http-proxy http://proxy.example:3128" in text
    # Every value is one quoted shell word (render's shell_quote filter).
    assert f"--bootappend-live '{KERNEL_CMDLINE}'" in text
    xz = ImageOptions(compression="xz")
    prepare_config(tmp_path / "xz", xz, PROXY)
    assert "compression-level" not in (tmp_path / "xz" / "auto" / "config").read_text()


def test_an_archive_past_its_valid_until_reaches_every_apt_of_the_build(tmp_path: Path) -> None:
    """live-build's apt options (every apt-get of its bootstrap, chroot and binary stages)
    accept the expired Release only when the job says so."""
    prepare_config(tmp_path / "checked", ImageOptions(suite="sid"), PROXY)
    assert "--apt-options" not in (tmp_path / "checked" / "auto" / "config").read_text()
    prepare_config(tmp_path / "accepted", ImageOptions(suite="sid", check_valid_until=False),
                   PROXY)
    text = (tmp_path / "accepted" / "auto" / "config").read_text()
    assert "--apt-options '--yes -o Acquire::Retries=5 -o Acquire::Check-Valid-Until=false'" \
        in text


def _lb_config(directory: Path) -> dict[str, str]:
    values = {}
    for name in ("common", "bootstrap", "chroot", "binary"):
        for line in (directory / "config" / name).read_text().splitlines():
            key, sep, value = line.partition("=")
            if sep and key.startswith(("LB_", "APT_OPTIONS")):
                values[key] = value.strip('"')
    return values


@pytest.mark.skipif(shutil.which("lb") is None, reason="live-build is not installed")
def test_lb_config_accepts_it_and_keeps_our_hooks(tmp_path: Path) -> None:
    """The real `lb config` (no network): our values land in config/, our hooks are not replaced."""
    options = ImageOptions(suite="trixie", packages=("vim-tiny",))
    prepare_config(tmp_path, options, PROXY)
    result = subprocess.run(["lb", "config"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    values = _lb_config(tmp_path)
    assert values["LB_DISTRIBUTION"] == "trixie"
    assert values["LB_MIRROR_CHROOT"] == PROXY.build
    assert values["LB_MIRROR_BINARY"] == "http://deb.debian.org/debian/"
    assert values["LB_CHROOT_SQUASHFS_COMPRESSION_TYPE"] == "zstd"
    assert values["LB_CHROOT_SQUASHFS_COMPRESSION_LEVEL"] == "3"
    assert values["LB_IMAGE_TYPE"] == "netboot"
    assert values["LB_APT_RECOMMENDS"] == "false"
    hooks = tmp_path / "config" / "hooks" / "normal"
    for ours in ("8050-remove-openssh-server-host-keys.hook.chroot",
                 "9010-remove-python-pyc.hook.chroot", "0500-tempest-live-ci-boot.hook.chroot"):
        assert not (hooks / ours).is_symlink(), f"{ours} was replaced by live-build's"
        assert (hooks / ours).stat().st_mode & 0o111
    assert values["APT_OPTIONS"] == "--yes -o Acquire::Retries=5"  # live-build's own default
    accepted = tmp_path / "accepted"
    prepare_config(accepted, ImageOptions(suite="sid", check_valid_until=False), PROXY)
    result = subprocess.run(["lb", "config"], cwd=accepted, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert _lb_config(accepted)["APT_OPTIONS"] == \
        "--yes -o Acquire::Retries=5 -o Acquire::Check-Valid-Until=false"
    # live-build's other hooks are still linked in.
    assert (hooks / "8060-remove-systemd-machine-id.hook.chroot").is_symlink()
    packages = (tmp_path / "config" / "package-lists" / "tempest-live-ci.list.chroot").read_text()
    assert {"openssh-server", "python3", "eatmydata", "ca-certificates", "live-boot",
            "live-config", "vim-tiny"} <= set(packages.split())


def test_apt_cacher_ng_config_renders(dirs: Dirs, tmp_path: Path) -> None:
    conf_dir = aptproxy.render_config(tmp_path)
    text = (conf_dir / "acng.conf").read_text()
    assert "ForceManaged: 1" in text
    assert f"CacheDir: {dirs.cache / 'apt-cacher-ng'}" in text
    assert f"LogDir: {tmp_path / 'log'}" in text
    assert "BindAddress: 127.0.0.1" in text
    remaps = [line for line in text.splitlines() if line.startswith("Remap-")]
    assert [r.split(":")[0] for r in remaps] == ["Remap-debrep", "Remap-secdeb"]
    assert "/debian " in remaps[0] and "http://deb.debian.org/debian/" in remaps[0]
    assert "/debian-security " in remaps[1]
