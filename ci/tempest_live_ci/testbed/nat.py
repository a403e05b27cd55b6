"""NAT of the testbed subnets, in an nftables table of our own.

Removal deletes that table and nothing else: the host's ruleset is never
flushed. IPv4 forwarding is switched on only if it was off, and switched back
off on removal.
"""

from __future__ import annotations

import json
from pathlib import Path

from tempest_live_ci import proc, render
from tempest_live_ci.errors import UsageError
from tempest_live_ci.testbed.config import TestbedConfig
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


def render_ruleset(config: TestbedConfig, outside: str) -> str:
    ipv6 = config.host_ipv6_interface
    return render.render(
        "host-setup/nftables.conf.j2",
        name=config.name,
        table=table_name(config),
        bridge=config.bridge,
        outside=outside,
        ipv4_subnet=config.host_interface.network,
        ipv6_subnet=ipv6.network if ipv6 else None,
    )


def _set_sysctl(journal: Journal, netns: str | None, key: str, value: str) -> None:
    current = proc.run(["sysctl", "-n", key], netns=netns, capture=True).stdout.strip()
    if current != value:
        with journal.intent("sysctl", key=key, old=current, netns=netns):
            proc.run(["sysctl", "-q", "-w", f"{key}={value}"], netns=netns)


def apply_nat(journal: Journal, config: TestbedConfig, state_dir: Path,
              netns: str | None = None) -> str:
    """Masquerade the testbed subnets out of the default-route interface."""
    outside = config.nat_interface or default_route_interface(netns)
    ruleset = state_dir / "nftables.conf"
    ruleset.write_text(render_ruleset(config, outside))
    proc.run(["nft", "-c", "-f", str(ruleset)], netns=netns, error=UsageError)
    table = table_name(config)
    with journal.intent("nft-table", family=FAMILY, name=table, netns=netns):
        proc.run(["nft", "-f", str(ruleset)], netns=netns)
    _set_sysctl(journal, netns, "net.ipv4.ip_forward", "1")
    if config.host_ipv6:
        _set_sysctl(journal, netns, "net.ipv6.conf.all.forwarding", "1")
    return table
