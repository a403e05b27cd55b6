"""Persistent mode, in a throwaway namespace standing in for the host: the CLI
runs under `ip netns exec`, so "the host namespace" it changes is that one."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from tests.conftest import Dirs, needs_root
from tests.integration.testbed.clients import sh, snapshot, tlc_in

pytestmark = [needs_root]


def test_setup_is_idempotent_and_teardown_restores_the_host(fake_host: str, dirs: Dirs) -> None:
    before = snapshot(fake_host)
    args = ("host", "setup", "--nat", "--no-apt-proxy")
    first = tlc_in(fake_host, dirs, *args)
    assert first.returncode == 0, first.stderr
    assert "veth" in first.stderr
    after_first = snapshot(fake_host)
    assert "tempestbr" in after_first and "tempesttap" in after_first
    # The default names and addresses of the tool this one replaces.
    addr = sh("ip", "-n", fake_host, "-br", "addr", "show", "dev", "tempestbr").stdout
    assert "192.168.100.1/24" in addr and "fd74:6c63:0:1::1/64" in addr

    table = sh("ip", "netns", "exec", fake_host, "nft", "list", "table", "inet",
               "tempest_live_ci_tempest").stdout
    assert 'ip saddr 192.168.100.0/24 oifname "uplink0" masquerade' in table
    assert 'ip6 saddr fd74:6c63:0:1::/64 oifname "uplink0" masquerade' in table
    assert "net.ipv4.ip_forward = 1" in after_first

    second = tlc_in(fake_host, dirs, *args)
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stderr
    assert snapshot(fake_host) == after_first

    status = tlc_in(fake_host, dirs, "host", "status")
    assert status.returncode == 0 and "tempest: up" in status.stdout

    other = tlc_in(fake_host, dirs, "host", "setup", "--no-apt-proxy", "--host-address",
                   "192.168.101.1/24")
    assert other.returncode == 20 and "other settings" in other.stderr

    down = tlc_in(fake_host, dirs, "host", "teardown")
    assert down.returncode == 0, down.stderr
    assert snapshot(fake_host) == before
    again = tlc_in(fake_host, dirs, "host", "teardown")
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_nat_removal_keeps_other_rules(fake_host: str, dirs: Dirs) -> None:
    sh("ip", "netns", "exec", fake_host, "nft", "add", "table", "inet", "someone_else")
    sh("ip", "netns", "exec", fake_host, "nft", "add", "chain", "inet", "someone_else", "input",
       "{ type filter hook input priority 0; policy accept; }")
    before = snapshot(fake_host)
    assert tlc_in(fake_host, dirs, "host", "setup", "--nat", "--no-apt-proxy").returncode == 0
    assert tlc_in(fake_host, dirs, "host", "teardown").returncode == 0
    assert snapshot(fake_host) == before
    assert "someone_else" in before


def test_status_reports_a_dead_daemon(fake_host: str, dirs: Dirs) -> None:
    assert tlc_in(fake_host, dirs, "host", "setup", "--no-apt-proxy").returncode == 0
    try:
        pid = int((dirs.state / "tempest" / "dnsmasq.pid").read_text())
        os.kill(pid, 9)
        status = tlc_in(fake_host, dirs, "host", "status")
        assert status.returncode == 16
        assert "MISSING process" in status.stdout and "(dnsmasq)" in status.stdout
        # A second setup repairs it.
        repair = tlc_in(fake_host, dirs, "host", "setup", "--no-apt-proxy")
        assert repair.returncode == 0 and "incomplete" in repair.stderr
        assert tlc_in(fake_host, dirs, "host", "status").returncode == 0
    finally:
        tlc_in(fake_host, dirs, "host", "teardown")


def as_nobody(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           *argv], capture_output=True, text=True, timeout=30)


def test_the_published_squashfs_is_roots_only(fake_host: str, dirs: Dirs, tmp_path: Path) -> None:
    """The squashfs holds the guest's SSH host private key: no local user but root reads it,
    where the persistent testbed publishes it (a hard link) nor in the image store; the
    testbed's HTTP server (root) still serves it. The image is a store entry as an image
    stored before this was made (world-readable); published as a run publishes it."""
    from tempest_live_ci.testbed.lifecycle import load_testbed
    from tempest_live_ci.vm.bootfiles import IMAGE_DIR, publish_boot_files
    from tests.integration.runs import fake_image, job_file

    setup = tlc_in(fake_host, dirs, "host", "setup", "--no-apt-proxy")
    assert setup.returncode == 0, setup.stderr
    try:
        image = fake_image(job_file(tmp_path, mode="persistent", apt_proxy=False))
        squashfs = image / "filesystem.squashfs"
        assert as_nobody("cat", str(squashfs)).returncode == 0  # what it was
        _, testbed = load_testbed("tempest")
        publish_boot_files(testbed, vmlinuz=image / "vmlinuz", initrd=image / "initrd.img",
                           squashfs=squashfs, cmdline="boot=live")
        published = testbed.http_root / IMAGE_DIR
        for path in (published / "filesystem.squashfs", squashfs):
            denied = as_nobody("cat", str(path))
            assert denied.returncode != 0 and "Permission denied" in denied.stderr, \
                (path, denied.stdout, denied.stderr)
        # The directories stay open (kernel and initrd are no secret): nobody reads those.
        kernel = as_nobody("cat", str(published / "vmlinuz"))
        assert kernel.returncode == 0 and kernel.stdout == (image / "vmlinuz").read_text()
        served = sh("ip", "netns", "exec", fake_host, "curl", "-sS", "--max-time", "30",
                    f"{testbed.http_url}/{IMAGE_DIR}/filesystem.squashfs")
        assert served.stdout == squashfs.read_text()
    finally:
        down = tlc_in(fake_host, dirs, "host", "teardown")
        assert down.returncode == 0, down.stderr
