"""The testbed's links: the NIC standing for the outside (dummy, veth or a
real one), the bridge with the host addresses, and the VM's tap."""

from __future__ import annotations

import functools
import ipaddress
import json
import os
from typing import Any

from tempest_live_ci import proc
from tempest_live_ci.errors import TestbedError, UsageError
from tempest_live_ci.log import log
from tempest_live_ci.testbed.journal import Journal
from tempest_live_ci.testbed.netns import add_marked_netns


def _ip(netns: str | None, *args: str, check: bool = True) -> str:
    argv = ["ip", *(["-n", netns] if netns else []), *args]
    return proc.run(argv, capture=True, check=check).stdout


def link_info(name: str, netns: str | None) -> dict[str, Any] | None:
    out = _ip(netns, "-j", "-d", "addr", "show", "dev", name, check=False)
    if not out.strip():
        return None
    data: list[dict[str, Any]] = json.loads(out)
    return data[0] if data else None


def link_exists(name: str, netns: str | None) -> bool:
    return link_info(name, netns) is not None


def _default_route_devices(netns: str | None) -> set[str]:
    devices = set()
    for family in ("-4", "-6"):
        out = _ip(netns, "-j", family, "route", "show", "default", check=False)
        for route in json.loads(out or "[]"):
            if route.get("dev"):
                devices.add(str(route["dev"]))
            for hop in route.get("nexthops", []):
                if hop.get("dev"):
                    devices.add(str(hop["dev"]))
    return devices


def check_real_nic(name: str, option: str = "nic", netns: str | None = None) -> None:
    """Refuse a real NIC that this host uses: on the bridge it would cut the host off.

    The interface must exist, be no loopback, be on no bridge or bond
    already, hold no global address and carry no default route. Read-only.
    """
    info = link_info(name, netns)
    if info is None:
        raise UsageError(f"{option} {name!r}: no such interface")
    if "LOOPBACK" in info.get("flags", []):
        raise UsageError(f"{option} {name!r}: the loopback interface cannot boot anything")
    if info.get("master"):
        raise UsageError(f"{option} {name!r}: already enslaved to {info['master']}")
    addresses = [f"{a['local']}/{a['prefixlen']}" for a in info.get("addr_info", [])
                 if a.get("scope") == "global"]
    if addresses:
        raise UsageError(f"{option} {name!r}: holds the address {', '.join(addresses)}; on the "
                         "bridge it would cut this host off that network",
                         hint="give a NIC this host does not use")
    if name in _default_route_devices(netns):
        raise UsageError(f"{option} {name!r}: holds the default route; on the bridge it would "
                         "cut this host off", hint="give a NIC this host does not use")


@functools.cache
def kernel_has_dummy() -> bool:
    """Try to make a dummy link in a scratch namespace: the only sure test."""
    scratch = f"tlc-probe-{os.getpid()}"
    try:
        add_marked_netns(scratch, None)
        result = proc.run(["ip", "-n", scratch, "link", "add", "probe0", "type", "dummy"],
                          check=False, capture=True)
        return result.returncode == 0
    except TestbedError as e:
        # No usable namespace here (a chroot whose / is no mount point, say):
        # no dummy either; whatever needs the namespace says so itself.
        log.debug("dummy probe: %s", e.message)
        return False
    finally:
        proc.run(["ip", "netns", "delete", scratch], check=False)


def choose_nic_kind(requested: str) -> str:
    if requested != "auto":
        if requested == "dummy" and not kernel_has_dummy():
            raise UsageError("nic-kind: this kernel has no dummy network device; use veth")
        return requested
    return "dummy" if kernel_has_dummy() else "veth"


def _new_link(journal: Journal, netns: str | None, name: str, *args: str) -> None:
    with journal.intent("link", name=name, netns=netns):
        _ip(netns, "link", "add", name, *args)


def create_nic(journal: Journal, netns: str | None, name: str, kind: str, bridge: str) -> None:
    """The NIC that gives the bridge a carrier and, on real hardware, the wire.

    A bridge stays NO-CARRIER until a port has carrier. A dummy link has one;
    where the kernel lacks dummy, a veth pair stands in (its peer stays
    unattached, with ARP off so it never answers for the bridge's address).
    """
    if kind == "physical":
        info = link_info(name, netns)
        if info is None:
            raise UsageError(f"nic {name!r}: no such interface")
        was_up = "UP" in info.get("flags", [])
        with journal.intent("enslaved", name=name, netns=netns, was_up=was_up):
            _ip(netns, "link", "set", name, "master", bridge, "up")
        log.info("NIC %s: physical, on bridge %s", name, bridge)
    elif kind == "dummy":
        _new_link(journal, netns, name, "type", "dummy")
        _ip(netns, "link", "set", name, "master", bridge, "up")
        log.info("NIC %s: dummy", name)
    else:
        peer = name + "p"
        _new_link(journal, netns, name, "type", "veth", "peer", "name", peer)
        _ip(netns, "link", "set", peer, "arp", "off", "up")
        _ip(netns, "link", "set", name, "master", bridge, "up")
        log.info("NIC %s: veth (this kernel has no dummy device), peer %s", name, peer)


def create_bridge(journal: Journal, netns: str | None, name: str,
                  ipv4: ipaddress.IPv4Interface, ipv6: ipaddress.IPv6Interface | None) -> None:
    _new_link(journal, netns, name, "type", "bridge", "forward_delay", "0", "stp_state", "0")
    _ip(netns, "addr", "add", str(ipv4), "dev", name)
    if ipv6 is not None:
        # nodad: usable at once; the address is ours alone on a private bridge.
        _ip(netns, "addr", "add", str(ipv6), "dev", name, "nodad")
    _ip(netns, "link", "set", name, "up")


def create_tap(journal: Journal, netns: str | None, name: str, bridge: str,
               owner: str | None) -> None:
    argv = ["tuntap", "add", "dev", name, "mode", "tap"]
    if owner:
        argv += ["user", owner]
    with journal.intent("link", name=name, netns=netns):
        _ip(netns, *argv)
    _ip(netns, "link", "set", name, "master", bridge, "up")
