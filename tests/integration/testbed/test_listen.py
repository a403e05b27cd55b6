"""wait_listening counts the daemon's own sockets, not its namespace's.

A foreign listener holding the port (nginx on :80, the host's apt-cacher-ng on
:3142) must not pass for ours.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tempest_live_ci import proc
from tempest_live_ci.errors import TestbedError
from tempest_live_ci.testbed.listen import listening_ports, wait_listening
from tests.conftest import TOP, Dirs, needs_root
from tests.integration.testbed.clients import sh

pytestmark = [needs_root]

LISTENER = """
import socket, sys, time
kind = socket.SOCK_STREAM if sys.argv[1] == "tcp" else socket.SOCK_DGRAM
s = socket.socket(socket.AF_INET, kind)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[2], int(sys.argv[3])))
if kind == socket.SOCK_STREAM:
    s.listen()
print("ready", flush=True)
time.sleep(600)
"""


@pytest.fixture
def netns(no_leaks: None) -> Iterator[str]:
    name = "tlc-lsn-" + secrets.token_hex(3)
    sh("ip", "netns", "add", name)
    try:
        sh("ip", "-n", name, "link", "set", "lo", "up")
        yield name
    finally:
        for pid in sh("ip", "netns", "pids", name, check=False).stdout.split():
            proc.kill_pid(int(pid), grace=1)
        sh("ip", "netns", "delete", name, check=False)


def listener(netns: str, protocol: str, address: str, port: int) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        ["ip", "netns", "exec", netns, sys.executable, "-c", LISTENER, protocol, address,
         str(port)], stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_a_foreign_listener_is_not_ours(netns: str, protocol: str) -> None:
    foreign = listener(netns, protocol, "0.0.0.0", 8080)
    try:
        with proc.spawn(["sleep", "60"], netns=netns) as ours:
            # The namespace has a socket on 8080, ours holds none.
            assert 8080 in listening_ports(foreign.pid, protocol)
            assert 8080 not in listening_ports(ours.pid, protocol)
            with pytest.raises(TestbedError, match="does not listen"):
                wait_listening(ours.pid, 8080, protocol=protocol, what="ours", timeout=1.5)
    finally:
        foreign.kill()
        foreign.wait()


def test_our_own_listener_is_found(netns: str) -> None:
    ours = listener(netns, "tcp", "127.0.0.1", 8081)
    try:
        wait_listening(ours.pid, 8081, what="ours", timeout=5)
    finally:
        ours.kill()
        ours.wait()
    with pytest.raises(TestbedError, match="exited before listening"):
        wait_listening(ours.pid, 8081, what="ours", timeout=5)


def test_setup_fails_when_another_process_holds_the_http_port(netns: str, dirs: Dirs) -> None:
    """Persistent mode in a namespace standing in for the host, where a web server has :8080."""
    foreign = listener(netns, "tcp", "0.0.0.0", 8080)
    try:
        result = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, str(TOP / "bin" / "tempest-live-ci"),
             "host", "setup", "--http-port", "8080", "--no-apt-proxy"],
            capture_output=True, text=True, timeout=120, env={**os.environ, **dirs.env()})
        assert result.returncode == 16, result.stderr
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and "HTTP server" in errors[0], result.stderr
        # The failed setup undid itself; the foreign server is untouched.
        assert "tempestbr" not in sh("ip", "-n", netns, "link").stdout
        assert not (dirs.state / "tempest").exists()
        assert foreign.poll() is None
    finally:
        foreign.kill()
        foreign.wait()
