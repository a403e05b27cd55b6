"""Bad input to `host setup`, as root on this host: a one-line error naming the
culprit, exit 20, and no namespace or link made."""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tests.conftest import Dirs, needs_root

Tlc = Callable[..., subprocess.CompletedProcess[str]]


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def links() -> set[str]:
    """This host's links that a testbed could have made (other work on the machine aside)."""
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    names = {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}
    return {n for n in names if n.startswith(("tempest", "same", "exactly", "bad"))}


@needs_root
@pytest.mark.parametrize("args, culprit", [
    (["--host-address", "192.168.100.1"], "--host-address '192.168.100.1': needs a prefix length"),
    (["--host-address", "192.168.300.1/24"], "--host-address '192.168.300.1/24': not an IPv4"),
    (["--host-address", "192.168.100.0/24"], "network or broadcast"),
    (["--host-address", "10.0.0.1/31"], "/31 leaves no room"),
    (["--guest-address", "10.1.1.2"],
     "--guest-address '10.1.1.2': not a host address in 192.168.100.0/24"),
    (["--guest-address", "192.168.100.1"], "the host's own address"),
    (["--guest-address", "192.168.100.255"], "not a host address"),
    (["--host-ipv6", "fd00::1/48"], "--host-ipv6 'fd00::1/48': must be a /64"),
    (["--guest-mac", "52:54:00:zz:00:01"], "--guest-mac '52:54:00:zz:00:01'"),
    (["--guest-mac", "01:00:5e:00:00:01"], "multicast"),
    (["--bridge", "a-bridge-name-too-long"],
     "--bridge 'a-bridge-name-too-long': interface name longer than 15"),
    (["--tap", "bad name"], "--tap 'bad name': not a valid interface name"),
    (["--nic", "exactly15chars_"], "--nic 'exactly15chars_': leaves no room for its veth peer"),
    (["--bridge", "same", "--tap", "same"], "must differ"),
    (["--tap-owner", "no-such-user-here"], "--tap-owner 'no-such-user-here': no such user"),
    (["--netns", "tlc-x", "--nat"], "--nat True: isolated testbeds"),
    (["--bridge", "lo"], "--bridge 'lo': interface already exists"),
    (["--real-nic", "no-such-nic0", "--no-apt-proxy"], "--real-nic 'no-such-nic0': no such interface"),
])
def test_bad_setup_input_exits_20_and_changes_nothing(tlc: Tlc, dirs: Dirs, args: list[str],
                                                      culprit: str) -> None:
    ns_before, links_before = netns_list(), links()
    result = tlc("host", "setup", *args)
    assert result.returncode == 20, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert culprit in errors[0]
    assert not netns_list() - ns_before
    assert links() == links_before
    assert not (dirs.state / "tempest" / "journal.json").exists()


@needs_root
def test_existing_namespace_is_refused(tlc: Tlc, dirs: Dirs) -> None:
    subprocess.run(["ip", "netns", "add", "tlc-taken"], check=True)
    try:
        result = tlc("host", "setup", "--netns", "tlc-taken", "--no-apt-proxy")
        assert result.returncode == 20
        assert "--netns 'tlc-taken': a network namespace of that name already exists" \
            in result.stderr
        # The namespace someone else made is still there.
        assert "tlc-taken" in netns_list()
    finally:
        subprocess.run(["ip", "netns", "delete", "tlc-taken"], check=False)
