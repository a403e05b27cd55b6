"""A run with a candidate SIGKILLed on the persistent testbed, then `cleanup`.

The persistent testbed's HTTP server outlives every run: what a run put
there (what it serves the guest, www/runs/RUN_ID: its candidates' repository,
its test image) would stay served
to every later run, unless its record tells `cleanup` whose it is. The
testbed itself is nobody's leftover: it stays, and serves the next run.

Everything in a namespace standing in for the host (the fake_host fixture);
the run is the real CLI with a real candidate (dpkg-deb), held in its VM
stage before anything boots (tests/integration/runs.py).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tempest_live_ci.candidates import REPO_DIR
from tempest_live_ci.machine.libvirt import SERVED
from tests.conftest import Dirs, needs_root
from tests.debs import build_deb
from tests.integration.runs import fake_image, held_run, job_file
from tests.integration.testbed.clients import sh, tlc_in
from tests.integration.testbed.test_persistent_lock import run_id_of

pytestmark = [needs_root]


@pytest.fixture
def persistent(fake_host: str, dirs: Dirs) -> Iterator[str]:
    setup = tlc_in(fake_host, dirs, "host", "setup", "--no-apt-proxy")
    assert setup.returncode == 0, setup.stderr
    yield fake_host
    down = tlc_in(fake_host, dirs, "host", "teardown")
    assert down.returncode == 0, down.stderr


def served(ns: str, url: str) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
              "--max-time", "30", url, check=False)


def test_the_candidate_repository_of_a_killed_run_goes_and_the_testbed_stays(
        persistent: str, dirs: Dirs, tmp_path: Path) -> None:
    job = job_file(tmp_path, mode="persistent", apt_proxy=False)
    fake_image(job)
    deb = build_deb(tmp_path, "keystone", "2:27.0.0-2", source="keystone")
    www = dirs.state / "tempest" / "www"
    with held_run(dirs, job, tmp_path / "out", "qemu", "--candidate", str(deb),
                  netns=persistent) as run:
        run_id = run_id_of(run.log())
        served_dir = www / SERVED / run_id
        repository = served_dir / REPO_DIR
        assert (repository / "Packages").is_file(), run.log()
        assert (repository / deb.name).is_file()
        stderr = run.kill()
    assert "Booting the guest" in stderr
    # What SIGKILL left: the repository, still served by the testbed.
    assert repository.is_dir()
    url = f"http://192.168.100.1/{SERVED}/{run_id}/{REPO_DIR}/Packages"
    assert served(persistent, url).stdout == "200"

    dry = tlc_in(persistent, dirs, "cleanup", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"{run_id}: files served to the guest {served_dir}: its run is gone" in dry.stdout, \
        dry.stdout + dry.stderr
    assert repository.is_dir()
    result = tlc_in(persistent, dirs, "cleanup")
    assert result.returncode == 0, result.stderr
    assert f"{run_id}: removed files served to the guest {served_dir}" in result.stdout, \
        result.stdout + result.stderr
    assert not served_dir.exists()
    assert served(persistent, url).stdout == "404"
    # The testbed stays, serving: only the run's part of it went.
    assert (dirs.state / "tempest" / "journal.json").is_file()
    assert served(persistent, "http://192.168.100.1/").stdout == "200"
    again = tlc_in(persistent, dirs, "cleanup")
    assert again.returncode == 0 and again.stdout == "", again.stdout + again.stderr
