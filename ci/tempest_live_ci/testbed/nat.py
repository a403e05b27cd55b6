"""NAT of the testbed subnets, and the guard of a real NIC's LAN, in an nftables
table of our own.

Removal deletes that table and nothing else: the host's ruleset is never
flushed. IPv4 forwarding is switched on only if it was off, and switched back
off on removal.

The guard (--real-nic): the HTTP server serves the image, and the image's
squashfs holds the guest's SSH host private key (image/livebuild.py), the
key the run pins to know it talks to its own guest. On a bridge of its own
only the guest reaches the server; with a real NIC the whole LAN does. So
there the table lets only the machine the testbed boots reach the HTTP
server (and the apt proxy's port): the one DHCP lease dnsmasq gives, the
guest's MAC with the guest's address; everyone else's connection is reset.
In the kernel, before the root-run HTTP server parses a byte. A LAN host
that forges both the MAC and the address still gets through: this keeps
the key from the LAN's passers-by, not from an attacker on it (an image
whose host key is made at boot and sent another way would; see README).
"""

from __future__ import annotations

import json
from pathlib import Path

from tempest_live_ci import proc, render
from tempest_live_ci.errors import UsageError
from tempest_live_ci.testbed.config import APT_PROXY_PORT, TestbedConfig
from tempest_live_ci.testbed.journal import Journal

FAMILY = "inet"


def table_name(config: TestbedConfig) -> str:
    return "tempest_live_ci_" + "".join(c if c.isalnum() else "_" for c in config.name)


def default_route_interface(netns: str | None = None) -> str:
    routes = json.loads(proc.run(["ip", "-j", "route", "show", "default"], netns=netns,
                                 capture=True).stdout or "[]")
    for route in routes:
        if route.get("dev"):
            return str(route["dev"])
    raise UsageError("nat: no default route to masquerade out of",
                     hint="pass --nat-interface, or use the apt proxy instead of NAT")


def guarded(config: TestbedConfig) -> bool:
    """Does the testbed's table guard its services from the LAN (a real NIC on the bridge)?"""
    return config.nic_kind == "physical"


def needs_table(config: TestbedConfig) -> bool:
    return config.nat or guarded(config)


def guarded_ports(config: TestbedConfig) -> list[int]:
    return [config.http_port] + ([APT_PROXY_PORT] if config.apt_proxy else [])


def render_ruleset(config: TestbedConfig, outside: str | None) -> str:
    ipv6 = config.host_ipv6_interface
    return render.render(
        "host-setup/nftables.conf.j2",
        name=config.name,
        table=table_name(config),
        bridge=config.bridge,
        outside=outside,
        ipv4_subnet=config.host_interface.network,
        ipv6_subnet=ipv6.network if ipv6 else None,
        guard=guarded(config),
        guarded_ports=", ".join(str(p) for p in guarded_ports(config)),
        guest_mac=config.guest_mac,
        guest_address=config.guest_ip,
        host_address=config.host_interface.ip,
    )


def _set_sysctl(journal: Journal, netns: str | None, key: str, value: str) -> None:
    current = proc.run(["sysctl", "-n", key], netns=netns, capture=True).stdout.strip()
    if current != value:
        with journal.intent("sysctl", key=key, old=current, netns=netns):
            proc.run(["sysctl", "-q", "-w", f"{key}={value}"], netns=netns)


def apply_nat(journal: Journal, config: TestbedConfig, state_dir: Path,
              netns: str | None = None) -> str:
    """The testbed's table: with config.nat, masquerade the testbed subnets out of the
    default-route interface; with a real NIC, the guard (see the module's docstring)."""
    outside = (config.nat_interface or default_route_interface(netns)) if config.nat else None
    ruleset = state_dir / "nftables.conf"
    ruleset.write_text(render_ruleset(config, outside))
    proc.run(["nft", "-c", "-f", str(ruleset)], netns=netns, error=UsageError)
    table = table_name(config)
    with journal.intent("nft-table", family=FAMILY, name=table, netns=netns):
        proc.run(["nft", "-f", str(ruleset)], netns=netns)
    if config.nat:
        _set_sysctl(journal, netns, "net.ipv4.ip_forward", "1")
        if config.host_ipv6:
            _set_sysctl(journal, netns, "net.ipv6.conf.all.forwarding", "1")
    return table
