"""Fixtures of the testbed tests: a network namespace standing in for the host."""

from __future__ import annotations

import secrets
import subprocess
from collections.abc import Iterator

import pytest

from tests.integration.testbed.clients import sh


@pytest.fixture
def fake_host(no_leaks: None) -> Iterator[str]:
    """A namespace with a loopback and an "uplink" holding the default route."""
    ns = "tlch-" + secrets.token_hex(3)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        # The uplink leads nowhere: a veth whose peer stays in the same namespace.
        sh("ip", "-n", ns, "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p")
        sh("ip", "-n", ns, "link", "set", "uplink0", "up")
        sh("ip", "-n", ns, "addr", "add", "10.255.0.2/24", "dev", "uplink0")
        sh("ip", "-n", ns, "route", "add", "default", "via", "10.255.0.1")
        yield ns
    finally:
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            subprocess.run(["kill", "-9", pid], check=False)
        sh("ip", "netns", "delete", ns, check=False)
