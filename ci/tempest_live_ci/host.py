"""`tempest-live-ci host setup|teardown|status`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import click

from tempest_live_ci.errors import ExitCode, UsageError
from tempest_live_ci.log import log
from tempest_live_ci.options import Renamed
from tempest_live_ci.testbed.config import (
    ISOLATED,
    NIC_KINDS,
    PERSISTENT,
    PHYSICAL,
    TestbedConfig,
    check_name,
    plain_key,
    require_root,
    validate,
)
from tempest_live_ci.testbed.lifecycle import (
    create_testbed,
    keep_testbed,
    load_testbed,
    preflight,
    teardown_testbed,
    testbed_dir,
)
from tempest_live_ci.testbed.lock import testbed_lock
from tempest_live_ci.testbed.status import list_testbeds, testbed_status
from tempest_live_ci.vm.nested import enable_nested_kvm

# Every default below is TestbedConfig's (testbed/config.py), the job's
# testbed section's too: one home for what a testbed is made of.
_DEFAULT = TestbedConfig()

# Seconds `host setup` and `host teardown` wait for a run (or another setup)
# to let go of the testbed: a setup takes a few seconds, a run hours.
SETUP_WAIT = 30.0


@click.group()
def host() -> None:
    """Set up, inspect and tear down the testbed network on this host."""


def _name_option(f: Any) -> Any:
    return click.option("--name", default=None,
                        help=f"Testbed name (default: {_DEFAULT.name}, or the --netns name).")(f)


def _testbed_option(f: Any) -> Any:
    """--name, or --netns (its old spelling here): the testbed a command looks at."""
    return click.option("--name", "--netns", "name", cls=Renamed, default=None, metavar="NAME",
                        help=f"Testbed name (default: {_DEFAULT.name}).")(f)


@host.command()
@_name_option
@click.option("--netns", default=None, metavar="NAME",
              help="Isolated: build it inside a new network namespace NAME instead of the host's.")
@click.option("--bridge", default=_DEFAULT.bridge, show_default=True)
@click.option("--tap", default=_DEFAULT.tap, show_default=True)
@click.option("--tap-owner", default=None, metavar="USER", help="User allowed to use the tap.")
@click.option("--nic", default=_DEFAULT.nic, show_default=True,
              help="The NIC on the bridge (created, unless --real-nic).")
@click.option("--nic-kind", type=click.Choice([k for k in NIC_KINDS if k != PHYSICAL]),
              default=_DEFAULT.nic_kind,
              show_default=True, help="auto: dummy when the kernel has it, else a veth pair.")
@click.option("--real-nic", default=None, metavar="IFACE",
              help="Put this existing interface on the bridge instead (boots real hardware). "
                   "Refused if the host uses it (an address, the default route). On that LAN "
                   "dnsmasq then answers only the guest's MAC, not authoritatively, and sends "
                   "no IPv6 router advertisements, unless the two options below say so.")
@click.option("--dhcp-authoritative/--no-dhcp-authoritative", default=None,
              help="dnsmasq's dhcp-authoritative: NAKs other servers' leases. "
                   "[default: on, off with --real-nic]")
@click.option("--router-advertisements/--no-router-advertisements", default=None,
              help="IPv6 RAs of the bridge's ULA prefix (iPXE boots 13 s sooner); every host "
                   "on a LAN takes the prefix. [default: on, off with --real-nic]")
@click.option("--host-address", default=_DEFAULT.host_address, show_default=True)
@click.option("--host-ipv6", default=_DEFAULT.host_ipv6, show_default=True,
              help="IPv6 ULA /64 on the bridge ('none' for none).")
@click.option("--guest-address", default=None, help="[default: host address + 1]")
@click.option("--guest-mac", default=_DEFAULT.guest_mac, show_default=True)
@click.option("--nat/--no-nat", default=_DEFAULT.nat, show_default=True,
              help="Masquerade the testbed subnets (persistent testbeds only).")
@click.option("--nat-interface", default=None, help="[default: the default route's interface]")
@click.option("--apt-proxy/--no-apt-proxy", default=_DEFAULT.apt_proxy, show_default=True,
              help="Offer apt-cacher-ng to the guest on the host address, port 3142.")
@click.option("--http-port", default=_DEFAULT.http_port, show_default=True, type=int)
@click.option("--enable-nested-kvm", is_flag=True,
              help="Also set nested=1 for kvm_intel/kvm_amd (modprobe.d) and reload it if idle.")
def setup(name: str | None, netns: str | None, bridge: str, tap: str, tap_owner: str | None,
          nic: str, nic_kind: str, real_nic: str | None, host_address: str, host_ipv6: str,
          guest_address: str | None, guest_mac: str, nat: bool, nat_interface: str | None,
          apt_proxy: bool, http_port: int, enable_nested_kvm: bool,
          dhcp_authoritative: bool | None, router_advertisements: bool | None) -> int:
    """Set up a testbed and leave it running (persistent, or isolated with --netns)."""
    config = TestbedConfig(
        name=name or netns or _DEFAULT.name,
        mode=ISOLATED if netns else PERSISTENT,
        netns=netns,
        bridge=bridge,
        tap=tap,
        tap_owner=tap_owner,
        nic=real_nic or nic,
        nic_kind=PHYSICAL if real_nic else nic_kind,
        host_address=host_address,
        host_ipv6=None if host_ipv6.lower() == "none" else host_ipv6,
        guest_address=guest_address,
        guest_mac=guest_mac.lower(),
        nat=nat,
        nat_interface=nat_interface,
        apt_proxy=apt_proxy,
        http_port=http_port,
        dhcp_authoritative=dhcp_authoritative,
        router_advertisements=router_advertisements,
    )

    def option(key: str) -> str:
        """How a setting is called on this command line."""
        if key == "nic" and real_nic:
            return "--real-nic"
        if key == "name" and not name:
            return "--netns"
        return f"--{key}"

    return setup_host(config, enable_nested=enable_nested_kvm, option=option)


def setup_host(config: TestbedConfig, *, enable_nested: bool = False,
               option: Callable[[str], str] | None = None) -> int:
    """Idempotent: an existing healthy testbed with the same settings is left as it is."""
    option = option or plain_key
    # Bad input is refused first, root or not, before anything is looked at.
    validate(config, option=option)
    require_root()
    if enable_nested:
        log.info("%s", enable_nested_kvm().message)
    # Said at once when there is nothing to do, even while a run uses the testbed;
    # anything else waits for the testbed's lock (testbed/lock.py).
    if _setup_host(config, option, check_only=True) is not None:
        return ExitCode.OK
    if testbed_status(config.name) is None:
        # Bad input is refused before the lock's file is made: nothing changes.
        preflight(config, option)
    with testbed_lock(config.name, "host setup", wait=SETUP_WAIT, guests=False):
        code = _setup_host(config, option)
    assert code is not None
    return code


def _setup_host(config: TestbedConfig, option: Callable[[str], str],
                check_only: bool = False) -> int | None:
    """Set the testbed up; with check_only, only say whether it already is (else None)."""
    status = testbed_status(config.name)
    if check_only and status is None:
        return None
    if status is not None:
        existing, _ = load_testbed(config.name)
        if existing != config:
            raise UsageError(
                f"testbed {config.name} exists with other settings",
                hint=f"tempest-live-ci host teardown --name {config.name}, then set it up again",
            )
        if status.healthy:
            log.info("testbed %s is already set up; nothing changed", config.name)
            return ExitCode.OK
        if check_only:
            return None
        log.warning("testbed %s is incomplete; setting it up again", config.name)
        teardown_testbed(config.name)
    testbed = create_testbed(config, option=option)
    if testbed.netns is not None:
        # Set up to outlive this command: not a leftover for `cleanup`.
        keep_testbed(testbed)
    where = f"namespace {testbed.netns}" if testbed.netns else "the host namespace"
    log.info("testbed %s is up in %s: boot files go in %s", config.name, where, testbed.http_root)
    return ExitCode.OK


def _checked_name(name: str | None) -> str:
    """The testbed a command names: never a path (`..`, a slash), checked before any use."""
    if name:
        return check_name("--name", name, "testbed name")
    return _DEFAULT.name


@host.command()
@_testbed_option
def teardown(name: str | None) -> int:
    """Remove a testbed: everything its setup created, nothing else."""
    name = _checked_name(name)
    require_root()
    removed = []
    if testbed_dir(name).exists():
        with testbed_lock(name, "host teardown", wait=SETUP_WAIT, guests=False):
            removed = teardown_testbed(name)
    if not removed:
        log.info("no testbed named %s: nothing to do", name)
    return ExitCode.OK


@host.command()
@_testbed_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable, on stdout.")
def status(name: str | None, as_json: bool) -> int:
    """Show a testbed's parts and whether each is still there (exit 16 if not all)."""
    wanted = _checked_name(name) if name else None
    names = [wanted] if wanted else list_testbeds()
    report = []
    code = ExitCode.OK
    for testbed in names:
        st = testbed_status(testbed)
        if st is None:
            if name:
                log.info("no testbed named %s", testbed)
                code = ExitCode.TESTBED
            continue
        report.append(st.as_dict())
        if not st.healthy:
            code = ExitCode.TESTBED
        if not as_json:
            click.echo(f"{testbed}: {'up' if st.healthy else 'DEGRADED'}")
            for what, ok in st.items:
                click.echo(f"  {'ok     ' if ok else 'MISSING'} {what}")
            for lease in st.leases:
                click.echo(f"  lease  {lease}")
    if as_json:
        click.echo(json.dumps(report, indent=1))
    elif not names:
        log.info("no testbed is set up")
    return code
