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
import email.utils
import json
import os
import secrets
import subprocess
import sys
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.testbed import aptproxy, http, netns
from tempest_live_ci.testbed.journal import Journal
from tests.conftest import TOP, Dirs, needs_root
from tests.debs import build_deb

pytestmark = [needs_root, pytest.mark.root]
Tlc = Callable[..., subprocess.CompletedProcess[str]]

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


def _sid_valid_until(url: str) -> datetime.datetime | None:
    """Valid-Until of sid's Release as the archive serves it (None when it has none)."""
    with urllib.request.urlopen(f"{url}/debian/dists/sid/InRelease", timeout=60) as answer:
        text = answer.read().decode("utf-8", "replace")
    for line in text.splitlines():
        if line.startswith("Valid-Until:"):
            return email.utils.parsedate_to_datetime(line.partition(":")[2].strip())
    return None


def test_a_run_on_an_expired_archive_stops_in_one_line_with_nothing_made(
        tlc: Tlc, dirs: Dirs, no_leaks: None) -> None:
    """`run smoke-sid` where sid's Release has expired (a frozen copy of the archive, as on
    these machines): exit 20 and the one line, before the run has an image or a testbed;
    its summary says why. With a live sid there is nothing to refuse."""
    with aptproxy.start_apt_cacher_ng() as proxy:
        valid_until = _sid_valid_until(proxy.url)
    if valid_until is None or valid_until > datetime.datetime.now(datetime.UTC):
        pytest.skip(f"sid's Release is valid until {valid_until}: nothing to refuse")
    out = dirs.top / "out"
    result = tlc("run", "smoke-sid", "--output", str(out), timeout=300)
    assert result.returncode == 20, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    expected = (valid_until + datetime.timedelta(seconds=30)).strftime("%Y-%m-%d %H:%M UTC")
    assert errors[0].startswith("error: the sid archive at http://deb.debian.org/debian: its "
                                f"Release file expired on {expected}"), errors[0]
    assert "set image.check_valid_until: false in the job or in " \
        f"{dirs.config / 'config.yaml'}" in errors[0]
    assert "Preparing the image" not in result.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 20 and summary["note"] == errors[0].removeprefix("error: ")
    # No image, no testbed, nothing stored.
    assert not (dirs.cache / "images").exists() or not any((dirs.cache / "images").iterdir())
    assert not [p for p in dirs.state.glob("tlc-*")], list(dirs.state.iterdir())
    assert not dirs.results.exists() or not any(dirs.results.rglob("index*"))
