"""The image hash changes when any input changes, and only then."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest

from tempest_live_ci import paths
from tempest_live_ci.image.cache import image_inputs, inputs_hash
from tempest_live_ci.image.model import ImageOptions


def digest(options: ImageOptions) -> str:
    return inputs_hash(image_inputs(options))


@pytest.fixture
def data_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private copy of the data directory, so a test can change live-build/ files."""
    copy = tmp_path / "data"
    shutil.copytree(paths.data_dir() / "live-build", copy / "live-build", symlinks=True)
    shutil.copytree(paths.data_dir() / "host-setup", copy / "host-setup", symlinks=True)
    monkeypatch.setenv("TEMPEST_LIVE_CI_DATA_DIR", str(copy))
    return copy


def make_key(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", path], check=True)
    return path


def test_same_inputs_same_hash() -> None:
    assert digest(ImageOptions()) == digest(ImageOptions())
    assert len(digest(ImageOptions())) == 16


@pytest.mark.parametrize("change", [
    {"suite": "bookworm"},
    {"suite": "sid"},
    {"mirror": "http://ftp.fr.debian.org/debian"},
    {"packages": ("vim",)},
    {"compression": "xz"},
    {"compression": "lz4"},
    {"compression_level": 4},
    {"profile": "identity"},
])
def test_each_option_changes_the_hash(change: dict[str, object]) -> None:
    assert digest(dataclasses.replace(ImageOptions(), **change)) != digest(ImageOptions())


@pytest.mark.parametrize("same", [
    {"apt_proxy": None},
    {"apt_proxy": "http://proxy.example:3142"},
    {"rebuild": True},
    {"output": Path("/somewhere/else")},
    {"compression_level": 3},  # zstd's default level, spelled out
    {"mirror": "http://deb.debian.org/debian/"},  # trailing slash
])
def test_what_does_not_change_the_image_does_not_change_the_hash(same: dict[str, object]) -> None:
    assert digest(dataclasses.replace(ImageOptions(), **same)) == digest(ImageOptions())


def test_what_the_archive_offers_is_an_input() -> None:
    """A new upload of any package the profile pulls in makes a new image; the same archive
    the same image."""
    options = ImageOptions(profile="identity")
    today = {"keystone": "2:27.0.0-3+deb13u6", "python3-oslo.db": "17.2.0-1"}
    assert inputs_hash(image_inputs(options, today)) == inputs_hash(image_inputs(options, dict(today)))
    upload = {**today, "python3-oslo.db": "17.2.0-2"}
    assert inputs_hash(image_inputs(options, upload)) != inputs_hash(image_inputs(options, today))
    assert inputs_hash(image_inputs(options, today)) != digest(options)


def test_a_profile_adds_its_packages_to_the_image() -> None:
    options = ImageOptions(packages=("vim",), profile="identity")
    assert options.all_packages[0] == "vim"
    assert {"keystone", "python3-tempest", "python3-tempestconf"} <= set(options.all_packages)
    assert image_inputs(options)["profile_packages"] == list(options.all_packages[1:])


def test_package_order_matters_but_not_how_they_were_given() -> None:
    from tempest_live_ci.image.model import split_packages

    assert split_packages(["a,b", "c a"]) == ("a", "b", "c")
    assert digest(ImageOptions(packages=split_packages(["vim, curl"]))) == \
        digest(ImageOptions(packages=("vim", "curl")))


def test_the_users_key_is_an_input(tmp_path: Path) -> None:
    first = make_key(tmp_path / "one")
    second = make_key(tmp_path / "two")
    with_first = digest(ImageOptions(ssh_key=first))
    assert with_first != digest(ImageOptions())
    assert with_first != digest(ImageOptions(ssh_key=second))
    # The comment of the public key is not.
    pub = Path(f"{first}.pub")
    pub.write_text(" ".join(pub.read_text().split()[:2]) + " renamed@elsewhere\n")
    assert digest(ImageOptions(ssh_key=first)) == with_first


def test_every_live_build_file_is_an_input(data_copy: Path) -> None:
    before = digest(ImageOptions())
    files = [p for p in (data_copy / "live-build").rglob("*") if p.is_file()]
    assert len(files) >= 8
    for path in files:
        original = path.read_bytes()
        path.write_bytes(original + b"\n# changed\n")
        assert digest(ImageOptions()) != before, f"{path} is not part of the hash"
        path.write_bytes(original)
    assert digest(ImageOptions()) == before


def test_a_new_file_and_a_mode_change_are_inputs(data_copy: Path) -> None:
    before = digest(ImageOptions())
    hook = data_copy / "live-build" / "config" / "hooks" / "normal" / "0500-tempest-live-ci-boot.hook.chroot"
    hook.chmod(0o644)
    assert digest(ImageOptions()) != before
    hook.chmod(0o755)
    assert digest(ImageOptions()) == before
    extra = data_copy / "live-build" / "config" / "includes.chroot_after_packages" / "etc" / "motd"
    extra.write_text("hello\n")
    assert digest(ImageOptions()) != before


def test_host_setup_templates_are_not_image_inputs(data_copy: Path) -> None:
    before = digest(ImageOptions())
    conf = data_copy / "host-setup" / "apt-cacher-ng" / "acng.conf.j2"
    conf.write_text(conf.read_text() + "# changed\n")
    assert digest(ImageOptions()) == before
