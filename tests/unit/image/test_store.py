"""The image store: list, show, prune; only complete images count."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

from tempest_live_ci.image.cache import is_complete, list_images, load_image
from tests.conftest import Dirs

Tlc = Callable[..., subprocess.CompletedProcess[str]]


def store_image(store: Path, digest: str, built_at: str, *, generated_key: bool = True) -> Path:
    """An image directory as build_image leaves it (small artifacts: the store does not care)."""
    directory = store / digest
    directory.mkdir(parents=True)
    artifacts = {}
    for name in ("vmlinuz", "initrd.img", "filesystem.squashfs"):
        (directory / name).write_bytes(name.encode() * 10)
        artifacts[name] = {"path": name, "size": len(name) * 10, "sha256": "0" * 64}
    manifest = {
        "hash": digest, "built_at": built_at, "suite": "trixie", "artifacts": artifacts,
        "inputs": {"packages": [], "compression": "zstd"},
        "host_key": "ssh-ed25519 AAAAC3Nza root@tempest-live-ci",
        "host_key_fingerprint": "SHA256:abc", "kernel_cmdline": "boot=live components",
        "ssh_key_generated": generated_key,
        "ssh_private_key": "/elsewhere/ssh/id_ed25519",
        "ssh_private_key_relative": "ssh/id_ed25519",
    }
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def test_incomplete_images_do_not_count(tmp_path: Path) -> None:
    good = store_image(tmp_path, "aaaa000000000001", "2026-01-01T00:00:00+00:00")
    broken = store_image(tmp_path, "aaaa000000000002", "2026-01-02T00:00:00+00:00")
    (broken / "filesystem.squashfs").write_bytes(b"truncated")
    missing = store_image(tmp_path, "aaaa000000000003", "2026-01-03T00:00:00+00:00")
    (missing / "initrd.img").unlink()
    (tmp_path / ".build-aaaa000000000004-xyz").mkdir()
    assert is_complete(good) and not is_complete(broken) and not is_complete(missing)
    assert [i.hash for i in list_images(tmp_path)] == ["aaaa000000000001"]


def test_a_generated_key_moves_with_the_image(tmp_path: Path) -> None:
    image = load_image(store_image(tmp_path, "bbbb000000000001", "2026-01-01T00:00:00+00:00"))
    assert image.ssh_private_key == tmp_path / "bbbb000000000001" / "ssh" / "id_ed25519"
    users = load_image(store_image(tmp_path, "bbbb000000000002", "2026-01-01T00:00:00+00:00",
                                   generated_key=False))
    assert users.ssh_private_key == Path("/elsewhere/ssh/id_ed25519")


def test_list_show_prune(tlc: Tlc, dirs: Dirs) -> None:
    store = dirs.cache / "images"
    for day in range(1, 5):
        store_image(store, f"cccc00000000000{day}", f"2026-01-0{day}T00:00:00+00:00")
    failed = store / "failed-dddd000000000001"
    failed.mkdir()
    (failed / "build.log").write_text("E: boom\n")

    listed = json.loads(tlc("image", "list", "--json", check=True).stdout)
    assert [i["hash"] for i in listed] == [f"cccc00000000000{d}" for d in (4, 3, 2, 1)]
    assert "cccc000000000004" in tlc("image", "list", check=True).stdout

    latest = json.loads(tlc("image", "show", check=True).stdout)
    assert latest["hash"] == "cccc000000000004"
    assert latest["directory"] == str(store / "cccc000000000004")
    by_prefix = json.loads(tlc("image", "show", "cccc000000000002", check=True).stdout)
    assert by_prefix["hash"] == "cccc000000000002"
    ambiguous = tlc("image", "show", "cccc")
    assert ambiguous.returncode == 20 and "4 images matching 'cccc'" in ambiguous.stderr

    tlc("image", "prune", "--keep", "2", check=True)
    assert sorted(p.name for p in store.iterdir()) == ["cccc000000000003", "cccc000000000004"]
    assert tlc("image", "prune", "--keep", "-1").returncode == 20


def test_a_built_squashfs_is_roots_only(tmp_path: Path) -> None:
    """It holds the guest's SSH host private key: live-build's 0644 becomes 0600 as the
    artifacts are collected (the kernel and initrd hold no secret: left as they are)."""
    import stat

    from tempest_live_ci.image.cache import ARTIFACTS
    from tempest_live_ci.image.livebuild import _collect_artifacts

    live = tmp_path / "lb" / "binary" / "live"
    live.mkdir(parents=True)
    for name in ARTIFACTS:
        (live / name).write_bytes(b"not an image\n")
        (live / name).chmod(0o644)
    image = tmp_path / "image"
    image.mkdir()
    _collect_artifacts(tmp_path / "lb", image, tmp_path / "build.log")
    modes = {name: stat.S_IMODE((image / name).stat().st_mode) for name in ARTIFACTS}
    assert modes == {"vmlinuz": 0o644, "initrd.img": 0o644, "filesystem.squashfs": 0o600}
