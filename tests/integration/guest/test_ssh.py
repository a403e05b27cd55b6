"""guest/ssh.py against a real sshd in a namespace: pinning, run, put/get, timeouts, reconnect."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.errors import TestbedError
from tempest_live_ci.guest.ssh import (
    GuestSSH,
    SSHTarget,
    fingerprint,
    known_hosts_line,
    port_open,
    public_key,
    wait_for_ssh,
)

from .conftest import Sshd

# Network namespaces and an sshd: root.
pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.root]


def target(sshd: Sshd, host_key: str | None = None) -> SSHTarget:
    return SSHTarget(sshd.address, host_key or sshd.host_key, sshd.client_key, netns=sshd.netns)


def test_fingerprint_is_the_one_ssh_keygen_prints(sshd: Sshd) -> None:
    out = proc.run(["ssh-keygen", "-l", "-f", sshd.root / "host_key.pub"], capture=True).stdout
    assert fingerprint(public_key(sshd.host_key)) == out.split()[1]


def test_run_streams_output_and_returns_the_status(sshd: Sshd, tmp_path: Path) -> None:
    out_file, err_file, seen = tmp_path / "out", tmp_path / "err", io.BytesIO()
    with GuestSSH(target(sshd)) as ssh, out_file.open("wb") as out, err_file.open("wb") as err:
        status = ssh.run("echo hello; echo oops >&2; exit 3", timeout=30,
                         stdout=[out, seen], stderr=[err])
        assert ssh.output(["cat", "/proc/sys/kernel/hostname"], timeout=30).strip()
    assert status == 3
    assert out_file.read_bytes() == b"hello\n" == seen.getvalue()
    assert err_file.read_bytes() == b"oops\n"


def test_a_wrong_host_key_is_refused_naming_both_fingerprints(sshd: Sshd) -> None:
    with pytest.raises(TestbedError) as raised:
        GuestSSH(target(sshd, host_key=sshd.other_host_key)).connect()
    message = raised.value.message
    assert fingerprint(public_key(sshd.host_key)) in message
    assert fingerprint(public_key(sshd.other_host_key)) in message
    assert "refusing" in message


def test_put_and_get_round_trip(sshd: Sshd, tmp_path: Path) -> None:
    source = tmp_path / "payload"
    source.write_bytes(bytes(range(256)) * 4096)
    back = tmp_path / "back"
    remote = str(sshd.root / "uploaded")
    with GuestSSH(target(sshd)) as ssh:
        ssh.put(source, remote, mode=0o600)
        assert ssh.output(["stat", "-c", "%a", remote], timeout=30).strip() == "600"
        ssh.get(remote, back)
        with pytest.raises(TestbedError, match="no file"):
            ssh.get(str(sshd.root / "missing"), tmp_path / "missing")
    assert back.read_bytes() == source.read_bytes()


def test_a_command_that_outlives_its_timeout_is_a_testbed_error(sshd: Sshd) -> None:
    with GuestSSH(target(sshd)) as ssh:
        with pytest.raises(TestbedError, match="timed out after 1s"):
            ssh.run("sleep 30", timeout=1)
        assert ssh.run("true", timeout=30) == 0


def test_a_dropped_connection_is_reopened_once(sshd: Sshd) -> None:
    with GuestSSH(target(sshd)) as ssh:
        assert ssh._transport is not None
        ssh._transport.close()  # what a guest-side drop looks like to us
        assert ssh.run("true", timeout=30) == 0


def test_wait_for_ssh(sshd: Sshd) -> None:
    assert wait_for_ssh(sshd.address, timeout=10, netns=sshd.netns) < 10
    assert not port_open(sshd.address, 2222, netns=sshd.netns)
    with pytest.raises(TestbedError, match=r"port 2222 .* did not open"):
        wait_for_ssh(sshd.address, timeout=1, netns=sshd.netns, port=2222, interval=0.2)


def test_the_system_ssh_client_accepts_the_known_hosts_line(sshd: Sshd, tmp_path: Path) -> None:
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text(known_hosts_line(sshd.address, sshd.host_key))
    result = proc.run(
        ["ssh", "-i", sshd.client_key, "-o", f"UserKnownHostsFile={known_hosts}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", f"root@{sshd.address}",
         "echo", "pinned"], netns=sshd.netns, capture=True)
    assert result.stdout == "pinned\n"
