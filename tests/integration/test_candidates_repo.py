"""The candidate repository for real, without a guest.

Real .debs (dpkg-deb), an "archive" and the candidate repository made by
apt-ftparchive, served by the testbed's HTTP server in a network namespace of
the test's own, and the in-guest candidates step (deploy/candidates.py) run
as `python3 -m deploy candidates` in that namespace: its apt-get and dpkg
work on a private root (APT_CONFIG with Dir settings, dpkg --root,
DPKG_ADMINDIR), so they install for real and the host's packages stay as
they are.
"""

from __future__ import annotations

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
from tempest_live_ci.candidates import build_repository, collect_candidates
from tempest_live_ci.errors import ExitCode
from tempest_live_ci.guest.steps import StepFailed, StepResult
from tempest_live_ci.run import candidate_failure
from tempest_live_ci.testbed import http, netns
from tempest_live_ci.testbed.journal import Journal
from tests import aptroot
from tests.conftest import TOP, Dirs, needs_root
from tests.debs import build_deb

pytestmark = [needs_root, pytest.mark.usefixtures("no_leaks")]

ADDRESS = "127.0.0.1"
ARCHIVE = "2:28.0.0-1"  # what the "archive" offers: newer than the candidates
CANDIDATE = "2:27.0.0-2"
MARKER = "usr/share/keystone/tempest-live-ci-candidate"


@dataclass(frozen=True)
class Served:
    netns: str
    www: Path
    url: str


@pytest.fixture
def served(dirs: Dirs) -> Iterator[Served]:
    """The testbed's HTTP server (testbed/http.py) on 127.0.0.1:80 of a namespace of its own."""
    state = dirs.state / "repo-test"
    state.mkdir(parents=True)
    journal = Journal(state)
    name = "tlct-apt-" + secrets.token_hex(3)
    try:
        netns.create_netns(journal, name)
        proc.run(["ip", "-n", name, "link", "set", "lo", "up"])
        www = dirs.top / "www"
        http.start_http_server(journal, name, ADDRESS, 80, www, state)
        archive = www / "archive"
        archive.mkdir()
        for package, depends in (("keystone", f"python3-keystone (= {ARCHIVE})"),
                                 ("python3-keystone", None)):
            build_deb(archive, package, ARCHIVE, source="keystone", depends=depends)
        # Debian's tools make the archive too: apt-ftparchive, Origin Debian.
        (archive / "Packages").write_text(proc.run(["apt-ftparchive", "packages", "."],
                                                   cwd=archive, capture=True).stdout)
        (archive / "Release").write_text(proc.run(
            ["apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=Debian", "release", "."],
            cwd=archive, capture=True).stdout)
        yield Served(name, www, f"http://{ADDRESS}")
    finally:
        journal.undo_all()


def candidates_repo(served: Served, tmp_path: Path, *, depends: str | None = None) -> dict[str, str]:
    """keystone and python3-keystone repacked at CANDIDATE, keystone with a marker file."""
    upload = tmp_path / "upload"
    upload.mkdir()
    build_deb(upload, "keystone", CANDIDATE, source="keystone",
              depends=depends or f"python3-keystone (= {CANDIDATE})",
              files={MARKER: "built for the test\n"})
    build_deb(upload, "python3-keystone", CANDIDATE, source="keystone")
    found = collect_candidates([upload], option=lambda i: "--candidate")
    build_repository(found, served.www / "candidates" / "tlc-test")
    return {c.package: c.version for c in found}


@dataclass(frozen=True)
class PrivateApt:
    root: Path
    target: Path
    env: dict[str, str]

    def run(self, served: Served, *argv: str) -> subprocess.CompletedProcess[str]:
        return proc.run(argv, netns=served.netns, env=self.env, capture=True, check=False,
                        timeout=300)

    def installed(self) -> dict[str, str]:
        status = self.target / "var/lib/dpkg/status"
        versions, package = {}, None
        for line in status.read_text().splitlines():
            if line.startswith("Package: "):
                package = line.split()[1]
            elif line.startswith("Version: ") and package:
                versions[package] = line.split()[1]
        return versions


