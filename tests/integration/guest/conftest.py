"""A real sshd (Debian's openssh-server) in a network namespace of the test's own."""

from __future__ import annotations

import secrets
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.guest.ssh import port_open

SSHD = Path("/usr/sbin/sshd")


@dataclass(frozen=True)
class Sshd:
    netns: str
    address: str
    host_key: str  # public key line
    other_host_key: str  # a key the server does not have
    client_key: Path
    root: Path
    # The proxy the "machine's" apt is configured with (APT_CONFIG of its sessions).
    apt_proxy: str = "http://192.0.2.1:3142"


def _keygen(path: Path, kind: str = "ed25519") -> str:
    proc.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-C", path.name, "-f", path])
    return (path.with_suffix(".pub") if path.suffix else Path(f"{path}.pub")).read_text().strip()


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[Sshd]:
    if not SSHD.exists():
        pytest.skip("openssh-server is not installed (tools/deps/test.list)")
    ns = "tlct-ssh-" + secrets.token_hex(3)
    address = "10.251.0.2"
    proc.run(["ip", "netns", "add", ns])
    try:
        proc.run(["ip", "-n", ns, "link", "set", "lo", "up"])
        proc.run(["ip", "-n", ns, "link", "add", "sshc", "type", "veth", "peer", "name", "sshs"])
        proc.run(["ip", "-n", ns, "addr", "add", "10.251.0.1/24", "dev", "sshc"])
        proc.run(["ip", "-n", ns, "addr", "add", f"{address}/24", "dev", "sshs"])
        for link in ("sshc", "sshs"):
            proc.run(["ip", "-n", ns, "link", "set", link, "up"])
        host_key = _keygen(tmp_path / "host_key")
        other = _keygen(tmp_path / "other_host_key")
        client_pub = _keygen(tmp_path / "id_ed25519")
        (tmp_path / "authorized_keys").write_text(client_pub + "\n")
        (tmp_path / "apt.conf").write_text(f'Acquire::http::Proxy "{Sshd.apt_proxy}";\n')
        config = tmp_path / "sshd_config"
        config.write_text(
            f"ListenAddress {address}\nPort 22\nHostKey {tmp_path / 'host_key'}\n"
            f"PidFile {tmp_path / 'sshd.pid'}\nAuthorizedKeysFile {tmp_path / 'authorized_keys'}\n"
            "PermitRootLogin prohibit-password\nPasswordAuthentication no\nUsePAM no\n"
            "StrictModes no\nSubsystem sftp /usr/lib/openssh/sftp-server\n"
            f"SetEnv APT_CONFIG={tmp_path / 'apt.conf'}\n"
        )
        # sshd refuses to start without its privilege separation directory.
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
        with open(tmp_path / "sshd.log", "wb") as log_file, proc.spawn(
            [SSHD, "-D", "-e", "-f", config], netns=ns, stdout=log_file,
            stderr=subprocess.STDOUT,
        ) as daemon:
            deadline = time.monotonic() + 10
            while not port_open(address, netns=ns, timeout=1):
                assert daemon.poll() is None, (tmp_path / "sshd.log").read_text()
                assert time.monotonic() < deadline, "sshd did not listen"
                time.sleep(0.1)
            yield Sshd(ns, address, host_key, other, tmp_path / "id_ed25519", tmp_path)
    finally:
        proc.run(["ip", "netns", "del", ns], check=False)
