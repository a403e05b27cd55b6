"""An isolated testbed, exercised by a client machine on its bridge: real
dnsmasq, real DHCP client, real TFTP and HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tempest_live_ci.errors import TestbedError
from tempest_live_ci.testbed.config import TestbedConfig, new_run_id
from tempest_live_ci.testbed.lifecycle import create_testbed, teardown_testbed
from tempest_live_ci.testbed.model import Testbed
from tests.conftest import Dirs, needs_root
from tests.integration.testbed.clients import client_on_bridge, sh

pytestmark = [needs_root]

GUEST_MAC = "52:54:00:12:34:56"


@pytest.fixture
def testbed(dirs: Dirs, no_leaks: None) -> Iterator[Testbed]:
    config = TestbedConfig(name=new_run_id(), guest_mac=GUEST_MAC, apt_proxy=False)
    tb = create_testbed(config)
    try:
        yield tb
    finally:
        teardown_testbed(config.name)


def test_guest_mac_gets_the_fixed_address_and_legacy_pxe_gets_undionly(
        testbed: Testbed, tmp_path: Path) -> None:
    with client_on_bridge(testbed, GUEST_MAC) as client:
        lease = client.dhcp(tmp_path)
    assert lease.get("ip") == "192.168.100.2"
    assert lease.get("serverid") == "192.168.100.1"
    assert lease.get("boot_file") == "undionly.kpxe"
    # No router and no DNS offered: the guest reaches nothing but the testbed.
    assert "router" not in lease
    assert "dns" not in lease
    assert "DHCPACK(tempestbr) 192.168.100.2 52:54:00:12:34:56" in testbed.dnsmasq_log.read_text()


def test_other_mac_gets_nothing(testbed: Testbed, tmp_path: Path) -> None:
    with client_on_bridge(testbed, "52:54:00:aa:bb:cc") as client:
        assert client.dhcp(tmp_path) == {}
    assert "no address available" in testbed.dnsmasq_log.read_text()


def test_ipxe_user_class_gets_the_http_boot_script(testbed: Testbed, tmp_path: Path) -> None:
    with client_on_bridge(testbed, GUEST_MAC) as client:
        # Option 77 (user class) = "iPXE", as iPXE sends it.
        lease = client.dhcp(tmp_path, "-x", "0x4d:69505845")
    assert lease.get("boot_file") == "http://192.168.100.1/boot.ipxe"


def test_uefi_client_gets_ipxe_efi(testbed: Testbed, tmp_path: Path) -> None:
    with client_on_bridge(testbed, GUEST_MAC) as client:
        # Option 93 (client architecture) = 7: x86-64 UEFI.
        lease = client.dhcp(tmp_path, "-x", "0x5d:0007")
    assert lease.get("boot_file") == "ipxe.efi"


def test_tftp_serves_ipxe_and_http_serves_the_boot_directory(
        testbed: Testbed, tmp_path: Path) -> None:
    (testbed.http_root / "img").mkdir(parents=True)
    payload = bytes(range(256)) * 4096
    (testbed.http_root / "img" / "blob").write_bytes(payload)
    (testbed.http_root / "boot.ipxe").write_text("#!ipxe\nboot\n")
    with client_on_bridge(testbed, GUEST_MAC, "192.168.100.2/24") as client:
        got = tmp_path / "undionly.kpxe"
        client.run("busybox", "tftp", "-g", "-r", "undionly.kpxe", "-l", str(got), "192.168.100.1")
        assert got.read_bytes() == Path("/usr/lib/ipxe/undionly.kpxe").read_bytes()
        script = client.run("curl", "-fsS", "http://192.168.100.1/boot.ipxe").stdout
        assert script.startswith("#!ipxe")
        blob = tmp_path / "blob"
        client.run("curl", "-fsS", "-o", str(blob), "http://192.168.100.1/img/blob")
        assert blob.read_bytes() == payload
        missing = client.run("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                             "http://192.168.100.1/img/nothing", check=False).stdout
        assert missing == "404"
    # Every request is in the log: it is how the VM runner follows the boot.
    http_log = testbed.http_log.read_text()
    assert '"GET /img/blob HTTP/1.1" 200' in http_log
    assert '"GET /img/nothing HTTP/1.1" 404' in http_log
    assert "undionly.kpxe" in testbed.dnsmasq_log.read_text()


def test_http_server_is_bound_to_the_bridge_address_only(testbed: Testbed) -> None:
    assert testbed.netns is not None
    out = sh("ip", "netns", "exec", testbed.netns, "ss", "-Hltn").stdout
    listeners = {line.split()[3] for line in out.splitlines()}
    assert "192.168.100.1:80" in listeners
    assert not any(a.startswith(("0.0.0.0:", "*:", "[::]:")) for a in listeners)


def test_teardown_removes_everything_and_is_safe_twice(dirs: Dirs, no_leaks: None) -> None:
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    tb = create_testbed(config)
    pids = [int(p.read_text()) for p in tb.state_dir.glob("*.pid")]
    assert len(pids) == 2
    removed = teardown_testbed(config.name)
    assert any("dnsmasq" in r for r in removed)
    assert teardown_testbed(config.name) == []
    assert not tb.state_dir.exists()
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists()
    assert config.name not in sh("ip", "netns", "list").stdout


def test_a_failed_setup_leaves_nothing(dirs: Dirs, no_leaks: None) -> None:
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    # dnsmasq fails late in the setup (after the namespace, links and the
    # HTTP server exist) when it cannot write its lease file.
    (dirs.state / config.name / "dnsmasq.leases").mkdir(parents=True)
    with pytest.raises(TestbedError, match="dnsmasq"):
        create_testbed(config)
    assert not (dirs.state / config.name).exists()
    assert config.name not in sh("ip", "netns", "list").stdout
