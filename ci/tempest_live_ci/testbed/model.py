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

    run_id names the run using the testbed (its libvirt domain, `vm ssh
    --run-id`); name names the testbed. They are one for an isolated testbed,
    made for its run; a persistent testbed has its own name ("tempest").
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
    http_port: int = 80
    # The testbed's own name (its state directory) when it is not the run's:
    # a persistent testbed outlives every run booted on it, and each of those
    # runs has a run id of its own.
    testbed_name: str | None = None
    persistent: bool = False  # set up by `host setup`: a run never tears it down

    @property
    def name(self) -> str:
        """The testbed's name: its state directory, what teardown_testbed() takes."""
        return self.testbed_name or self.run_id

    @property
    def host_address(self) -> ipaddress.IPv4Address:
        return self.host_interface.ip

    @property
    def http_url(self) -> str:
        """Where the testbed's HTTP server answers, port included unless it is 80."""
        port = "" if self.http_port == 80 else f":{self.http_port}"
        return f"http://{self.host_address}{port}"
