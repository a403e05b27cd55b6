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
from collections.abc import Callable
from dataclasses import dataclass

from tempest_live_ci.errors import UsageError, shown

# The kernel's limit for interface names (IFNAMSIZ - 1).
IFNAMSIZ = 15
# Applied with fullmatch(): with match(), `$` lets a trailing newline through
# (into dnsmasq's configuration, a netns name, a file name).
_IFNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")
_NETNS = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_MAC = re.compile(r"([0-9a-f]{2}:){5}[0-9a-f]{2}")
_HOSTNAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")

ISOLATED = "isolated"
PERSISTENT = "persistent"
MODES = (ISOLATED, PERSISTENT)
# The NIC that gives the bridge its carrier: auto (dummy if the kernel has
# it, else veth), dummy, veth; physical is --real-nic's (a LAN's interface).
PHYSICAL = "physical"
NIC_KINDS = ("auto", "dummy", "veth", PHYSICAL)
# Where the guest reaches the apt proxy: the host's bridge address, this port.
APT_PROXY_PORT = 3142


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
    nic_kind: str = NIC_KINDS[0]  # one of NIC_KINDS
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
    # dnsmasq's dhcp-authoritative and IPv6 router advertisements. None: on
    # for a testbed of its own, off when a real NIC puts the bridge on a LAN,
    # where other DHCP clients would be NAKed and every host would get our
    # ULA prefix: there only explicit flags turn them on.
    dhcp_authoritative: bool | None = None
    router_advertisements: bool | None = None

    @property
    def authoritative(self) -> bool:
        if self.dhcp_authoritative is not None:
            return self.dhcp_authoritative
        return self.nic_kind != PHYSICAL

    @property
    def sends_router_advertisements(self) -> bool:
        if self.router_advertisements is not None:
            return self.router_advertisements
        return self.nic_kind != PHYSICAL

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


def plain_key(key: str) -> str:
    return key


def check_name(option: str, value: str, what: str = "name") -> str:
    """A testbed name, run id or namespace name: also a directory name and a netns name.

    Letters, digits and . _ -, starting with a letter or digit: no `..`, no
    slash, no space, quote or shell metacharacter.
    """
    if not isinstance(value, str) or not _NETNS.fullmatch(value):
        raise UsageError(f"{option} {shown(value)}: not a valid {what} (letters, digits and . _ -, "
                         "starting with a letter or digit, 63 at most)")
    return value


def _check_ifname(key: str, value: str) -> None:
    if not isinstance(value, str) or not _IFNAME.fullmatch(value):
        raise UsageError(f"{key} {shown(value)}: not a valid interface name (letters, digits and . _ -)")
    if len(value) > IFNAMSIZ:
        raise UsageError(f"{key} {shown(value)}: interface name longer than {IFNAMSIZ} characters")


