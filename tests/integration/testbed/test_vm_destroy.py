"""`vm destroy` removes the guest's own testbed, never a persistent one it was booted on.

No guest is booted: the guest's record (vm.json) is written as boot_vm writes
it for a kept guest, with libvirt's test driver as its connection (its domain
is then "already gone"), and the CLI does the rest.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tempest_live_ci.testbed.config import TestbedConfig, new_run_id
from tempest_live_ci.testbed.journal import netns_exists
from tempest_live_ci.testbed.lifecycle import create_testbed, keep_testbed, load_testbed, teardown_testbed
from tempest_live_ci.testbed.model import Testbed
from tests.conftest import Dirs, needs_root
from tests.integration.testbed.clients import tlc_in

pytestmark = [needs_root]

Tlc = Callable[..., subprocess.CompletedProcess[str]]


def keep_a_guest(testbed: Testbed, dirs: Dirs) -> None:
    """What boot_vm(keep_on_failure=True) leaves behind for `vm ssh` and `vm destroy`."""
    pytest.importorskip("libvirt")
    from tempest_live_ci.vm.boot import VMState
    from tempest_live_ci.vm.domain import domain_name

    keep_testbed(testbed)
    VMState(run_id=testbed.run_id, uri="test:///default", domain=domain_name(testbed.run_id),
            address=str(testbed.guest_address), netns=testbed.netns,
            private_key=str(dirs.top / "id"), host_key="ssh-ed25519 AAAA",
            output_dir=str(dirs.top), private_libvirtd=False).write(testbed.state_dir)


def test_destroying_a_guest_of_a_persistent_testbed_leaves_the_testbed_up(
        fake_host: str, dirs: Dirs) -> None:
    setup = tlc_in(fake_host, dirs, "host", "setup", "--no-apt-proxy")
    assert setup.returncode == 0, setup.stderr
    try:
        # The testbed as a persistent job's run gets it: a run id of its own.
        _, testbed = load_testbed("tempest")
        assert testbed.name == "tempest" and testbed.persistent
        assert testbed.run_id != "tempest"
        keep_a_guest(testbed, dirs)
        destroyed = tlc_in(fake_host, dirs, "vm", "destroy", "--run-id", testbed.run_id)
        assert destroyed.returncode == 0, destroyed.stderr
        assert "left up" in destroyed.stderr
        status = tlc_in(fake_host, dirs, "host", "status")
        assert status.returncode == 0, status.stdout + status.stderr
        assert "tempest: up" in status.stdout
        assert not (testbed.state_dir / "vm.json").exists()
        assert not (testbed.state_dir / "keep").exists()
    finally:
        tlc_in(fake_host, dirs, "host", "teardown")


def test_destroying_a_guest_of_its_own_testbed_removes_the_testbed(tlc: Tlc, dirs: Dirs,
                                                                   no_leaks: None) -> None:
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    testbed = create_testbed(config)
    try:
        assert testbed.run_id == testbed.name == config.name and not testbed.persistent
        keep_a_guest(testbed, dirs)
        destroyed = tlc("vm", "destroy", "--run-id", config.name)
        assert destroyed.returncode == 0, destroyed.stderr
        assert not netns_exists(config.name)
        assert not testbed.state_dir.exists()
    finally:
        teardown_testbed(config.name)
