"""What a testbed is, as the other stages see it."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Testbed:
    """A ready testbed network.

    netns is the network namespace everything lives in (isolated mode), or
    None for the host's own namespace (persistent mode).
    """

    __test__ = False

    run_id: str
    netns: str | None
    bridge: str
    tap: str
    nic: str
    nic_kind: str  # "dummy", "veth" or "physical"
    host_interface: ipaddress.IPv4Interface  # e.g. 192.168.100.1/24 on the bridge
    host_ipv6: ipaddress.IPv6Interface | None
    guest_address: ipaddress.IPv4Address
    guest_mac: str
    state_dir: Path  # pid files, sockets, rendered configuration
    http_root: Path  # served at http://<host address>/ (boot.ipxe, img/, repo/)
    tftp_root: Path
    dnsmasq_log: Path
    http_log: Path
    apt_proxy: str | None  # URL the guest uses, e.g. http://192.168.100.1:3142

    @property
    def host_address(self) -> ipaddress.IPv4Address:
        return self.host_interface.ip

    @property
    def http_url(self) -> str:
        return f"http://{self.host_address}"
