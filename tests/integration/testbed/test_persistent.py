"""Persistent mode, in a throwaway namespace standing in for the host: the CLI
runs under `ip netns exec`, so "the host namespace" it changes is that one."""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.conftest import TOP, Dirs, needs_root
from tests.integration.testbed.clients import sh

pytestmark = [needs_root]


def snapshot(ns: str) -> str:
    """The namespace's network state, as a person compares it."""
    parts = []
    for argv in (["ip", "-d", "link", "show"], ["ip", "addr", "show"], ["ip", "route", "show"],
                 ["nft", "list", "ruleset"], ["sysctl", "net.ipv4.ip_forward"]):
        out = sh("ip", "netns", "exec", ns, *argv).stdout
        # A bridge's running timers tick between two looks.
        parts.append(re.sub(r"(_timer|_valid_lft|_preferred_lft)\s+\S+", r"\1", out))
    return "\n".join(parts)


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


def tlc_in(ns: str, dirs: Dirs, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, str(TOP / "bin" / "tempest-live-ci"), *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, **dirs.env()},
    )


def test_setup_is_idempotent_and_teardown_restores_the_host(fake_host: str, dirs: Dirs) -> None:
    before = snapshot(fake_host)
    args = ("host", "setup", "--nat", "--no-apt-proxy")
    first = tlc_in(fake_host, dirs, *args)
    assert first.returncode == 0, first.stderr
    assert "veth" in first.stderr
    after_first = snapshot(fake_host)
    assert "tempestbr" in after_first and "tempesttap" in after_first
    # The default names and addresses of the tool this one replaces.
    addr = sh("ip", "-n", fake_host, "-br", "addr", "show", "dev", "tempestbr").stdout
    assert "192.168.100.1/24" in addr and "fd74:6c63:0:1::1/64" in addr

    table = sh("ip", "netns", "exec", fake_host, "nft", "list", "table", "inet",
               "tempest_live_ci_tempest").stdout
    assert 'ip saddr 192.168.100.0/24 oifname "uplink0" masquerade' in table
    assert 'ip6 saddr fd74:6c63:0:1::/64 oifname "uplink0" masquerade' in table
    assert "net.ipv4.ip_forward = 1" in after_first

    second = tlc_in(fake_host, dirs, *args)
    assert second.returncode == 0, second.stderr
    assert "nothing changed" in second.stderr
    assert snapshot(fake_host) == after_first

    status = tlc_in(fake_host, dirs, "host", "status")
    assert status.returncode == 0 and "tempest: up" in status.stdout

    other = tlc_in(fake_host, dirs, "host", "setup", "--no-apt-proxy", "--host-address",
                   "192.168.101.1/24")
    assert other.returncode == 20 and "other settings" in other.stderr

    down = tlc_in(fake_host, dirs, "host", "teardown")
    assert down.returncode == 0, down.stderr
    assert snapshot(fake_host) == before
    again = tlc_in(fake_host, dirs, "host", "teardown")
    assert again.returncode == 0 and "nothing to do" in again.stderr


def test_nat_removal_keeps_other_rules(fake_host: str, dirs: Dirs) -> None:
    sh("ip", "netns", "exec", fake_host, "nft", "add", "table", "inet", "someone_else")
    sh("ip", "netns", "exec", fake_host, "nft", "add", "chain", "inet", "someone_else", "input",
       "{ type filter hook input priority 0; policy accept; }")
    before = snapshot(fake_host)
    assert tlc_in(fake_host, dirs, "host", "setup", "--nat", "--no-apt-proxy").returncode == 0
    assert tlc_in(fake_host, dirs, "host", "teardown").returncode == 0
    assert snapshot(fake_host) == before
    assert "someone_else" in before


def test_status_reports_a_dead_daemon(fake_host: str, dirs: Dirs) -> None:
    assert tlc_in(fake_host, dirs, "host", "setup", "--no-apt-proxy").returncode == 0
    try:
        pid = int((dirs.state / "tempest" / "dnsmasq.pid").read_text())
        os.kill(pid, 9)
        status = tlc_in(fake_host, dirs, "host", "status")
        assert status.returncode == 16
        assert "MISSING process" in status.stdout and "(dnsmasq)" in status.stdout
        # A second setup repairs it.
        repair = tlc_in(fake_host, dirs, "host", "setup", "--no-apt-proxy")
        assert repair.returncode == 0 and "incomplete" in repair.stderr
        assert tlc_in(fake_host, dirs, "host", "status").returncode == 0
    finally:
        tlc_in(fake_host, dirs, "host", "teardown")
