"""End to end: an upload check with real candidates, under TCG here.

Debian's own keystone and python3-keystone for trixie, downloaded with
apt-get through the harness's apt proxy, repacked with a bumped version (and
a marker file): the run installs them over the preinstalled image's, pinned
at 1001, runs the identity tests, and says which versions it tested. A
candidate whose dependency no archive can satisfy ends the run with exit 12,
apt's reason, the guest's logs, and nothing left on the host.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.image import Image
from tempest_live_ci.image.archive import apt_config, sources
from tempest_live_ci.results.summary import run_fact
from tests.conftest import TOP, Dirs, needs_root
from tests.debs import write_changes

# Two whole runs: too long for CI on top of the rest; run with -m nightly.
pytestmark = [needs_root, pytest.mark.slow, pytest.mark.nightly]

MARKER = "etc/keystone/tempest-live-ci-candidate.conf"  # collected with /etc/keystone/*.conf
SUFFIX = "+tlc1"
JOB = """\
name: upload-check-e2e
tempest:
  profile: auto
  regex: tempest\\.api\\.identity\\.v3\\.test_tokens
results:
  baseline: latest
  baseline_job: keystone-nightly-e2e
  gate: regressions
"""
# The nightly that gives the upload check its baseline: the same tests, no candidates.
NIGHTLY = """\
name: keystone-nightly-e2e
tempest:
  profile: identity
  regex: tempest\\.api\\.identity\\.v3\\.test_tokens
