"""A second namespace on the testbed's bridge, acting as a client machine."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tempest_live_ci.testbed.model import Testbed
from tests.conftest import TOP, Dirs


def sh(*argv: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(argv), capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class Client:
    netns: str
    interface: str
    mac: str

    def run(self, *argv: str, check: bool = True,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.netns, *argv, check=check, timeout=timeout)

    def dhcp(self, workdir: Path, *extra: str) -> dict[str, str]:
        """Run busybox udhcpc once; return the variables its script received (empty: no lease)."""
        out = workdir / f"lease-{secrets.token_hex(3)}.env"
        script = workdir / "udhcpc.script"
        script.write_text(f"#!/bin/sh\n[ \"$1\" = bound ] && env > {out}\nexit 0\n")
        script.chmod(0o755)
        self.run("busybox", "udhcpc", "-i", self.interface, "-n", "-q", "-f", "-t", "3",
                 "-T", "1", "-A", "1", "-s", str(script), *extra, check=False, timeout=30)
        if not out.exists():
            return {}
        return dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)


@contextlib.contextmanager
def client_on_bridge(testbed: Testbed, mac: str, address: str | None = None) -> Iterator[Client]:
    """A namespace with one NIC (MAC `mac`) plugged into the testbed bridge by a veth."""
    assert testbed.netns is not None
    name = "tlct-" + secrets.token_hex(3)
    outer = "tlco" + secrets.token_hex(3)
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", testbed.netns, "link", "add", outer, "type", "veth", "peer", "name", "eth0",
           "netns", name)
        sh("ip", "-n", testbed.netns, "link", "set", outer, "master", testbed.bridge, "up")
        sh("ip", "-n", name, "link", "set", "eth0", "address", mac)
        sh("ip", "-n", name, "link", "set", "lo", "up")
        sh("ip", "-n", name, "link", "set", "eth0", "up")
        if address:
            sh("ip", "-n", name, "addr", "add", address, "dev", "eth0")
        yield Client(netns=name, interface="eth0", mac=mac)
    finally:
        # Deleting the namespace kills the veth pair with it; nothing runs in it
        # once the test's commands returned.
        for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
            subprocess.run(["kill", "-9", pid], check=False)
        sh("ip", "netns", "delete", name, check=False)


def snapshot(ns: str) -> str:
    """A namespace's network state, as a person compares it."""
    parts = []
    for argv in (["ip", "-d", "link", "show"], ["ip", "addr", "show"], ["ip", "route", "show"],
                 ["nft", "list", "ruleset"], ["sysctl", "net.ipv4.ip_forward"]):
        out = sh("ip", "netns", "exec", ns, *argv).stdout
        # A bridge's running timers tick between two looks.
        parts.append(re.sub(r"(_timer|_valid_lft|_preferred_lft)\s+\S+", r"\1", out))
    return "\n".join(parts)


def tlc_in(ns: str, dirs: Dirs, *args: str,
           env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The CLI in namespace `ns` (standing in for the host namespace)."""
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, str(TOP / "bin" / "tempest-live-ci"), *args],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, **dirs.env(), **(env or {})},
    )
