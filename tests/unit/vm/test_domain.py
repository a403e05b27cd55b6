"""Domain XML rendering, checked by parsing it and by handing it to libvirt's test driver."""

from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import libvirt
import pytest

from tempest_live_ci.errors import UsageError
from tempest_live_ci.log import log
from tempest_live_ci.vm.config import DEFAULT_MEMORY_MIB, MIN_MEMORY_MIB, VMConfig
from tempest_live_ci.vm.domain import (
    HOST_RESERVE_MIB,
    METADATA_NS,
    DomainSpec,
    Keep,
    destroy_domain,
    guest_memory_mib,
    host_available_mib,
    is_running,
    metadata_of,
    render_domain_xml,
    start_domain,
)
from tests.conftest import Dirs


def spec(tmp_path: Path, **changes: object) -> DomainSpec:
    values: dict[str, object] = dict(
        name="tlc-run1", run_id="run1", state_dir=tmp_path / "state", domain_type="qemu",
        memory_mib=4096, vcpus=2, tap="tlctap", mac="52:54:00:7e:57:02", nic_model="virtio",
        boot="network", console_log=tmp_path / "out" / "console.log",
    )
    values.update(changes)
    return DomainSpec(**values)  # type: ignore[arg-type]


def test_tcg_network_boot(tmp_path: Path) -> None:
    root = ET.fromstring(render_domain_xml(spec(tmp_path)))
    assert root.get("type") == "qemu"
    assert root.findtext("memory") == "4096" and root.find("memory").get("unit") == "MiB"  # type: ignore[union-attr]
    assert root.findtext("vcpu") == "2"
    assert root.find("os/boot").get("dev") == "network"  # type: ignore[union-attr]
    assert root.find("os/kernel") is None
    cpu = root.find("cpu")
    assert cpu is not None and cpu.attrib == {"mode": "maximum", "migratable": "off"}
    nic = root.find("devices/interface")
    assert nic is not None and nic.get("type") == "ethernet"
    assert nic.find("target").attrib == {"dev": "tlctap", "managed": "no"}  # type: ignore[union-attr]
    assert nic.find("mac").get("address") == "52:54:00:7e:57:02"  # type: ignore[union-attr]
    assert nic.find("model").get("type") == "virtio"  # type: ignore[union-attr]
    serial = root.find("devices/serial")
    assert serial is not None and serial.get("type") == "file"
    assert serial.find("source").get("path") == str(tmp_path / "out" / "console.log")  # type: ignore[union-attr]
    assert root.find(f"metadata/{{{METADATA_NS}}}run/{{{METADATA_NS}}}id").text == "run1"  # type: ignore[union-attr]


def test_kvm_direct_boot_with_e1000(tmp_path: Path) -> None:
    cmdline = "boot=live components fetch=http://192.168.100.1/img/filesystem.squashfs a=b&c"
    root = ET.fromstring(render_domain_xml(spec(
        tmp_path, domain_type="kvm", boot="direct", nic_model="e1000",
        kernel=tmp_path / "vmlinuz", initrd=tmp_path / "initrd.img", cmdline=cmdline)))
    assert root.get("type") == "kvm"
    assert root.find("cpu").get("mode") == "host-passthrough"  # type: ignore[union-attr]
    assert root.find("os/boot") is None
    assert root.findtext("os/kernel") == str(tmp_path / "vmlinuz")
    assert root.findtext("os/initrd") == str(tmp_path / "initrd.img")
    assert root.findtext("os/cmdline") == cmdline
    assert root.find("devices/interface/model").get("type") == "e1000"  # type: ignore[union-attr]


def test_direct_boot_needs_kernel_and_initrd(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="kernel and an initrd"):
        render_domain_xml(spec(tmp_path, boot="direct"))


@pytest.mark.parametrize("changes, message", [
    ({"boot": "floppy"}, "boot mode 'floppy'"),
    ({"nic_model": "rtl8139"}, "NIC model 'rtl8139'"),
    ({"vcpus": 0}, "vcpus"),
    ({"memory_mib": 16}, "memory"),
])
def test_bad_vm_config_is_a_usage_error(changes: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        VMConfig(**changes)  # type: ignore[arg-type]


def test_an_explicit_memory_size_is_not_capped() -> None:
    # More than this host has free: the request stands, and libvirt says no.
    request = host_available_mib() * 4 + DEFAULT_MEMORY_MIB
    assert guest_memory_mib(request) == request


def test_memory_default_leaves_the_host_its_reserve() -> None:
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    log.addHandler(handler)
    try:
        before = host_available_mib()
        memory = guest_memory_mib(None)
        after = host_available_mib()
    finally:
        log.removeHandler(handler)
    # What the host had free, give or take what others used meanwhile.
    slack = abs(after - before) + 64
    room = max(MIN_MEMORY_MIB, before - HOST_RESERVE_MIB)
    assert MIN_MEMORY_MIB <= memory <= DEFAULT_MEMORY_MIB
    if memory == DEFAULT_MEMORY_MIB:
        assert room >= DEFAULT_MEMORY_MIB - slack
        assert warnings == []
    else:
        # Less than the default: the host's free memory less its reserve, and said so.
        assert abs(memory - room) <= slack
        assert warnings and f"the guest gets {memory} MiB instead of {DEFAULT_MEMORY_MIB}" \
            in warnings[0]


@pytest.mark.parametrize("domain_type, boot", [("qemu", "network"), ("qemu", "direct"),
                                                ("kvm", "network")])
def test_libvirt_test_driver_accepts_the_domain(tmp_path: Path, domain_type: str,
                                                boot: str, dirs: Dirs) -> None:
    # dirs: the domain's registry record goes to the test's own state directory.
    conn = libvirt.open("test:///default")
    try:
        xml = render_domain_xml(spec(tmp_path, domain_type=domain_type, boot=boot,
                                     kernel=tmp_path / "k", initrd=tmp_path / "i",
                                     cmdline="console=ttyS0"))
        with start_domain(conn, xml) as dom:
            assert is_running(dom)
            assert (metadata_of(dom) or {}).get("id") == "run1"
            back = ET.fromstring(dom.XMLDesc(0))
            assert back.get("type") == domain_type
            assert back.find("devices/interface/target").get("dev") == "tlctap"  # type: ignore[union-attr]
            name = dom.name()
        # Transient: destroyed means gone.
        assert name not in [d.name() for d in conn.listAllDomains()]
        destroy_domain(dom)  # twice is harmless
    finally:
        conn.close()


def test_keep_leaves_the_domain_running(tmp_path: Path, dirs: Dirs) -> None:
    conn = libvirt.open("test:///default")
    try:
        keep = Keep()
        xml = render_domain_xml(spec(tmp_path, name="tlc-kept"))
        with start_domain(conn, xml, keep=keep) as dom:
            keep.keep = True
        assert is_running(dom)
        destroy_domain(dom)
        assert "tlc-kept" not in [d.name() for d in conn.listAllDomains()]
    finally:
        conn.close()
