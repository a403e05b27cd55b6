"""Testbed settings and their validation.

Validation happens before anything is created: bad input is a UsageError
(exit 20) naming the setting and the value, and the host is left untouched.
"""

from __future__ import annotations

import ipaddress
import os
import pwd
import re
import secrets
from dataclasses import dataclass, field

from tempest_live_ci.errors import UsageError

# The kernel's limit for interface names (IFNAMSIZ - 1).
IFNAMSIZ = 15
_IFNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_NETNS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")
_MAC = re.compile(r"^([0-9a-f]{2}:){5}[0-9a-f]{2}$")

ISOLATED = "isolated"
PERSISTENT = "persistent"


def new_run_id() -> str:
    return "tlc-" + secrets.token_hex(4)


@dataclass(frozen=True)
class TestbedConfig:
    """Everything a testbed is made of.

    The defaults are those of the tool this one replaces (tempestbr,
    tempesttap, tempestnic0, 192.168.100.1/24, the guest on .2), so an existing
    persistent host setup keeps working.
    """

    __test__ = False

    name: str = "tempest"  # run id (isolated) or testbed name (persistent)
    mode: str = ISOLATED
    netns: str | None = None  # isolated mode: the namespace; defaults to name
    bridge: str = "tempestbr"
    tap: str = "tempesttap"
    nic: str = "tempestnic0"
    nic_kind: str = "auto"  # auto (dummy if the kernel has it, else veth), dummy, veth, physical
    tap_owner: str | None = None
    host_address: str = "192.168.100.1/24"
    host_ipv6: str | None = "fd74:6c63:0:1::1/64"
    guest_address: str | None = None  # default: host address + 1
    guest_mac: str = "52:54:00:7e:57:02"
    guest_name: str = "tempest-guest"
    nat: bool = False
    nat_interface: str | None = None  # default: the interface holding the default route
    apt_proxy: bool = True
    http_port: int = 80
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def namespace(self) -> str | None:
        if self.mode == PERSISTENT:
            return None
        return self.netns or self.name

    @property
    def host_interface(self) -> ipaddress.IPv4Interface:
        return ipaddress.IPv4Interface(self.host_address)

    @property
    def host_ipv6_interface(self) -> ipaddress.IPv6Interface | None:
        return ipaddress.IPv6Interface(self.host_ipv6) if self.host_ipv6 else None

    @property
    def guest_ip(self) -> ipaddress.IPv4Address:
        if self.guest_address:
            return ipaddress.IPv4Address(self.guest_address)
        return self.host_interface.ip + 1


def _check_ifname(key: str, value: str) -> None:
    if len(value) > IFNAMSIZ:
        raise UsageError(f"{key}: interface name {value!r} is longer than {IFNAMSIZ} characters")
    if not _IFNAME.match(value):
        raise UsageError(f"{key}: {value!r} is not a valid interface name")


def validate(config: TestbedConfig) -> TestbedConfig:
    """Check every setting; return the config unchanged or raise UsageError."""
    if config.mode not in (ISOLATED, PERSISTENT):
        raise UsageError(f"mode: {config.mode!r} is not one of {ISOLATED}, {PERSISTENT}")
    if not _NETNS.match(config.name):
        raise UsageError(f"name: {config.name!r} is not a valid testbed name")
    if config.namespace is not None and not _NETNS.match(config.namespace):
        raise UsageError(f"netns: {config.namespace!r} is not a valid namespace name")
    for key in ("bridge", "tap", "nic"):
        _check_ifname(key, getattr(config, key))
    if config.nic_kind in ("veth", "auto") and len(config.nic + "p") > IFNAMSIZ:
        raise UsageError(
            f"nic: {config.nic!r} leaves no room for its veth peer {config.nic + 'p'!r} "
            f"({IFNAMSIZ} characters at most)"
        )
    names = [config.bridge, config.tap, config.nic]
    if len(set(names)) != len(names):
        raise UsageError(f"bridge, tap and nic must differ: {', '.join(names)}")
    if config.nic_kind not in ("auto", "dummy", "veth", "physical"):
        raise UsageError(f"nic-kind: {config.nic_kind!r} is not one of auto, dummy, veth, physical")
    if config.nic_kind == "physical" and config.mode != PERSISTENT:
        raise UsageError("nic-kind: a physical NIC can only be used by a persistent testbed")

    try:
        iface = ipaddress.IPv4Interface(config.host_address)
    except ValueError:
        raise UsageError(f"host-address: {config.host_address!r} is not an IPv4 address/prefix") from None
    if "/" not in config.host_address:
        raise UsageError(f"host-address: {config.host_address!r} needs a prefix length, e.g. /24")
    if iface.network.prefixlen > 30:
        raise UsageError(f"host-address: /{iface.network.prefixlen} leaves no room for a guest")
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise UsageError(f"host-address: {iface.ip} is the network or broadcast address of {iface.network}")
    try:
        guest = config.guest_ip
    except ValueError:
        raise UsageError(f"guest-address: {config.guest_address!r} is not an IPv4 address") from None
    if guest not in iface.network or guest in (iface.network.network_address,
                                               iface.network.broadcast_address):
        raise UsageError(f"guest-address: {guest} is not a host address in {iface.network}")
    if guest == iface.ip:
        raise UsageError(f"guest-address: {guest} is the host's own address")
    if config.host_ipv6:
        try:
            v6 = ipaddress.IPv6Interface(config.host_ipv6)
        except ValueError:
            raise UsageError(f"host-ipv6: {config.host_ipv6!r} is not an IPv6 address/prefix") from None
        if v6.network.prefixlen != 64:
            raise UsageError(f"host-ipv6: {config.host_ipv6!r} must be a /64 (router advertisements)")
    if not _MAC.match(config.guest_mac):
        raise UsageError(f"guest-mac: {config.guest_mac!r} is not a MAC address (lower-case, colons)")
    if int(config.guest_mac[:2], 16) & 1:
        raise UsageError(f"guest-mac: {config.guest_mac} is a multicast address")
    if config.tap_owner is not None:
        try:
            pwd.getpwnam(config.tap_owner)
        except KeyError:
            raise UsageError(f"tap-owner: no such user: {config.tap_owner!r}") from None
    if config.nat and config.mode != PERSISTENT:
        raise UsageError(
            "nat: isolated testbeds reach Debian's archive through the apt proxy; "
            "NAT needs a persistent testbed in the host namespace"
        )
    if not 0 < config.http_port < 65536:
        raise UsageError(f"http-port: {config.http_port} is not a TCP port")
    return config


def require_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("this command needs root (network namespaces, links, daemons)",
                         hint="run it with sudo")