@pytest.fixture
def private_apt(served: Served, tmp_path: Path) -> PrivateApt:
    """apt and dpkg on a directory of their own: sources, lists, status, files installed."""
    root, target = tmp_path / "apt", tmp_path / "target"
    env = aptroot.private_apt(root, target)
    (root / "etc/sources.list").write_text(f"deb [trusted=yes] {served.url}/archive/ ./\n")
    return PrivateApt(root, target, env)


def run_step(served: Served, apt: PrivateApt, tmp_path: Path,
             wanted: dict[str, object]) -> tuple[int, dict[str, object], str]:
    """`python3 -m deploy candidates`, as the guest runs it; its status, result and stderr."""
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "params.json").write_text("{}\n")
    (state / "candidates.json").write_text(json.dumps(wanted))
    env = {**apt.env, "PYTHONPATH": str(TOP / "ci" / "tempest_live_ci"),
           "TEMPEST_LIVE_CI_GUEST_STATE": str(state)}
    result = subprocess.run(
        ["ip", "netns", "exec", served.netns, "env", *(f"{k}={v}" for k, v in env.items()),
         sys.executable, "-m", "deploy", "candidates"],
        capture_output=True, text=True, timeout=600)
    return (result.returncode, json.loads((state / "steps" / "candidates.json").read_text()),
            result.stderr)


def test_pinning_selects_the_candidate_even_with_a_lower_version(
        served: Served, private_apt: PrivateApt, tmp_path: Path) -> None:
    candidates_repo(served, tmp_path)
    assert private_apt.run(served, "apt-get", "-q", "update").returncode == 0
    archive_only = private_apt.run(served, "apt-get", "-s", "install", "keystone")
    assert f"Inst keystone ({ARCHIVE} " in archive_only.stdout, archive_only.stdout
    from tempest_live_ci.deploy.candidates import preferences, sources

    (private_apt.root / "etc/sources.list.d/c.sources").write_text(
        sources(f"{served.url}/candidates/tlc-test/"))
    unpinned = private_apt.run(served, "apt-get", "-q", "update")
    assert unpinned.returncode == 0, unpinned.stdout + unpinned.stderr
    assert f"Inst keystone ({ARCHIVE} " in private_apt.run(
        served, "apt-get", "-s", "install", "keystone").stdout
    (private_apt.root / "etc/preferences.d/c").write_text(
        preferences(["keystone", "python3-keystone"]))
    pinned = private_apt.run(served, "apt-get", "-s", "install", "keystone")
    assert f"Inst keystone ({CANDIDATE} candidates" in pinned.stdout, pinned.stdout
    assert f"Inst python3-keystone ({CANDIDATE} candidates" in pinned.stdout
    policy = private_apt.run(served, "apt-cache", "policy", "keystone").stdout
    assert f"Candidate: {CANDIDATE}" in policy and "1001" in policy


def test_the_step_installs_the_candidates_and_records_their_versions(
        served: Served, private_apt: PrivateApt, tmp_path: Path) -> None:
    packages = candidates_repo(served, tmp_path)
    status, result, stderr = run_step(served, private_apt, tmp_path, {
        "packages": packages, "repository": f"{served.url}/candidates/tlc-test/",
        "direct_host": ADDRESS, "sources": []})
    assert status == 0, stderr
    facts = result["facts"]
    assert isinstance(facts, dict)
    assert facts["candidates"] == {
        "keystone": {"wanted": CANDIDATE, "before": None, "installed": CANDIDATE},
        "python3-keystone": {"wanted": CANDIDATE, "before": None, "installed": CANDIDATE}}
    assert private_apt.installed() == packages
    assert (private_apt.target / MARKER).read_text() == "built for the test\n"
    assert "candidate keystone 2:27.0.0-2 (new)" in stderr
    # What the step wrote, in the directories apt-config named (the private ones).
    prefs = (private_apt.root / "etc/preferences.d/tempest-live-ci-candidates").read_text()
    assert "Package: keystone python3-keystone\n" in prefs and "Pin-Priority: 1001" in prefs
    conf = (private_apt.root / "etc/apt.conf.d/91tempest-live-ci-candidates").read_text()
    assert conf == 'Acquire::http::Proxy::127.0.0.1 "DIRECT";\n'


