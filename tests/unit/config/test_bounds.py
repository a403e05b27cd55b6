"""Every bound a value is checked against, at its edges: the last value accepted on each
side and the first refused. No root needed: these run with -m 'not root' and in
dh_auto_test, where the bad-input corpus (root) does not."""

from __future__ import annotations

from typing import Any

import pytest

from tempest_live_ci.errors import UsageError
from tempest_live_ci.image.model import ImageOptions
from tempest_live_ci.image.model import validate as validate_image
from tempest_live_ci.job import parse_job
from tempest_live_ci.testbed.config import TestbedConfig, check_name, validate
from tempest_live_ci.vm.config import VMConfig

# (section, key): (accepted values at the edges, refused values just past them)
JOB_BOUNDS: dict[tuple[str, str], tuple[list[Any], list[Any]]] = {
    ("vm", "memory"): (["512M", "512MiB", "1G", "9999999M"], ["511M", "0G", "100M", "10"]),
    ("vm", "vcpus"): ([1, 256], [0, 257, -1]),
    ("vm", "dhcp_timeout"): ([1], [0, -1]),
    ("vm", "kernel_timeout"): ([1], [0]),
    ("vm", "ssh_timeout"): ([1], [0]),
    ("guest", "prepare_timeout"): ([1], [0]),
    ("guest", "install_timeout"): ([1], [0]),
    ("guest", "configure_timeout"): ([1], [0]),
    ("tempest", "concurrency"): ([1, 64], [0, 65]),
    ("tempest", "timeout"): ([1], [0]),
    ("tempest", "rerun_failures"): ([0, 5], [-1, 6, 50]),
    ("image", "compression_level"): ([1, 22], [0, 23]),
}


@pytest.mark.parametrize("section, key", list(JOB_BOUNDS), ids=[f"{s}.{k}" for s, k in JOB_BOUNDS])
def test_job_bounds(section: str, key: str) -> None:
    accepted, refused = JOB_BOUNDS[(section, key)]
    for value in accepted:
        job = parse_job({section: {key: value}}, "j.yaml", "j")
        assert getattr(getattr(job, section), key) == value
    for value in refused:
        with pytest.raises(UsageError) as e:
            parse_job({section: {key: value}}, "j.yaml", "j")
        assert e.value.message.startswith(f"j.yaml: {section}.{key}")
        assert repr(value) in e.value.message or str(value) in e.value.message


def test_the_memory_a_job_asks_for_is_what_the_guest_gets() -> None:
    for value, mib in (("512M", 512), ("6144M", 6144), ("8G", 8192), ("2GiB", 2048)):
        assert parse_job({"vm": {"memory": value}}, "j.yaml", "j").vm.memory_mib == mib


@pytest.mark.parametrize("compression, accepted, refused", [
    ("zstd", [1, 22], [0, 23]),
    ("gzip", [1, 9], [0, 10]),
    ("xz", [], [1]),
    ("lz4", [], [1]),
])
def test_compression_levels(compression: str, accepted: list[int], refused: list[int]) -> None:
    for level in accepted:
        validate_image(ImageOptions(compression=compression, compression_level=level))
    for level in refused:
        with pytest.raises(UsageError, match=rf"^--compression-level {level}: {compression} takes"):
            validate_image(ImageOptions(compression=compression, compression_level=level))


def test_vm_boot_options() -> None:
    VMConfig(memory_mib=512, vcpus=1)
    with pytest.raises(UsageError, match=r"^--memory 511: must be at least 512 MiB$"):
        VMConfig(memory_mib=511)
    with pytest.raises(UsageError, match=r"^--vcpus 0: must be at least 1$"):
        VMConfig(vcpus=0)


def test_testbed_options() -> None:
    for port in (1, 65535):
        validate(TestbedConfig(http_port=port))
    for port in (0, 65536, -1):
        with pytest.raises(UsageError, match=rf"^--http-port {port}: not a TCP port$"):
            validate(TestbedConfig(http_port=port), option=lambda k: f"--{k}")
    validate(TestbedConfig(nic="a" * 14))
    with pytest.raises(UsageError, match="interface name longer than 15"):
        validate(TestbedConfig(bridge="b" * 16))
    with pytest.raises(UsageError, match="leaves no room for its veth peer"):
        validate(TestbedConfig(nic="n" * 15))
    with pytest.raises(UsageError, match="/31 leaves no room for a guest"):
        validate(TestbedConfig(host_address="10.0.0.1/31"))
    validate(TestbedConfig(host_address="10.0.0.1/30", guest_address="10.0.0.2"))
    check_name("--run-id", "a" * 63, "run id")
    for bad in ("a" * 64, "..", "-x", "a/b", "a b", "tlc-1\n", ""):
        with pytest.raises(UsageError, match="not a valid run id"):
            check_name("--run-id", bad, "run id")
