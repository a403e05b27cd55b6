"""End to end: the profiles beyond identity, under TCG here; every profile on sid.

The image profile (keystone and glance on MariaDB) goes through everything
the bigger profiles share (MariaDB, the services' users and endpoints made
in keystone-manage's process, a service's own db sync, the test image made
on the host and served by the testbed, tempest.conf with images). It takes
about 20 minutes under TCG, which CI (under 50 minutes on two cores) has no
room for beside the default job's runs (test_run.py): it is a nightly test,
as is the full profile, well over an hour (its smoke: 92 tests, 70 minutes
of tempest).

The release being packaged is sid's: each profile's smoke job on sid
(jobs/smoke-*sid.yaml) is a nightly test too. On these machines the archive
is a copy whose sid Release is past its Valid-Until: the site's config.yaml
of the test says image.check_valid_until: false, as a site on a snapshot or
a frozen mirror would (on a live mirror it changes nothing).
"""

from __future__ import annotations

import configparser
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tempest_live_ci.results.stream import read_stream
from tests.conftest import TOP, Dirs, needs_root
from tests.conftest import _processes_using as processes_using
from tests.e2e.test_run import run_id_in
from tests.fixtures_image import TEST_CACHE_DIR

pytestmark = [needs_root, pytest.mark.slow]


SID_JOBS = ("smoke-sid", "smoke-image-sid", "smoke-volume-sid", "smoke-network-sid",
            "smoke-object-sid", "smoke-orchestration-sid", "smoke-experimental",
            "smoke-compute-sid", "smoke-full-sid")


def run_job(dirs: Dirs, job: Path, out: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    # The session's image store: the run builds the profile's image there once.
    env = {**os.environ, **dirs.env(), "TEMPEST_LIVE_CI_CACHE_DIR": str(TEST_CACHE_DIR)}
    return subprocess.run(
        [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "run", str(job),
         "--output", str(out)],
        capture_output=True, text=True, timeout=timeout, env=env)


def image_job(tmp_path: Path) -> Path:
    """The shipped image job, with tempest's image smoke tests (upload, download,
    update, delete, versions) instead of all 96 image API tests: half an hour
    under TCG would not fit CI."""
    job = tmp_path / "smoke-image.yaml"
    job.write_text((TOP / "jobs" / "smoke-image-trixie.yaml").read_text().replace(
        "exclude_list: tempest-exclude.txt",
        f"exclude_list: {TOP / 'jobs' / 'tempest-exclude.txt'}\n  smoke: true\n"
        "  regex: tempest\\.api\\.image"))
    return job


def start_run(dirs: Dirs, job: Path | None, out: Path, stderr: Path) -> subprocess.Popen[str]:
    """`run` of `job` (None: the default job) in the background, its stderr into a file."""
    env = {**os.environ, **dirs.env(), "TEMPEST_LIVE_CI_CACHE_DIR": str(TEST_CACHE_DIR)}
    with open(stderr, "w") as err:
        return subprocess.Popen(
            [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "run",
             *([str(job)] if job else []), "--output", str(out)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, text=True, env=env)


@pytest.mark.nightly
def test_the_image_profile(dirs: Dirs, no_leaks: None, tmp_path: Path) -> None:
    """keystone and glance on MariaDB, the test image made on the host and served by
    the testbed; stored under its job, nothing left. About 20 minutes under TCG."""
    out = tmp_path / "out"  # kept by pytest on failure
    result = run_job(dirs, image_job(tmp_path), out, timeout=3600)
    assert result.returncode == 0, result.stderr[-6000:]
    run_id = run_id_in(result.stderr)
    assert run_id is not None
    check_passed_image_run(out)
    stored = json.loads((dirs.results / "smoke-image-trixie" / run_id / "summary.json")
                        .read_text())
    assert stored["run_id"] == run_id
    assert not processes_using(run_id), f"processes of run {run_id} left behind"
    assert not (dirs.state / run_id).exists()


def check_passed_image_run(out: Path) -> None:
    """The image profile's run: keystone and glance on MariaDB, the image smoke tests passed."""
    passed = [r.id for r in read_stream(out / "tempest.subunit").records
              if r.status == "passed"]
    assert any(".test_register_upload_get_image_file" in t for t in passed), passed
    assert all(t.startswith("tempest.api.image.") for t in passed), passed

    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 0
    assert summary["image"]["preinstalled_profile"] == "image"
    parts = summary["metadata"]["steps"]["configure"]["parts"]
    for part in ("configure mariadb", "configure keystone", "configure glance", "glance answers"):
        assert parts[part] > 0, parts
    # glance's users and endpoints came with keystone's, in keystone-manage's process.
    assert any(name.endswith("users and endpoints of glance") for name in parts), parts
    assert summary["metadata"]["versions"]["glance-api"].startswith("2:")

    # The test image: made on the host, fetched by the guest from the testbed.
    # served under the run's own directory of the testbed's HTTP root (machine/libvirt.py)
    assert re.search(r'"GET /runs/[^/ ]+/tempest/tempest-live-ci-test\.raw HTTP/1\.[01]" 200',
                     (out / "http.log").read_text())
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(out / "tempest.conf")
    assert conf["service_available"]["glance"] == "true"
    assert conf["service_available"]["nova"] == "false"
    assert conf["compute"]["image_ref"] and conf["compute"]["image_ref_alt"]


@pytest.mark.nightly
def test_full_profile_smoke(dirs: Dirs, no_leaks: None, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_job(dirs, TOP / "jobs" / "smoke-full-trixie.yaml", out, timeout=4 * 3600)
    summary = json.loads((out / "summary.json").read_text())
    # Under TCG nova runs its fake driver, and tempest.conf says nothing boots.
    assert summary["metadata"]["virt_driver"] == "fake"
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(out / "tempest.conf")
    assert conf["validation"]["run_validation"] == "false"
    for service in ("glance", "nova", "neutron", "cinder"):
        assert conf["service_available"][service] == "true"
    assert result.returncode == 0, result.stderr[-6000:]


@pytest.mark.nightly
@pytest.mark.parametrize("name", SID_JOBS)
def test_each_profile_on_sid_ends_with_tempest_results(name: str, dirs: Dirs, no_leaks: None,
                                                       tmp_path: Path) -> None:
    dirs.config.mkdir(parents=True, exist_ok=True)
    (dirs.config / "config.yaml").write_text("image:\n  check_valid_until: false\n")
    out = tmp_path / "out"
    result = run_job(dirs, TOP / "jobs" / f"{name}.yaml", out, timeout=6 * 3600)
    assert result.returncode in (0, 4), result.stderr[-6000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["total"] > 0 and summary["counts"]["passed"] > 0, summary["counts"]
    # The guest booted sid's image, and tempest is what sid has.
    manifest = json.loads((Path(summary["image"]["directory"]) / "manifest.json").read_text())
    assert manifest["suite"] == "sid"
    tempest = summary["metadata"]["versions"]["python3-tempest"]
    assert {"name": "python3-tempest", "version": tempest} in manifest["packages"], tempest
    # Heat's and swift's tests run where they are deployed, instead of being skipped.
    conf = configparser.ConfigParser(interpolation=None)
    conf.read(out / "tempest.conf")
    ran = {r.id for r in read_stream(out / "tempest.subunit").records if r.status == "passed"}
    if conf["service_available"].get("swift") == "true":
        assert any(t.startswith("tempest.api.object_storage.") for t in ran), sorted(ran)[:20]
    if conf["service_available"].get("heat") == "true":
        assert any(t.startswith("heat_tempest_plugin.tests.api.") for t in ran), sorted(ran)[:20]
