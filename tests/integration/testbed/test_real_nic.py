"""host setup --real-nic, in a namespace standing in for the host.

An interface the host uses (an address, the default route, a bridge of its
own) is refused before anything changes; one it does not use goes on the
bridge, and dnsmasq then stays quiet on that LAN: not authoritative, no
router advertisements, unless asked.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import subprocess
from collections.abc import Iterator

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


@contextlib.contextmanager
def lan(fake_host: str, nic: str) -> Iterator[dict[str, str]]:
    """The LAN behind `nic`: its veth peer on a switch (a bridge in a namespace of its own)
    with two machines: the one the testbed boots (the guest's MAC) and another one."""
    suffix = secrets.token_hex(3)
    switch, names = f"tlcl-{suffix}", {"machine": f"tlcm-{suffix}", "other": f"tlco-{suffix}"}
    macs = {"machine": "52:54:00:7e:57:02", "other": "52:54:00:00:00:66"}
    created = []
    try:
        for ns in (switch, *names.values()):
            sh("ip", "netns", "add", ns)
            created.append(ns)
        sh("ip", "-n", fake_host, "link", "set", nic + "p", "netns", switch)
        sh("ip", "-n", switch, "link", "add", "switch0", "type", "bridge")
        sh("ip", "-n", switch, "link", "set", "switch0", "up")
        sh("ip", "-n", switch, "link", "set", nic + "p", "master", "switch0", "up")
        for role, ns in names.items():
            sh("ip", "-n", switch, "link", "add", f"port-{role}", "type", "veth", "peer", "name",
               "eth0", "netns", ns)
            sh("ip", "-n", switch, "link", "set", f"port-{role}", "master", "switch0", "up")
            sh("ip", "-n", ns, "link", "set", "eth0", "address", macs[role], "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield names
    finally:
        for ns in created:
            for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
                subprocess.run(["kill", "-9", pid], check=False)
            sh("ip", "netns", "delete", ns, check=False)


def fetch(ns: str, source: str | None, url: str) -> subprocess.CompletedProcess[str]:
    via = ["--interface", source] if source else []
    return sh("ip", "netns", "exec", ns, "curl", "-sS", "--max-time", "5", *via, url,
              check=False, timeout=30)


def test_on_a_lan_only_the_machine_the_testbed_boots_gets_the_boot_files(
        fake_host: str, dirs: Dirs) -> None:
    """The squashfs holds the guest's SSH host private key: with a real NIC, the HTTP
    server answers the testbed's one DHCP lease (the guest's MAC with its address) and
    the host itself, nobody else on the LAN."""
    sh("ip", "-n", fake_host, "link", "add", "free0", "type", "veth", "peer", "name", "free0p")
    with lan(fake_host, "free0") as machines:
        setup = tlc_in(fake_host, dirs, "host", "setup", "--real-nic", "free0", "--no-apt-proxy")
        assert setup.returncode == 0, setup.stderr
        try:
            www = dirs.state / "tempest" / "www" / "img"
            www.mkdir(parents=True, exist_ok=True)
            (www / "filesystem.squashfs").write_text("the guest's host key\n")
            url = "http://192.168.100.1/img/filesystem.squashfs"
            machine, other = machines["machine"], machines["other"]
            sh("ip", "-n", machine, "addr", "add", "192.168.100.2/24", "dev", "eth0")
            sh("ip", "-n", machine, "addr", "add", "192.168.100.77/24", "dev", "eth0")

            leased = fetch(machine, "192.168.100.2", url)
            assert leased.returncode == 0, leased.stderr
            assert leased.stdout == "the guest's host key\n"
            # The same machine from an address the testbed did not lease: reset.
            elsewhere = fetch(machine, "192.168.100.77", url)
            assert elsewhere.returncode == 7 and "connect" in elsewhere.stderr, elsewhere
            # Another machine that takes the leased address: its MAC is not the lease's.
            sh("ip", "-n", other, "addr", "add", "192.168.100.2/24", "dev", "eth0")
            forged = fetch(other, "192.168.100.2", url)
            assert forged.returncode != 0 and "host key" not in forged.stdout, forged
            # The host itself is not on the LAN.
            assert fetch(fake_host, None, url).stdout == "the guest's host key\n"
            status = tlc_in(fake_host, dirs, "host", "status")
            assert status.returncode == 0
            assert "ok      nftables table inet tempest_live_ci_tempest" in status.stdout

            # Without the guard the LAN would have it: the table is what refused it.
            sh("ip", "netns", "exec", fake_host, "nft", "delete", "table", "inet",
               "tempest_live_ci_tempest")
            status = tlc_in(fake_host, dirs, "host", "status")
            assert status.returncode == 16
            assert "MISSING nftables table inet tempest_live_ci_tempest" in status.stdout
            assert fetch(machine, "192.168.100.77", url).stdout == "the guest's host key\n"
        finally:
            down = tlc_in(fake_host, dirs, "host", "teardown")
            assert down.returncode == 0, down.stderr