def test_an_unsatisfiable_candidate_is_exit_12_with_apts_reason(
        served: Served, private_apt: PrivateApt, tmp_path: Path) -> None:
    packages = candidates_repo(served, tmp_path, depends="python3-keystone-nonexistent (>= 99)")
    status, result, stderr = run_step(served, private_apt, tmp_path, {
        "packages": packages, "repository": f"{served.url}/candidates/tlc-test/",
        "direct_host": ADDRESS, "sources": []})
    assert status == 3, stderr
    facts = result["facts"]
    assert isinstance(facts, dict)
    reason = str(facts["candidate_error"])
    assert reason.startswith("installing the candidates: ")
    assert "keystone : Depends: python3-keystone-nonexistent (>= 99)" in reason
    # Nothing installed: apt refuses before dpkg runs.
    assert private_apt.installed() == {}
    # The host's side: the failed step's result is a CandidateError, exit 12, apt's words.
    failed = StepFailed("step candidates failed", hint="its output: candidates.log",
                        result=StepResult("candidates", 1.0, {}, facts, str(result["error"])))
    error = candidate_failure(failed)
    assert error is not None and error.exit_code == ExitCode.CANDIDATE == 12
    assert "python3-keystone-nonexistent" in error.message and "\n" not in error.message
    # A failure that is no refusal of apt's stays a testbed failure.
    other = StepFailed("x", hint=None, result=StepResult("candidates", 1.0, {}, {}, "gone"))
    assert candidate_failure(other) is None


def test_a_candidate_older_than_the_installed_package_is_refused(
        served: Served, private_apt: PrivateApt, tmp_path: Path) -> None:
    # The image's way: the archive's keystone is installed first (the profile).
    assert private_apt.run(served, "apt-get", "-q", "update").returncode == 0
    first = private_apt.run(served, "apt-get", "-y", "install", "keystone")
    assert first.returncode == 0, first.stdout + first.stderr
    assert private_apt.installed()["keystone"] == ARCHIVE
    packages = candidates_repo(served, tmp_path)
    status, result, stderr = run_step(served, private_apt, tmp_path, {
        "packages": packages, "repository": f"{served.url}/candidates/tlc-test/",
        "direct_host": ADDRESS, "sources": []})
    assert status == 3, stderr
    facts = result["facts"]
    assert isinstance(facts, dict)
    assert "Packages were downgraded and -y was used without --allow-downgrades" in \
        str(facts["candidate_error"])
    assert private_apt.installed()["keystone"] == ARCHIVE


def test_the_repository_is_apt_ftparchives(served: Served, tmp_path: Path) -> None:
    candidates_repo(served, tmp_path)
    repo = served.www / "candidates" / "tlc-test"
    release = (repo / "Release").read_text()
    assert "Origin: tempest-live-ci\n" in release and "Label: candidates\n" in release
    packages = (repo / "Packages").read_text()
    assert f"Package: keystone\nArchitecture: all\nVersion: {CANDIDATE}\n" in packages
    assert "Filename: ./keystone_27.0.0-2_all.deb" in packages
    # Served: what the guest fetches.
    fetched = proc.run(["python3", "-c", "import sys, urllib.request; sys.stdout.write("
                        f"urllib.request.urlopen('{served.url}/candidates/tlc-test/Release')"
                        ".read().decode())"], netns=served.netns, capture=True)
    assert fetched.stdout == release
    assert os.stat(repo).st_mode & 0o755 == 0o755
