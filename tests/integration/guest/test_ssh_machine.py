"""The ssh backend (machine/ssh.py) against a real sshd in a namespace of the test's own:
the backend opens the machine, which runs, streams, copies, serves and times out."""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tempest_live_ci.errors import TestbedError
from tempest_live_ci.guest.ssh import fingerprint, public_key
from tempest_live_ci.job import parse_job
from tempest_live_ci.machine import Machine, MachineOptions, Opening, open_backend
from tempest_live_ci.machine.ssh import SSHMachine

from .conftest import Sshd

pytestmark = [pytest.mark.usefixtures("no_leaks"), pytest.mark.root]

JOB = parse_job({}, "j.yaml", "j")


@contextlib.contextmanager
def stage(name: str, title: str) -> Iterator[None]:
    yield


def options(sshd: Sshd, host_key: Path | None = None) -> MachineOptions:
    if host_key is None:
        host_key = sshd.root / "host_key.pub"
    return MachineOptions(ssh_key=sshd.client_key, host_key=host_key, netns=sshd.netns)


@contextlib.contextmanager
def opened(sshd: Sshd, tmp_path: Path, host_key: Path | None = None) -> Iterator[Machine]:
    backend = open_backend(f"ssh:root@{sshd.address}:22", options(sshd, host_key))
    opening = Opening("tlc-0000beef", tmp_path / "out", stage)
    with backend.open(JOB, opening) as machine:
        assert isinstance(machine, SSHMachine)
        # Served files go under the test's directory: the "machine" is this host.
        machine.served_dir = str(tmp_path / "served")
        yield machine
    assert opening.facts["machine"]["host_key_fingerprint"] == fingerprint(
        public_key(sshd.host_key))


def test_the_backend_opens_a_machine_that_runs_commands(sshd: Sshd, tmp_path: Path) -> None:
    with opened(sshd, tmp_path) as machine:
        done = machine.run(["sh", "-c", "cat; echo to-stderr >&2; exit 3"], timeout=30,
                           stdin=b"from stdin\n")
        assert machine.name == f"root@{sshd.address}"
        assert "root" in machine.capabilities
        assert machine.network.address == sshd.address
        assert machine.network.extra_proxy is None and machine.network.direct == ()
        # The machine's apt keeps its own proxy (the fixture's sessions have an APT_CONFIG).
        assert machine.network.apt_proxy == sshd.apt_proxy
    assert (done.returncode, done.stdout, done.stderr) == (3, b"from stdin\n", b"to-stderr\n")


def test_stream_writes_the_output_as_it_comes(sshd: Sshd, tmp_path: Path) -> None:
    seen: list[tuple[float, bytes]] = []

    class Sink:
        def write(self, data: bytes) -> None:
            seen.append((time.monotonic(), data))

    err = io.BytesIO()
    with opened(sshd, tmp_path) as machine:
        started = time.monotonic()
        status = machine.stream(["sh", "-c", "echo first; sleep 2; echo second; echo e >&2"],
                                Sink(), stderr=err, timeout=30)
    assert status == 0
    assert b"".join(data for _, data in seen) == b"first\nsecond\n"
    assert err.getvalue() == b"e\n"
    # The first line came before the command ended, not with the rest.
    assert seen[0][1].startswith(b"first") and seen[0][0] - started < 1.5, seen


def test_put_and_get_copy_files_both_ways(sshd: Sshd, tmp_path: Path) -> None:
    source = tmp_path / "payload"
    source.write_bytes(bytes(range(256)) * 1000)
    remote = str(tmp_path / "remote")
    with opened(sshd, tmp_path) as machine:
        machine.put(source, remote, mode=0o640)
        assert machine.run(["stat", "-c", "%a", remote], timeout=30).text().strip() == "640"
        machine.get(remote, tmp_path / "back")
        with pytest.raises(TestbedError, match="no file"):
            machine.get(str(tmp_path / "missing"), tmp_path / "missing")
    assert (tmp_path / "back").read_bytes() == source.read_bytes()


def test_serve_copies_up_gives_file_urls_and_removes_them_at_close(sshd: Sshd,
                                                                    tmp_path: Path) -> None:
    image = tmp_path / "image.raw"
    image.write_bytes(b"raw image\n")
    repo = tmp_path / "repo"
    (repo / "pool").mkdir(parents=True)
    (repo / "Packages").write_text("Package: keystone\n")
    (repo / "pool" / "k.deb").write_bytes(b"!<arch>\n")
    (repo / "link").symlink_to("/etc/passwd")
    served = tmp_path / "served"
    with opened(sshd, tmp_path) as machine:
        image_url = machine.serve(image, "tempest/image.raw")
        repo_url = machine.serve(repo, "candidates")
        assert image_url == f"file://{served}/tempest/image.raw"
        assert repo_url == f"file://{served}/candidates/"
        assert (served / "tempest" / "image.raw").read_bytes() == b"raw image\n"
        assert sorted(str(p.relative_to(served / "candidates"))
                      for p in (served / "candidates").rglob("*")) == \
            ["Packages", "pool", "pool/k.deb"]
        # Readable by apt's sandbox user: file:// sources are read where they are.
        assert (served / "candidates" / "pool" / "k.deb").stat().st_mode & 0o777 == 0o644
    assert not (served / "tempest").exists() and not (served / "candidates").exists()


def test_a_command_past_its_timeout_is_a_testbed_error_and_the_machine_goes_on(
        sshd: Sshd, tmp_path: Path) -> None:
    out = io.BytesIO()
    with opened(sshd, tmp_path) as machine:
        started = time.monotonic()
        with pytest.raises(TestbedError, match="timed out after 1s"):
            machine.stream(["sleep", "30"], out, timeout=1)
        assert time.monotonic() - started < 10
        with pytest.raises(TestbedError, match="timed out after 1s"):
            machine.run(["sleep", "30"], timeout=1)
        assert machine.run(["true"], timeout=30).returncode == 0


def test_a_changed_host_key_is_refused_before_the_login(sshd: Sshd, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    # A known_hosts line of another key: read, and refused at the handshake.
    wrong.write_text(f"# pinned\n{sshd.address} {sshd.other_host_key}\n")
    with pytest.raises(TestbedError) as raised, opened(sshd, tmp_path, host_key=wrong):
        pytest.fail("a machine with another host key was opened")
    message = raised.value.message
    assert "refusing" in message
    assert fingerprint(public_key(sshd.host_key)) in message
    assert fingerprint(public_key(sshd.other_host_key)) in message
