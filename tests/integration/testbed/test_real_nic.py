"""host setup --real-nic, in a namespace standing in for the host.

An interface the host uses (an address, the default route, a bridge of its
own) is refused before anything changes; one it does not use goes on the
bridge, and dnsmasq then stays quiet on that LAN: not authoritative, no
router advertisements, unless asked.
"""

from __future__ import annotations

import re

import pytest

from tests.conftest import Dirs, needs_root
from tests.integration.testbed.clients import sh, snapshot, tlc_in

pytestmark = [needs_root]


def no_qdisc(text: str) -> str:
    return re.sub(r" qdisc \S+", "", text)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("nic, culprit", [
    ("uplink0", "--real-nic 'uplink0': holds the address 10.255.0.2/24"),
    ("lan0", "--real-nic 'lan0': holds the address 10.9.0.2/24"),
    ("routed0", "--real-nic 'routed0': holds the default route"),
    ("lo", "--real-nic 'lo': the loopback interface"),
    ("slave0", "--real-nic 'slave0': already enslaved to otherbr"),
    ("nosuch0", "--real-nic 'nosuch0': no such interface"),
])
def test_a_nic_the_host_uses_is_refused(fake_host: str, dirs: Dirs, nic: str,
                                        culprit: str) -> None:
    sh("ip", "-n", fake_host, "link", "add", "lan0", "type", "veth", "peer", "name", "lan0p")
    sh("ip", "-n", fake_host, "addr", "add", "10.9.0.2/24", "dev", "lan0")
    # An IPv6 default route through an interface with no global address of its own.
    sh("ip", "-n", fake_host, "link", "add", "routed0", "type", "veth", "peer", "name", "routed0p")
    sh("ip", "-n", fake_host, "link", "set", "routed0", "up")
    sh("ip", "-n", fake_host, "-6", "route", "add", "default", "dev", "routed0")
    sh("ip", "-n", fake_host, "link", "add", "otherbr", "type", "bridge")
    sh("ip", "-n", fake_host, "link", "add", "slave0", "type", "veth", "peer", "name", "slave0p")
    sh("ip", "-n", fake_host, "link", "set", "slave0", "master", "otherbr")
    before = snapshot(fake_host)
    result = tlc_in(fake_host, dirs, "host", "setup", "--real-nic", nic, "--no-apt-proxy")
    assert result.returncode == 20, result.stderr
    errors = error_lines(result.stderr)
    assert len(errors) == 1 and culprit in errors[0], result.stderr
    assert snapshot(fake_host) == before
    assert not (dirs.state / "tempest").exists()


@pytest.mark.parametrize("flags, authoritative, ra", [
    ([], False, False),
    (["--dhcp-authoritative", "--router-advertisements"], True, True),
])
def test_a_free_nic_goes_on_the_bridge_and_dnsmasq_stays_quiet_on_the_lan(
        fake_host: str, dirs: Dirs, flags: list[str], authoritative: bool, ra: bool) -> None:
    sh("ip", "-n", fake_host, "link", "add", "free0", "type", "veth", "peer", "name", "free0p")
    before = snapshot(fake_host)
    result = tlc_in(fake_host, dirs, "host", "setup", "--real-nic", "free0", "--no-apt-proxy",
                    *flags)
    assert result.returncode == 0, result.stderr
    try:
        assert "master tempestbr" in sh("ip", "-n", fake_host, "link", "show", "free0").stdout
        conf = (dirs.state / "tempest" / "dnsmasq.conf").read_text().splitlines()
        assert ("dhcp-authoritative" in conf) is authoritative
        assert ("enable-ra" in conf) is ra
    finally:
        down = tlc_in(fake_host, dirs, "host", "teardown")
    assert down.returncode == 0, down.stderr
    # free0 is off the bridge and down again, as it was (the kernel gave it a
    # queueing discipline when it went up: that is not ours to undo).
    assert no_qdisc(snapshot(fake_host)) == no_qdisc(before)


def test_an_own_testbed_answers_authoritatively_with_router_advertisements(
        fake_host: str, dirs: Dirs) -> None:
    result = tlc_in(fake_host, dirs, "host", "setup", "--no-apt-proxy")
    assert result.returncode == 0, result.stderr
    try:
        conf = (dirs.state / "tempest" / "dnsmasq.conf").read_text().splitlines()
        assert "dhcp-authoritative" in conf and "enable-ra" in conf
    finally:
        assert tlc_in(fake_host, dirs, "host", "teardown").returncode == 0
