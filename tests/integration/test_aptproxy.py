"""The apt proxy against the real archive: apt-cacher-ng, socat, a network namespace of our own."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.testbed import aptproxy
from tests.conftest import TOP, Dirs, needs_root

pytestmark = [needs_root, pytest.mark.root]

NS_ADDRESS = "192.168.251.1"
RELEASE = "http://deb.debian.org/debian/dists/bookworm/Release"


@pytest.fixture
def netns() -> Iterator[str]:
    """A namespace with nothing but loopback (and our address on it): no route anywhere."""
    name = f"tlc-acng-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", f"{NS_ADDRESS}/32", "dev", "lo"],
                       check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


@pytest.fixture
def private_port(dirs: Dirs) -> None:
    if aptproxy.answers_as_apt_cacher_ng():
        pytest.skip("an apt-cacher-ng already answers on 127.0.0.1:3142: cannot test our own")


def curl(netns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, "curl", "-sS", "--max-time", "60", *args],
                          capture_output=True, text=True)


def daemon_pid() -> int | None:
    return proc.read_pidfile(aptproxy.proxy_state_dir() / "apt-cacher-ng.pid")


def test_guest_namespace_reaches_only_the_archive(dirs: Dirs, netns: str,
                                                  no_leaks: None) -> None:
    # Another run's daemon (even with another state directory) is shared, not duplicated.
    shared = aptproxy.answers_as_apt_cacher_ng()
    with aptproxy.start_apt_cacher_ng() as proxy:
        assert proxy.url == "http://127.0.0.1:3142"
        assert proxy.socket.is_socket()
        with aptproxy.forward_into_netns(proxy, netns, NS_ADDRESS):
            via_proxy = f"http://{NS_ADDRESS}:3142"
            release = curl(netns, "-f", "-x", via_proxy, RELEASE)
            assert release.returncode == 0, release.stderr
            assert "Origin: Debian" in release.stdout
            assert "Codename: bookworm" in release.stdout
            # The mirror path live-build uses.
            mirror = curl(netns, "-f", f"{via_proxy}/debian/dists/bookworm/Release")
            assert mirror.returncode == 0, mirror.stderr
            assert mirror.stdout == release.stdout
            security = curl(netns, "-f", "-x", via_proxy,
                            "http://deb.debian.org/debian-security/dists/bookworm-security/Release")
            assert "Label: Debian-Security" in security.stdout, security.stderr
            # ForceManaged: anything but Debian's archive is refused.
            other = curl(netns, "-o", "/dev/null", "-w", "%{http_code}", "-x", via_proxy,
                         "http://pypi.org/simple/")
            assert other.stdout == "403"
            # And the namespace has no way out but the proxy.
            direct = curl(netns, "--max-time", "5", RELEASE)
            assert direct.returncode != 0
        # The forwarder is gone with its block.
        after = curl(netns, "--max-time", "5", "-x", via_proxy, RELEASE)
        assert after.returncode != 0
    assert not proxy.socket.exists()
    assert daemon_pid() is None
    if not shared:
        assert (dirs.cache / "apt-cacher-ng" / "debrep").is_dir()
        assert not aptproxy.answers_as_apt_cacher_ng()


HOLDER = """
import os, sys
sys.path.insert(0, sys.argv[1])
if len(sys.argv) > 2:
    os.environ["TEMPEST_LIVE_CI_STATE_DIR"] = sys.argv[2]
from tempest_live_ci.testbed import aptproxy
with aptproxy.start_apt_cacher_ng() as proxy:
    print(proxy.socket, flush=True)
    sys.stdin.readline()
"""


def test_concurrent_users_share_one_daemon(dirs: Dirs, private_port: None, tmp_path: Path,
                                           no_leaks: None) -> None:
    """Another run, even with a state directory of its own, uses and counts the same daemon."""
    other_state = tmp_path / "other-state"
    with aptproxy.start_apt_cacher_ng() as first:
        pid = daemon_pid()
        assert pid is not None and proc.pid_alive(pid)
        other = subprocess.Popen([sys.executable, "-c", HOLDER, str(TOP / "ci"), str(other_state)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout is not None
            other_socket = Path(other.stdout.readline().strip())
            assert other_socket.is_socket() and other_socket != first.socket
            assert not (other_state / "apt-cacher-ng" / "apt-cacher-ng.pid").exists()
            assert daemon_pid() == pid
            users = (aptproxy.proxy_state_dir() / "users").read_text().splitlines()
            assert len(users) == 2
            with aptproxy.start_apt_cacher_ng() as nested:
                assert daemon_pid() == pid
                assert nested.socket != first.socket
        except BaseException:
            other.kill()
            other.wait()
            raise
        # The first user leaves while the other still holds the proxy: it keeps running.
    assert daemon_pid() == pid and proc.pid_alive(pid)
    assert aptproxy.answers_as_apt_cacher_ng()
    other.communicate("\n", timeout=30)
    assert other.returncode == 0
    # The last user left: the daemon is stopped.
    assert not proc.pid_alive(pid)
    assert not aptproxy.answers_as_apt_cacher_ng()
    assert (aptproxy.proxy_state_dir() / "users").read_text() == ""


def test_dead_users_are_forgotten(dirs: Dirs, private_port: None, no_leaks: None) -> None:
    """A run killed without unwinding must not keep the daemon alive for ever."""
    killed = subprocess.Popen([sys.executable, "-c", HOLDER, str(TOP / "ci")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert killed.stdout is not None
    socket = Path(killed.stdout.readline().strip())
    pid = daemon_pid()
    assert pid is not None
    socat_pids = [proc.read_pidfile(p) for p in aptproxy.proxy_state_dir().glob("socat-*.pid")]
    killed.kill()
    killed.wait()
    # What a cleanup would do with the pid files the dead run left.
    for socat_pid in socat_pids:
        assert socat_pid is not None
        proc.kill_pid(socat_pid)
    with aptproxy.start_apt_cacher_ng():
        assert daemon_pid() == pid
    assert not proc.pid_alive(pid)
    socket.unlink(missing_ok=True)
