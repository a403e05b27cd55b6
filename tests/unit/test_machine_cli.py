"""`run --machine`: the backend's address and keys are checked before anything else, and a
bad value is one line and exit 20 (nothing on the host changed)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.errors import UsageError
from tempest_live_ci.machine import MachineOptions, open_backend
from tempest_live_ci.machine.libvirt import LibvirtBackend
from tempest_live_ci.machine.ssh import SSHBackend, parse_address

Tlc = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is not installed (openssh-client)")
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", tmp_path / "id"])
    return tmp_path / "id", tmp_path / "id.pub"


@pytest.mark.parametrize("rest, parsed", [
    ("192.0.2.7", ("root", "192.0.2.7", 22)),
    ("debian@192.0.2.7:2222", ("debian", "192.0.2.7", 2222)),
    ("root@[2001:db8::7]:22", ("root", "2001:db8::7", 22)),
    ("root@[2001:db8::7]", ("root", "2001:db8::7", 22)),
    ("root@guest.example.org", ("root", "guest.example.org", 22)),
])
def test_addresses_the_ssh_backend_takes(rest: str, parsed: tuple[str, str, int]) -> None:
    assert parse_address(rest) == parsed


def test_the_backends_by_name(keys: tuple[Path, Path]) -> None:
    assert isinstance(open_backend("libvirt"), LibvirtBackend)
    backend = open_backend("ssh:debian@192.0.2.7:2222", MachineOptions(*keys))
    assert isinstance(backend, SSHBackend)
    t = backend.target
    assert (t.user, t.address, t.port, t.netns) == ("debian", "192.0.2.7", 2222, None)
    assert t.host_key == " ".join(keys[1].read_text().split()[:2])


@pytest.mark.parametrize("argv, message", [
    (["--machine", "qemu"], "--machine: unknown backend 'qemu' (known: libvirt, ssh"),
    (["--machine", "ssh:root@host:99999"], "port '99999' is not a number from 1 to 65535"),
    (["--machine", "ssh:root@host:"], "no port after ':'"),
    (["--machine", "ssh:root@2001:db8::7"], "an IPv6 address goes in brackets"),
    (["--machine", "ssh:Root Admin@host"], "is not a user name"),
    (["--machine", "ssh:root@-host"], "is not a host name or address"),
    (["--machine", "ssh:root@[nothere]:22"], "is not an IPv6 address"),
    (["--machine", "ssh:root@host", "--host-key", "{pub}"], "needs --ssh-key FILE"),
    (["--machine", "ssh:root@host", "--ssh-key", "{key}"], "needs --host-key FILE"),
    (["--machine", "ssh:root@host", "--ssh-key", "{pub}", "--host-key", "{pub}"],
     "--ssh-key: {pub}: not an SSH private key"),
    (["--machine", "ssh:root@host", "--ssh-key", "{key}", "--host-key", "{key}"],
     "--host-key {key}: not an SSH public key line (a private key"),
    (["--machine", "ssh:root@host", "--ssh-key", "{key}", "--host-key", "{missing}"],
     "--host-key {missing}: cannot read it"),
    (["--machine", "ssh:root@host", "--ssh-key", "{key}", "--host-key", "{pub}",
      "--ssh-netns", "tlct-no-such-netns"], "--ssh-netns: no network namespace"),
    (["--ssh-key", "{key}"], "--ssh-key: only with --machine ssh:USER@HOST:PORT"),
    (["--machine", "libvirt:host"], "libvirt takes no address"),
])
def test_bad_machine_values_are_one_line_and_exit_20(tlc: Tlc, keys: tuple[Path, Path],
                                                     argv: list[str], message: str) -> None:
    names = {"key": keys[0], "pub": keys[1], "missing": keys[0].with_name("missing")}
    result = tlc("run", *(a.format(**names) for a in argv))
    assert result.returncode == 20, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message.format(**names) in errors[0], result.stderr
    assert "Traceback" not in result.stderr


def test_a_host_key_file_without_a_key_is_refused(tmp_path: Path) -> None:
    from tempest_live_ci.machine.ssh import read_host_key

    (tmp_path / "empty").write_text("# nothing pinned yet\n\n")
    with pytest.raises(UsageError, match="no public key line in it"):
        read_host_key(tmp_path / "empty")
