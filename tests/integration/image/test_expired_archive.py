"""An archive whose Release is past its Valid-Until: refused in one line, or accepted when asked.

A small archive of the test's own (one package in dists/sid, its Release
written by apt-ftparchive, its Date and Valid-Until set in the past and
signed with a throwaway key) is served by the testbed's HTTP server in a
network namespace of the test's own. The archive lookup every image and
every run starts with (image/archive.py) runs in that namespace, as a
process of its own: without image.check_valid_until: false it stops with
the one-line error naming the archive, the date and the setting; with it,
apt reads the archive and the package's version comes back. The same
archive with a Valid-Until still ahead is read without the setting: the
refusal is the expiry, nothing else.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.testbed import http, netns
from tempest_live_ci.testbed.journal import Journal
from tests.conftest import TOP, Dirs, needs_root
from tests.debs import build_deb

pytestmark = [needs_root, pytest.mark.root]

ADDRESS = "192.168.252.1"
MIRROR = f"http://{ADDRESS}/debian"
RFC2822 = "%a, %d %b %Y %H:%M:%S UTC"
EXPIRED = datetime.datetime(2026, 10, 30, 8, 0, tzinfo=datetime.UTC)

LOOKUP = """
import json, sys
sys.path.insert(0, sys.argv[1])
from tempest_live_ci.errors import UsageError
from tempest_live_ci.image.archive import archive_versions
try:
    versions = archive_versions("sid", sys.argv[2], ["tlc-sid-tool"], keyring=sys.argv[3],
                                check_valid_until=sys.argv[4] == "check")
except UsageError as e:
    print(json.dumps({"error": e.message}))
else:
    print(json.dumps({"versions": versions}))
"""


@dataclass(frozen=True)
class Archive:
    netns: str
    root: Path  # the archive's top directory (MIRROR)
    keyring: Path
    gnupg: Path


def sign(archive: Archive, date: datetime.datetime, valid_until: datetime.datetime) -> None:
    """dists/sid/Release by apt-ftparchive, with that Date and Valid-Until, clear-signed."""
    suite = archive.root / "dists" / "sid"
    release = proc.run(["apt-ftparchive",
                        "-o", "APT::FTPArchive::Release::Origin=Debian",
                        "-o", "APT::FTPArchive::Release::Suite=unstable",
                        "-o", "APT::FTPArchive::Release::Codename=sid",
                        "-o", "APT::FTPArchive::Release::Components=main",
                        "-o", "APT::FTPArchive::Release::Architectures=amd64",
                        "release", "."], cwd=suite, capture=True).stdout
    lines = [f"Date: {date.strftime(RFC2822)}\nValid-Until: {valid_until.strftime(RFC2822)}"
             if line.startswith("Date:") else line for line in release.splitlines()]
    (suite / "Release").write_text("\n".join(lines) + "\n")
    (suite / "InRelease").unlink(missing_ok=True)
    proc.run(["gpg", "--batch", "--yes", "--homedir", archive.gnupg, "--clearsign",
              "--output", suite / "InRelease", suite / "Release"], capture=True)


@pytest.fixture
def archive(dirs: Dirs, no_leaks: None) -> Iterator[Archive]:
    """The small sid archive, served in a namespace with loopback only."""
    state = dirs.state / "archive-test"
    state.mkdir(parents=True)
    journal = Journal(state)
    name = "tlct-valid-" + secrets.token_hex(3)
    gnupg = dirs.top / "gnupg"
    gnupg.mkdir(mode=0o700)
    proc.run(["gpg", "--batch", "--homedir", gnupg, "--passphrase", "", "--quick-gen-key",
              "tempest-live-ci test archive <archive@example.org>", "ed25519", "sign", "1d"],
             capture=True)
    keyring = dirs.top / "archive-keyring.gpg"
    keyring.write_bytes(subprocess.run(["gpg", "--batch", "--homedir", str(gnupg), "--export"],
                                       check=True, capture_output=True).stdout)
    www = dirs.top / "www"
    root = www / "debian"
    pool = root / "pool" / "main" / "t" / "tlc-sid-tool"
    pool.mkdir(parents=True)
    build_deb(pool, "tlc-sid-tool", "1.0-1")
    binary = root / "dists" / "sid" / "main" / "binary-amd64"
    binary.mkdir(parents=True)
    (binary / "Packages").write_text(proc.run(["apt-ftparchive", "packages", "pool"], cwd=root,
                                              capture=True).stdout)
    served = Archive(name, root, keyring, gnupg)
    try:
        netns.create_netns(journal, name)
        proc.run(["ip", "-n", name, "link", "set", "lo", "up"])
        proc.run(["ip", "-n", name, "addr", "add", f"{ADDRESS}/32", "dev", "lo"])
        http.start_http_server(journal, name, ADDRESS, 80, www, state)
        yield served
    finally:
        journal.undo_all()
        # gpg's agent, started by the key generation, is this test's too.
        subprocess.run(["gpgconf", "--homedir", str(gnupg), "--kill", "all"], check=False)


def look_up(archive: Archive, dirs: Dirs, *, check_valid_until: bool) -> dict[str, object]:
    """archive_versions() in the namespace, as a process of its own: its answer."""
    result = subprocess.run(
        ["ip", "netns", "exec", archive.netns, sys.executable, "-c", LOOKUP, str(TOP / "ci"),
         MIRROR, str(archive.keyring), "check" if check_valid_until else "accept"],
        capture_output=True, text=True, timeout=180, env={**os.environ, **dirs.env()})
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout.splitlines()[-1])
    assert isinstance(answer, dict)
    return answer


def test_an_expired_release_is_refused_in_one_line_unless_the_job_accepts_it(
        archive: Archive, dirs: Dirs) -> None:
    sign(archive, EXPIRED - datetime.timedelta(days=7), EXPIRED)
    refused = look_up(archive, dirs, check_valid_until=True)
    message = refused.get("error")
    assert isinstance(message, str), refused
    assert "\n" not in message
    # Which archive, since when, and which setting accepts it.
    assert message.startswith(f"the sid archive at {MIRROR}/: its Release file expired on "
                              "2026-10-30 08:00 UTC"), message
    assert "image.check_valid_until: false" in message
    assert str(dirs.config / "config.yaml") in message

    accepted = look_up(archive, dirs, check_valid_until=False)
    assert accepted == {"versions": {"tlc-sid-tool": "1.0-1"}}


def test_a_release_still_valid_is_read_without_the_setting(archive: Archive, dirs: Dirs) -> None:
    now = datetime.datetime.now(datetime.UTC)
    sign(archive, now - datetime.timedelta(hours=1), now + datetime.timedelta(days=7))
    assert look_up(archive, dirs, check_valid_until=True) == \
        {"versions": {"tlc-sid-tool": "1.0-1"}}
