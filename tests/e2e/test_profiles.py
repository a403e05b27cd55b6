"""End to end: the profiles beyond identity, under TCG here; every profile on sid.

The image profile (keystone and glance on MariaDB) runs in CI, at the same
time as a run of the default job (two isolated runs side by side): it goes
through everything the bigger profiles share (MariaDB, the services' users
and endpoints made in keystone-manage's process, a service's own db sync,
the test image made on the host and served by the testbed, tempest.conf
with images). The full profile takes well over an hour under TCG on two
cores (its smoke: 92 tests, 70 minutes of tempest): it is marked nightly.

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
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tempest_live_ci.image import Image
from tempest_live_ci.results.stream import read_stream
from tests.conftest import TOP, Dirs, needs_root
from tests.conftest import _processes_using as processes_using
from tests.e2e.test_interrupts import wait_for
from tests.e2e.test_run import Overlap, check_passed_identity_run, links_in, run_id_in
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


def test_the_image_profile_and_the_default_job_at_once(
        dirs: Dirs, no_leaks: None, live_image: Image, tmp_path: Path) -> None:
    """Two runs at the same time on this host (a CI runner with two jobs): the image
    profile, and the quick start's run of the default job (identity).

    Each run has its isolated testbed (a namespace of its own, named by its
    run id, with its own bridge and tap); both share the apt proxy and the
    results store. Both must end with their own passed tests and distinct
    run ids, each stored under its job, and nothing left. The default job
    starts once the image run has built its image (the identity image is the
    session's), so that both guests run side by side; two TCG guests share
    the cores: each run takes longer than alone.
    """
    outs = [tmp_path / "out-image", tmp_path / "out-identity"]  # kept by pytest on failure
    stderrs = [tmp_path / "stderr-image", tmp_path / "stderr-identity"]
    host_links = links_in(None)
    overlap = Overlap()
    runs = [start_run(dirs, image_job(tmp_path), outs[0], stderrs[0])]
    try:
        # The image profile's image is built (minutes from a cold cache) before its testbed.
        wait_for(stderrs[0], runs[0], "Setting up the testbed…", 3600)
        runs.append(start_run(dirs, None, outs[1], stderrs[1]))
        deadline = time.monotonic() + 3600
        while any(run.poll() is None for run in runs):
            if any(run.poll() not in (None, 0) for run in runs):
                break  # one failed: the other is stopped below, the failure told
            assert time.monotonic() < deadline, "the two runs took more than an hour"
            now = [err.read_text() for err in stderrs]
            seen = [run_id_in(text) for text in now]
            if seen[0] is not None and seen[1] is not None:
                overlap.sample([seen[0], seen[1]], now, host_links)
            time.sleep(1)
    finally:
        # A failure in one run (or in this test) still unwinds the other: Ctrl-C, then wait.
        for run in runs:
            if run.poll() is None:
                run.send_signal(signal.SIGINT)
        for run in runs:
            try:
                run.wait(300)
            except subprocess.TimeoutExpired:
                run.kill()
                run.wait()
    texts = [err.read_text() for err in stderrs]
    for run, text in zip(runs, texts, strict=True):
        assert run.returncode == 0, text[-6000:]
    said = [run_id_in(text) for text in texts]
    ids = [run_id for run_id in said if run_id is not None]
    assert len(ids) == 2 and ids[0] != ids[1], said

    # They ran at the same time, not one after the other: both namespaces at
    # once, both guests at once.
    assert overlap.both_namespaces > 0, f"the two runs' namespaces never existed at once: {overlap}"
    assert overlap.both_guests > 0, f"the two guests never ran at the same time: {overlap}"
    # Each in its own namespace, with its own bridge and tap there; nothing on the host.
    assert all(a != b for a, b in overlap.namespace_inodes), overlap
    for run_id in ids:
        assert {"tempestbr", "tempesttap"} <= overlap.links[run_id], overlap
    assert not overlap.on_the_host, overlap

    check_passed_image_run(outs[0])
    summary = check_passed_identity_run(outs[1], texts[1], ids[1])
    # Each in the results store under its own job, as itself.
    for job, run_id in (("smoke-image-trixie", ids[0]), ("smoke-trixie", ids[1])):
        stored = json.loads((dirs.results / job / run_id / "summary.json").read_text())
        assert stored["run_id"] == run_id
        index = json.loads((dirs.results / job / "index.json").read_text())
        assert [e["run_id"] for e in index] == [run_id]
        latest = json.loads((dirs.results / job / "latest" / "summary.json").read_text())
        assert latest["run_id"] == run_id
        if job == "smoke-trixie":
            assert stored["counts"] == summary["counts"]
    # Nothing of either run is left (and no_leaks: namespaces, links, processes).
    for run_id in ids:
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