"""


def run_env(dirs: Dirs, image: Image) -> dict[str, str]:
    # The session's image store: the run finds the image the fixture built.
    return {**os.environ, **dirs.env(),
            "TEMPEST_LIVE_CI_CACHE_DIR": str(image.directory.parent.parent)}


def tlc_run(dirs: Dirs, image: Image, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), "run", *args],
                          capture_output=True, text=True, timeout=3000,
                          env=run_env(dirs, image))


@pytest.fixture
def trixie_keystone(dirs: Dirs, live_image: Image, tmp_path: Path,
                    monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Path]]:
    """keystone and python3-keystone as trixie has them today, through the apt proxy."""
    from tempest_live_ci.testbed import aptproxy

    monkeypatch.setenv("TEMPEST_LIVE_CI_CACHE_DIR", str(live_image.directory.parent.parent))
    root = tmp_path / "apt"
    for sub in ("state/lists/partial", "cache/archives/partial", "etc/apt.conf.d",
                "etc/sources.list.d", "etc/preferences.d", "log"):
        (root / sub).mkdir(parents=True)
    (root / "state/status").touch()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with aptproxy.start_apt_cacher_ng() as proxy:
        (root / "apt.conf").write_text(apt_config(root, proxy.url))
        (root / "etc/sources.list").write_text(sources(
            "trixie", "http://deb.debian.org/debian/", "http://deb.debian.org/debian-security/"))
        env = {"APT_CONFIG": str(root / "apt.conf"), "LC_ALL": "C.UTF-8"}
        proc.run(["apt-get", "-q", "update"], env=env, capture=True, timeout=600)
        proc.run(["apt-get", "-q", "download", "keystone", "python3-keystone"], env=env,
                 cwd=downloads, capture=True, timeout=600)
    debs = {deb.name.split("_")[0]: deb for deb in downloads.glob("*.deb")}
    assert set(debs) == {"keystone", "python3-keystone"}, debs
    yield debs


def field(deb: Path, name: str) -> str:
    return proc.run(["dpkg-deb", "--field", deb, name], capture=True).stdout.strip()


def repack(deb: Path, out: Path, *, depends: str | None = None,
           marker: str | None = None) -> Path:
    """The package with SUFFIX on its version (and on the versions its siblings pin)."""
    work = out.parent / f"repack-{out.name}-{deb.stem}"
    proc.run(["dpkg-deb", "-R", deb, work])
    control = work / "DEBIAN" / "control"
    text = control.read_text()
    old = field(deb, "Version")
    new = old + SUFFIX
    text = text.replace(f"Version: {old}\n", f"Version: {new}\n")
    # keystone depends on python3-keystone (= its own version): the repacked one.
    text = text.replace(f"(= {old})", f"(= {new})")
    if depends:
        text = re.sub(r"^Depends: ", f"Depends: {depends}, ", text, count=1, flags=re.M)
    control.write_text(text)
    if marker is not None:
        (work / MARKER).parent.mkdir(parents=True, exist_ok=True)
        (work / MARKER).write_text(marker)
    repacked = out / f"{field(deb, 'Package')}_{new.split(':')[-1]}_all.deb"
    proc.run(["dpkg-deb", "-Zxz", "-b", work, repacked], capture=True)
    return repacked


def test_an_upload_of_keystone_is_installed_pinned_and_recorded(
        dirs: Dirs, no_leaks: None, live_image: Image, tmp_path: Path,
        trixie_keystone: dict[str, Path]) -> None:
    upload = tmp_path / "upload"
    upload.mkdir()
    token = secrets.token_hex(8)
    debs = [repack(trixie_keystone["keystone"], upload, marker=f"candidate {token}\n"),
            repack(trixie_keystone["python3-keystone"], upload)]
    archive_version = field(trixie_keystone["keystone"], "Version")
    version = archive_version + SUFFIX
    changes = write_changes(upload / f"keystone_{version.split(':')[-1]}_amd64.changes", debs,
                            version=version)
    job = tmp_path / "upload-check-e2e.yaml"
    job.write_text(JOB)
    nightly = tmp_path / "keystone-nightly-e2e.yaml"
    nightly.write_text(NIGHTLY)
    # The nightly's part: the same tests without candidates, stored as the baseline.
    base = tmp_path / "baseline"
    result = tlc_run(dirs, live_image, str(nightly), "--output", str(base))
    assert result.returncode == 0, result.stderr[-5000:]
    base_summary = json.loads((base / "summary.json").read_text())
    assert (dirs.results / "keystone-nightly-e2e" / "index.json").is_file()  # stored
    out = tmp_path / "out"  # kept by pytest after a failure
    result = tlc_run(dirs, live_image, str(job), "--candidate", str(changes), "--output", str(out))
    assert result.returncode == 0, result.stderr[-5000:]
    assert "Installing the candidates…" in result.stderr
    assert "tempest.profile auto: identity (for keystone)" in result.stderr

    installed = {line.split()[1].split(":")[0]: line.split()[2]
                 for line in (out / "packages.txt").read_text().splitlines()
                 if line.startswith("ii ")}
    assert installed["keystone"] == installed["python3-keystone"] == version
    summary = json.loads((out / "summary.json").read_text())
    assert {c["package"]: (c["before"], c["installed"]) for c in summary["candidates"]} == {
        "keystone": (archive_version, version), "python3-keystone": (archive_version, version)}
    assert summary["metadata"]["candidates"] == {"keystone": version,
                                                 "python3-keystone": version}
    # The image stays the archive's: candidates go in at run time.
    assert summary["image"]["hash"] == live_image.hash
    # Compared with the stored run without candidates, beside what changed.
    assert summary["baseline"]["run_id"] == run_fact(base_summary, "run_id")
    assert summary["baseline"]["gate"] == "regressions"
    assert summary["baseline"]["regressions"] == [] and summary["baseline"]["failing"] == []
    assert summary["changes"]["image"]["changed"] is False
    upgraded = {c["package"]: (c["from"], c["to"], c["candidate"])
                for c in summary["changes"]["packages"]["upgraded"]}
    assert upgraded == {"keystone": (archive_version, version, True),
                        "python3-keystone": (archive_version, version, True)}
    assert not summary["changes"]["packages"]["added"]
    assert not summary["changes"]["packages"]["removed"]
    report = (out / "report.html").read_text()
    assert version in report and str(run_fact(base_summary, "run_id")) in report
    # The marker file came with the repacked keystone.
    marker = out / "guest-logs" / MARKER
    assert marker.read_text() == f"candidate {token}\n"
    pin = out / "guest-logs" / "etc/apt/preferences.d/tempest-live-ci-candidates"
    assert "Package: keystone python3-keystone\n" in pin.read_text()
    assert (out / "guest-logs" / "steps" / "candidates.log").is_file()
    # Stored, but marked: nobody's baseline.
    index = json.loads((dirs.results / "upload-check-e2e" / "index.json").read_text())
    assert index[-1]["candidates"] == ["keystone", "python3-keystone"]


def test_an_uninstallable_candidate_is_exit_12_with_apts_reason(
        dirs: Dirs, no_leaks: None, live_image: Image, tmp_path: Path,
        trixie_keystone: dict[str, Path]) -> None:
    upload = tmp_path / "upload"
    upload.mkdir()
    repack(trixie_keystone["keystone"], upload,
           depends="python3-tempest-live-ci-nonexistent (>= 1)")
    repack(trixie_keystone["python3-keystone"], upload)
    job = tmp_path / "upload-check-e2e.yaml"
    job.write_text(JOB)
    out = tmp_path / "out"
    result = tlc_run(dirs, live_image, str(job), "--candidate", str(upload), "--output", str(out))
    assert result.returncode == 12, result.stderr[-5000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors and errors[-1].startswith("error: the candidates cannot be installed: ")
    assert "python3-tempest-live-ci-nonexistent" in errors[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 12
    assert "Configuring OpenStack" not in result.stderr
    assert not (out / "tempest.subunit").exists()
    # The logs are kept: the step's output and the guest's state.
    assert "python3-tempest-live-ci-nonexistent" in \
        (out / "guest-logs" / "steps" / "candidates.log").read_text()
    assert (out / "guest-logs" / "var/log/tempest-live-ci/journal.txt").is_file()
    # Nothing left on the host (no_leaks: namespaces, links, processes), no state either.
    assert not any(dirs.state.glob("tlc-*"))
