"""A real `lb build` of the default image through the apt proxy (slow: minutes, once per session).

The image comes from the session fixture live_image (tests/fixtures_image.py);
these tests check what it contains and that nothing of the build is left.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tempest_live_ci.image import Image
from tempest_live_ci.image.livebuild import mounts_under
from tests.conftest import TOP, needs_root
from tests.fixtures_image import PROFILE, TEST_CACHE_DIR, build_through_cli, image_env

pytestmark = [pytest.mark.slow, needs_root]


def squashfs_cat(image: Image, path: str) -> str:
    return subprocess.run(["unsquashfs", "-cat", image.squashfs, path],
                          capture_output=True, text=True, check=True).stdout


def squashfs_listing(image: Image) -> dict[str, str]:
    """path → mode string, from unsquashfs -lls."""
    out = subprocess.run(["unsquashfs", "-lls", image.squashfs], capture_output=True,
                         text=True, check=True).stdout
    listing = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[5].startswith("squashfs-root"):
            listing[fields[5].removeprefix("squashfs-root")] = line
    return listing


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def test_artifacts_and_manifest(live_image: Image) -> None:
    manifest = live_image.manifest
    assert live_image.directory == TEST_CACHE_DIR / "images" / live_image.hash
    assert manifest["hash"] == live_image.hash
    assert manifest["suite"] == "trixie"
    for name, path in (("vmlinuz", live_image.vmlinuz), ("initrd.img", live_image.initrd),
                       ("filesystem.squashfs", live_image.squashfs)):
        assert manifest["artifacts"][name]["size"] == path.stat().st_size > 1_000_000
        assert manifest["artifacts"][name]["sha256"] == sha256(path)
    names = {p["name"] for p in manifest["packages"]}
    assert {"live-boot", "live-config", "openssh-server", "python3", "eatmydata",
            "ca-certificates", "systemd-sysv", "zstd"} <= names
    assert all(p["version"] for p in manifest["packages"])
    assert manifest["inputs"]["compression"] == "zstd"
    assert manifest["inputs"]["compression_level"] == 3
    assert manifest["build_seconds"] > 0 and manifest["built_at"]
    assert manifest["tool_version"] and manifest["live_build_version"]
    cmdline = live_image.kernel_cmdline.split()
    assert "boot=live" in cmdline and "console=ttyS0,115200n8" in cmdline
    assert not any(word.startswith("fetch=") for word in cmdline)
    assert (live_image.directory / "build.log").is_file()


def test_ssh_keys(live_image: Image) -> None:
    # The user's side: a private key the runner can use, matching root's authorized key.
    assert live_image.ssh_private_key.is_file()
    assert live_image.ssh_private_key.stat().st_mode & 0o077 == 0
    public = subprocess.run(["ssh-keygen", "-y", "-f", live_image.ssh_private_key],
                            capture_output=True, text=True, check=True).stdout.split()[:2]
    authorized = squashfs_cat(live_image, "root/.ssh/authorized_keys").split()[:2]
    assert authorized == public
    # The host's side: the one host key in the image is the one in the manifest.
    host_public = squashfs_cat(live_image, "etc/ssh/ssh_host_ed25519_key.pub").strip()
    assert host_public == live_image.host_key
    printed = subprocess.run(["ssh-keygen", "-l", "-f", "-"], input=live_image.host_key,
                             capture_output=True, text=True, check=True).stdout.split()[1]
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", printed)
    assert printed == live_image.host_key_fingerprint
    host_private = squashfs_cat(live_image, "etc/ssh/ssh_host_ed25519_key")
    assert host_private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    listing = squashfs_listing(live_image)
    assert listing["/etc/ssh/ssh_host_ed25519_key"].startswith("-rw-------")
    assert listing["/root/.ssh"].startswith("drwx------")
    assert listing["/root/.ssh/authorized_keys"].startswith("-rw-------")
    assert not [p for p in listing if re.match(r"/etc/ssh/ssh_host_(rsa|ecdsa|dsa)_key", p)]


def test_sshd_and_boot_configuration(live_image: Image) -> None:
    sshd = squashfs_cat(live_image, "etc/ssh/sshd_config.d/tempest-live-ci.conf")
    assert "PermitRootLogin prohibit-password" in sshd
    assert "PasswordAuthentication no" in sshd
    assert "HostKey /etc/ssh/ssh_host_ed25519_key" in sshd
    assert "Include /etc/ssh/sshd_config.d/*.conf" in squashfs_cat(live_image,
                                                                   "etc/ssh/sshd_config")
    listing = squashfs_listing(live_image)
    # live-config regenerates no host key and creates no password account.
    components = [p for p in listing if p.startswith("/usr/lib/live/config/")]
    assert components and not [c for c in components if "openssh" in c or "user-setup" in c]
    for unit in ("apt-daily.timer", "networking.service", "man-db.timer"):
        assert listing[f"/etc/systemd/system/{unit}"].endswith("-> /dev/null"), unit
    assert "/usr/lib/systemd/system/ssh.service" in listing
    assert any(p.endswith(".pyc") for p in listing), "byte-compiled Python was removed"


def test_second_build_is_a_cache_hit(live_image: Image, live_image_state_dir: Path) -> None:
    # The archive is asked again (what it offers decides the image); nothing is built.
    result = build_through_cli(live_image_state_dir, *PROFILE, timeout=300)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()) == live_image.directory
    assert "up to date" in result.stderr and "lb " not in result.stderr
    shown = subprocess.run(
        [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "image", "show", live_image.hash],
        capture_output=True, text=True, env=image_env(live_image_state_dir), check=True)
    assert json.loads(shown.stdout)["host_key_fingerprint"] == live_image.host_key_fingerprint


def test_the_profile_is_preinstalled_and_held(live_image: Image) -> None:
    """keystone and tempest in the image at the versions the archive offered; keystone not
    started at boot (it is unconfigured until the run configures it)."""
    inputs = live_image.manifest["inputs"]
    assert inputs["profile"] == "identity"
    installed = {p["name"]: p["version"] for p in live_image.manifest["packages"]}
    for name in ("keystone", "python3-tempest", "keystone-tempest-plugin", "python3-tempestconf",
                 "crudini"):
        assert name in installed, name
        assert inputs["archive"][name] == installed[name], name
    listing = squashfs_listing(live_image)
    assert "/usr/lib/systemd/system/keystone.service" in listing
    assert not [p for p in listing if p.endswith(".wants/keystone.service")]


def test_the_build_left_nothing_behind(live_image: Image) -> None:
    store = live_image.directory.parent
    assert not mounts_under(store)
    assert not [p for p in store.iterdir() if p.name.startswith(".build-")
                and not _in_use(p)]


def _in_use(build_dir: Path) -> bool:
    """A concurrent session's build in progress (its lock file is held)."""
    import fcntl

    digest = build_dir.name.split("-")[1]
    with open(build_dir.parent / f".lock-{digest}", "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(lock, fcntl.LOCK_UN)
    return False


def _processes_using(directory: Path) -> list[int]:
    """Processes whose cwd or root is under directory (lb, chroot'ed apt or dpkg)."""
    top = str(directory)
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        for link in ("cwd", "root"):
            try:
                target = os.readlink(entry / link)
            except OSError:
                continue
            if target == top or target.startswith(top + "/"):
                found.append(int(entry.name))
                break
    return found


def test_failed_build_keeps_its_log_and_exits_16(live_image: Image, live_image_state_dir: Path,
                                                  tmp_path: Path) -> None:
    """A package that does not exist: lb fails; the log is kept, nothing is mounted or running."""
    store = tmp_path / "images"
    result = build_through_cli(live_image_state_dir, "--output", str(store),
                               "--packages", "tempest-live-ci-no-such-package")
    assert result.returncode == 16, result.stderr
    assert "lb chroot failed with exit status" in result.stderr
    assert "E: Unable to locate package tempest-live-ci-no-such-package" in result.stderr
    failed = [p for p in store.iterdir() if p.name.startswith("failed-")]
    assert len(failed) == 1
    log = (failed[0] / "build.log").read_text()
    assert "tempest-live-ci-no-such-package" in log
    assert f"full log: {failed[0] / 'build.log'}" in result.stderr
    assert [p.name for p in store.iterdir() if not p.name.startswith((".lock-", "failed-"))] == []
    assert not mounts_under(store)
    assert not _processes_using(store)


def test_interrupted_build_leaves_no_mounts_or_processes(live_image_state_dir: Path,
                                                        tmp_path: Path) -> None:
    store = tmp_path / "images"
    process = subprocess.Popen(
        [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "image", "build",
         "--output", str(store), "--packages", "less"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        env=image_env(live_image_state_dir))
    try:
        deadline = time.monotonic() + 600
        # Wait until live-build has the chroot's file systems mounted.
        while not (store.exists() and mounts_under(store)):
            assert process.poll() is None, process.communicate()[1]
            assert time.monotonic() < deadline, "live-build mounted nothing within 10 min"
            time.sleep(0.2)
        time.sleep(2)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert not mounts_under(store)
    assert not _processes_using(store)
    assert not [p for p in store.iterdir() if p.name.startswith(".build-")]
    assert not [p for p in store.iterdir() if len(p.name) == 16]
