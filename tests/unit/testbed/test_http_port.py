"""--http-port: every URL the guest is given carries the port (boot.ipxe, fetch=, DHCP)."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from tempest_live_ci.testbed import dnsmasq
from tempest_live_ci.testbed.config import TestbedConfig
from tempest_live_ci.testbed.model import Testbed
from tempest_live_ci.vm.bootfiles import boot_cmdline, publish_boot_files


def make_testbed(tmp_path: Path, port: int) -> Testbed:
    return Testbed(
        run_id="tlc-0000cafe", netns="tlc-0000cafe", bridge="tempestbr", tap="tempesttap",
        nic="tempestnic0", nic_kind="veth",
        host_interface=ipaddress.IPv4Interface("192.168.100.1/24"), host_ipv6=None,
        guest_address=ipaddress.IPv4Address("192.168.100.2"), guest_mac="52:54:00:7e:57:02",
        state_dir=tmp_path, http_root=tmp_path / "www", tftp_root=tmp_path / "tftp",
        dnsmasq_log=tmp_path / "dnsmasq.log", http_log=tmp_path / "http.log", apt_proxy=None,
        http_port=port)


def test_http_url_carries_a_port_other_than_80(tmp_path: Path) -> None:
    assert make_testbed(tmp_path, 8080).http_url == "http://192.168.100.1:8080"
    assert make_testbed(tmp_path, 80).http_url == "http://192.168.100.1"


def test_boot_script_and_fetch_use_the_port(tmp_path: Path) -> None:
    testbed = make_testbed(tmp_path, 8080)
    for name in ("vmlinuz", "initrd.img", "filesystem.squashfs"):
        (tmp_path / name).write_bytes(name.encode())
    url = publish_boot_files(testbed, vmlinuz=tmp_path / "vmlinuz",
                             initrd=tmp_path / "initrd.img",
                             squashfs=tmp_path / "filesystem.squashfs",
                             cmdline="boot=live console=ttyS0,115200n8")
    assert url == "http://192.168.100.1:8080/boot.ipxe"
    script = (testbed.http_root / "boot.ipxe").read_text().splitlines()
    kernel = next(line for line in script if line.startswith("kernel "))
    initrd = next(line for line in script if line.startswith("initrd "))
    assert kernel.split()[1] == "http://192.168.100.1:8080/img/vmlinuz"
    assert "fetch=http://192.168.100.1:8080/img/filesystem.squashfs" in kernel.split()
    assert initrd.split()[1] == "http://192.168.100.1:8080/img/initrd.img"
    assert "192.168.100.1/" not in "\n".join(script)
    assert boot_cmdline(testbed, "quiet") == \
        "quiet fetch=http://192.168.100.1:8080/img/filesystem.squashfs"


def test_dnsmasq_hands_out_the_boot_script_with_the_port(tmp_path: Path) -> None:
    config = TestbedConfig(name="tlc-0000cafe", http_port=8080)
    testbed = make_testbed(tmp_path, 8080)
    text = dnsmasq.render_config(config, tmp_path, tmp_path / "tftp",
                                 f"{testbed.http_url}/boot.ipxe")
    assert "dhcp-boot=tag:ipxe,http://192.168.100.1:8080/boot.ipxe" in text.splitlines()
