"""Bad options: exit 20 naming the culprit, before anything is done."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.conftest import Dirs

Tlc = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.parametrize(("args", "culprit"), [
    (["--suite", "potato"], "--suite 'potato'"),
    (["--compression", "bzip2"], "--compression 'bzip2'"),
    (["--compression", "xz", "--compression-level", "6"], "xz takes no level"),
    (["--compression-level", "23"], "zstd takes 1 to 22"),
    (["--compression", "gzip", "--compression-level", "0"], "gzip takes 1 to 9"),
    (["--packages", "vim,Not_A_Package"], "'Not_A_Package' is not a Debian package name"),
    (["--packages", "vim; rm -rf /"], "'vim;' is not a Debian package name"),
    (["--mirror", "ftp.debian.org"], "--mirror 'ftp.debian.org'"),
    (["--apt-proxy", "localhost"], "--apt-proxy 'localhost'"),
    (["--ssh-key", "/nonexistent/id_ed25519"], "cannot read /nonexistent/id_ed25519"),
    (["--compression-level", "three"], "three"),
])
def test_bad_options_exit_20(tlc: Tlc, dirs: Dirs, args: list[str], culprit: str) -> None:
    result = tlc("image", "build", *args)
    assert result.returncode == 20, result.stderr
    assert culprit in result.stderr
    assert result.stdout == ""
    assert not dirs.cache.exists(), "a rejected build touched the cache"
    assert not dirs.state.exists(), "a rejected build touched the state directory"


def test_private_key_without_public_key(tlc: Tlc, dirs: Dirs, tmp_path: Path) -> None:
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key], check=True)
    Path(f"{key}.pub").unlink()
    result = tlc("image", "build", "--ssh-key", str(key))
    assert result.returncode == 20
    assert f"cannot read {key}.pub" in result.stderr


def test_show_unknown_image(tlc: Tlc) -> None:
    result = tlc("image", "show", "0123abcd")
    assert result.returncode == 20
    assert "no image matching '0123abcd'" in result.stderr
    latest = tlc("image", "show")
    assert latest.returncode == 20 and "no image in" in latest.stderr


def test_list_of_an_empty_store_is_empty(tlc: Tlc) -> None:
    result = tlc("image", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
