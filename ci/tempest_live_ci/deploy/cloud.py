"""What the configuration does through the cloud's APIs, in one openstacksdk process.

The Debian maintainer scripts do this with one `openstack` command per
object; under TCG each of those is seconds of imports.

    python3 -m deploy.cloud wait-compute '{"timeout": 600}'
    python3 -m deploy.cloud network-resources '{"external": {...}, "shared": {...}}'

Every action is idempotent: a step run again finds what it made.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def connect() -> Any:
    # deferred: openstacksdk is the guest's, installed with the cloud this module configures
    import openstack  # type: ignore[import-not-found]

    return openstack.connect(cloud="admin")


def wait_compute(spec: dict[str, Any]) -> None:
    """nova-compute up, its host mapped to a cell, its resource provider in placement."""
    conn = connect()
    deadline = time.monotonic() + spec["timeout"]
    last = "nova-compute has not registered"
    while time.monotonic() < deadline:
        try:
            services = [s for s in conn.compute.services() if s.binary == "nova-compute"]
            up = [s for s in services if s.state == "up" and s.status == "enabled"]
            hypervisors = list(conn.compute.hypervisors())
            providers = list(conn.placement.resource_providers())
        except Exception as e:  # the APIs may still be starting
            last = f"{type(e).__name__}: {e}"
        else:
            if up and hypervisors and providers:
                say(f"compute hosts: {', '.join(s.host for s in up)}; hypervisors: "
                    f"{', '.join(h.name for h in hypervisors)}; resource providers: "
                    f"{', '.join(r.name for r in providers)}")
                return
            last = (f"{len(up)} nova-compute up, {len(hypervisors)} hypervisors, "
                    f"{len(providers)} resource providers")
        time.sleep(5)
    raise SystemExit(f"nova-compute was not ready within {spec['timeout']} s: {last}")


def network_resources(spec: dict[str, Any]) -> None:
    """The external network (routers' gateways, floating IPs) and the shared project network.

    The shared network is where tempest's servers get their ports when it
    does not build a network, subnet and router for each test class.
    """
    conn = connect()
    external = spec["external"]
    network = conn.network.find_network(external["name"])
    if network is None:
        network = conn.network.create_network(
            name=external["name"], is_router_external=True, provider_network_type="flat",
            provider_physical_network=external["physnet"], is_shared=False)
    if not list(conn.network.subnets(network_id=network.id)):
        conn.network.create_subnet(
            name=f"{external['name']}-subnet", network_id=network.id, ip_version=4,
            cidr=external["cidr"], gateway_ip=external["gateway"], is_dhcp_enabled=False)
    say(f"external network {external['name']} ({network.id}), {external['cidr']}")
    shared = spec["shared"]
    network = conn.network.find_network(shared["name"])
    if network is None:
        network = conn.network.create_network(name=shared["name"], is_shared=True)
    if not list(conn.network.subnets(network_id=network.id)):
        conn.network.create_subnet(
            name=f"{shared['name']}-subnet", network_id=network.id, ip_version=4,
            cidr=shared["cidr"], is_dhcp_enabled=True)
    say(f"shared project network {shared['name']} ({network.id}), {shared['cidr']}")


ACTIONS = {"wait-compute": wait_compute,
           "network-resources": network_resources}


def main() -> int:
    ACTIONS[sys.argv[1]](json.loads(sys.argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
