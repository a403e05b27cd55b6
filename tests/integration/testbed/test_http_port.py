"""An isolated testbed on --http-port 8080: a client on its bridge follows what DHCP and
boot.ipxe tell it, over real HTTP, as iPXE and live-boot would."""

from __future__ import annotations

from pathlib import Path

from tempest_live_ci.testbed.config import TestbedConfig, new_run_id
from tempest_live_ci.testbed.lifecycle import create_testbed, teardown_testbed
from tempest_live_ci.vm.bootfiles import publish_boot_files
from tests.conftest import Dirs, needs_root
from tests.integration.testbed.clients import client_on_bridge

pytestmark = [needs_root]

GUEST_MAC = "52:54:00:12:34:80"


def test_the_boot_chain_works_on_port_8080(dirs: Dirs, no_leaks: None, tmp_path: Path) -> None:
    config = TestbedConfig(name=new_run_id(), guest_mac=GUEST_MAC, apt_proxy=False,
                           http_port=8080)
    testbed = create_testbed(config)
    try:
        files = {}
        for name in ("vmlinuz", "initrd.img", "filesystem.squashfs"):
            files[name] = tmp_path / name
            files[name].write_bytes(name.encode() * 1000)
        publish_boot_files(testbed, vmlinuz=files["vmlinuz"], initrd=files["initrd.img"],
                           squashfs=files["filesystem.squashfs"], cmdline="boot=live quiet")
        with client_on_bridge(testbed, GUEST_MAC) as client:
            # Option 77 (user class) = "iPXE": the client gets the boot script's URL.
            lease = client.dhcp(tmp_path, "-x", "0x4d:69505845")
            assert lease.get("boot_file") == "http://192.168.100.1:8080/boot.ipxe"
            client.run("ip", "addr", "add", f"{lease['ip']}/24", "dev", client.interface)
            script = client.run("curl", "-fsS", lease["boot_file"]).stdout.splitlines()
            kernel_line = next(line.split() for line in script if line.startswith("kernel "))
            initrd_line = next(line.split() for line in script if line.startswith("initrd "))
            fetch = next(a for a in kernel_line if a.startswith("fetch="))[len("fetch="):]
            for url, name in ((kernel_line[1], "vmlinuz"), (initrd_line[1], "initrd.img"),
                              (fetch, "filesystem.squashfs")):
                got = tmp_path / f"got-{name}"
                client.run("curl", "-fsS", "-o", str(got), url)
                assert got.read_bytes() == files[name].read_bytes(), url
        assert '"GET /img/filesystem.squashfs HTTP/1.1" 200' in testbed.http_log.read_text()
    finally:
        teardown_testbed(config.name)