def validate(config: TestbedConfig, *, option: Callable[[str], str] = plain_key) -> TestbedConfig:
    """Check every setting; return the config unchanged or raise UsageError.

    Every message names the setting and the bad value; option(key) is how
    the setting is named there: "--host-address" on the command line,
    "testbed.host_address" in a job file.
    """
    if config.mode not in MODES:
        raise UsageError(f"{option('mode')} {shown(config.mode)}: not one of {', '.join(MODES)}")
    check_name(option("name"), config.name, "testbed name")
    if config.namespace is not None:
        check_name(option("netns"), config.namespace, "namespace name")
    for key in ("bridge", "tap", "nic"):
        _check_ifname(option(key), getattr(config, key))
    if config.nic_kind in ("veth", "auto") and len(config.nic + "p") > IFNAMSIZ:
        raise UsageError(
            f"{option('nic')} {shown(config.nic)}: leaves no room for its veth peer "
            f"{shown(config.nic + 'p')} ({IFNAMSIZ} characters at most)"
        )
    names = [config.bridge, config.tap, config.nic]
    if len(set(names)) != len(names):
        raise UsageError(f"{option('bridge')}, {option('tap')} and {option('nic')} must differ: "
                         f"{', '.join(names)}")
    if config.nic_kind not in NIC_KINDS:
        raise UsageError(f"{option('nic-kind')} {shown(config.nic_kind)}: not one of "
                         f"{', '.join(NIC_KINDS)}")
    if config.nic_kind == PHYSICAL and config.mode != PERSISTENT:
        raise UsageError(f"{option('nic')} {shown(config.nic)}: a real NIC can only be used by a "
                         "persistent testbed")
    if config.nat_interface is not None:
        _check_ifname(option("nat-interface"), config.nat_interface)
    if not isinstance(config.guest_name, str) or not _HOSTNAME.fullmatch(config.guest_name):
        raise UsageError(f"{option('guest-name')} {shown(config.guest_name)}: not a host name")

    address = config.host_address
    if not isinstance(address, str) or "/" not in address:
        raise UsageError(f"{option('host-address')} {shown(address)}: needs a prefix length, "
                         "e.g. 192.168.100.1/24")
    try:
        iface = ipaddress.IPv4Interface(address)
    except ValueError:
        raise UsageError(f"{option('host-address')} {shown(address)}: not an IPv4 "
                         "address/prefix") from None
    if iface.network.prefixlen > 30:
        raise UsageError(f"{option('host-address')} {shown(address)}: /{iface.network.prefixlen} "
                         "leaves no room for a guest")
    if iface.ip in (iface.network.network_address, iface.network.broadcast_address):
        raise UsageError(f"{option('host-address')} {shown(address)}: {iface.ip} is the network or "
                         f"broadcast address of {iface.network}")
    try:
        guest = config.guest_ip
    except ValueError:
        raise UsageError(f"{option('guest-address')} {shown(config.guest_address)}: not an IPv4 "
                         "address") from None
    if guest not in iface.network or guest in (iface.network.network_address,
                                               iface.network.broadcast_address):
        raise UsageError(f"{option('guest-address')} {shown(str(guest))}: not a host address in "
                         f"{iface.network}")
    if guest == iface.ip:
        raise UsageError(f"{option('guest-address')} {shown(str(guest))}: the host's own address")
    if config.host_ipv6:
        try:
            v6 = ipaddress.IPv6Interface(config.host_ipv6)
        except ValueError:
            raise UsageError(f"{option('host-ipv6')} {shown(config.host_ipv6)}: not an IPv6 "
                             "address/prefix") from None
        if v6.network.prefixlen != 64 or "/" not in config.host_ipv6:
            raise UsageError(f"{option('host-ipv6')} {shown(config.host_ipv6)}: must be a /64 "
                             "(router advertisements)")
    if not isinstance(config.guest_mac, str) or not _MAC.fullmatch(config.guest_mac):
        raise UsageError(f"{option('guest-mac')} {shown(config.guest_mac)}: not a MAC address "
                         "(lower-case, colons)")
    if int(config.guest_mac[:2], 16) & 1:
        raise UsageError(f"{option('guest-mac')} {shown(config.guest_mac)}: a multicast address")
    if config.tap_owner is not None:
        try:
            pwd.getpwnam(config.tap_owner)
        except (KeyError, ValueError):
            raise UsageError(f"{option('tap-owner')} {shown(config.tap_owner)}: no such user") from None
    if config.nat and config.mode != PERSISTENT:
        raise UsageError(
            f"{option('nat')} {shown(config.nat)}: isolated testbeds reach Debian's archive through "
            "the apt proxy; NAT needs a persistent testbed in the host namespace"
        )
    if isinstance(config.http_port, bool) or not isinstance(config.http_port, int) \
            or not 0 < config.http_port < 65536:
        raise UsageError(f"{option('http-port')} {shown(config.http_port)}: not a TCP port")
    return config


def require_root() -> None:
    if os.geteuid() != 0:
        raise UsageError("this command needs root (network namespaces, links, daemons)",
                         hint="run it with sudo")
