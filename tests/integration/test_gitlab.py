"""The GitLab CI files, run by gitlab-ci-local (4.73.0, pinned: the newest that runs on
Debian's Node 20) on this machine's shell: the Salsa CI upload check in a fixture package's
pipeline, the project's nightly matrix and its history pages.

gitlab-ci-local validates each pipeline against GitLab's CI schema, runs the jobs with
their needs, artifacts, rules, matrix and allow_failure:exit_codes, and ignores what only a
GitLab server does (tags, retry, timeouts, reports:junit): retry is checked in the
templates' YAML instead. The tempest-live-ci command a job runs is a stand-in here (a
script that records its arguments, writes a run directory's files and exits with the code
the test asks for): a real run of the upload check under gitlab-ci-local is
tests/e2e/test_machine_ssh.py's, on the guest it keeps. The job script (gitlab/run-job),
the templates and publish-history (with the real `results` commands) are the shipped ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import TOP
from tests.debs import build_deb, write_changes
from tests.subunitgen import failed, passed

GCL_VERSION = "4.73.0"
GCL_PREFIX = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") \
    / "tempest-live-ci" / f"gitlab-ci-local-{GCL_VERSION}"

# The stand-in for `tempest-live-ci run`: its arguments into STAND_IN_RECORD, a run
# directory's files, then the exit code STAND_IN_EXIT says. Any other command is the
# real one's.
STAND_IN = """#!/bin/sh
[ "$1" = run ] || exec PYTHON TLC "$@"
printf '%s\\n' "$@" > "$STAND_IN_RECORD"
output=""
while [ $# -gt 0 ]; do
    [ "$1" = --output ] && output=$2
    shift
done
mkdir -p "$output"
cat > "$output/junit.xml" <<'XML'
<?xml version="1.0" encoding="utf-8"?>
<testsuite name="stand-in" tests="1" failures="0" errors="0" skipped="0" time="1.0">
<testcase classname="tempest.api.identity.v3.test_tokens.TokensV3Test" name="test_create_token" time="1.0"/>
</testsuite>
XML
echo '{"stand_in": true}' > "$output/summary.json"
exit "${STAND_IN_EXIT:-0}"
""".replace("PYTHON", sys.executable).replace("TLC", str(TOP / "bin" / "tempest-live-ci"))


@pytest.fixture(scope="module")
def gcl() -> Path:
    return install_gcl()


def install_gcl() -> Path:
    """gitlab-ci-local, installed from npm once into the user's cache."""
    binary = GCL_PREFIX / "node_modules" / ".bin" / "gitlab-ci-local"
    if not binary.exists():
        if shutil.which("npm") is None:
            pytest.fail("npm is missing: tools/install-deps test installs it")
        subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--prefix", str(GCL_PREFIX),
                        f"gitlab-ci-local@{GCL_VERSION}"], check=True, capture_output=True,
                       timeout=600)
    return binary


def git_repo(path: Path) -> None:
    """A repository with one commit: gitlab-ci-local reads the tracked files."""
    env = {**os.environ, "GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.org",
           "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.org"}
    for argv in (["git", "init", "-q", "-b", "main"], ["git", "add", "-A"],
                 ["git", "commit", "-q", "-m", "fixture"]):
        subprocess.run(argv, cwd=path, check=True, env=env, capture_output=True)


def run_gcl(gcl: Path, repo: Path, *args: str, variables: dict[str, str] | None = None,
            source: str = "push", timeout: float = 600) -> subprocess.CompletedProcess[str]:
    argv = [str(gcl), "--shell-isolation", "--concurrency", "1", "--no-artifacts-to-source",
            "--variable", f"CI_PIPELINE_SOURCE={source}",
            "--ignore-predefined-vars", "CI_PIPELINE_SOURCE"]
    for key, value in (variables or {}).items():
        argv += ["--variable", f"{key}={value}"]
    return subprocess.run([*argv, *args], cwd=repo, capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "NO_COLOR": "1", "FORCE_COLOR": "0"})


def listed(gcl: Path, repo: Path, source: str,
           variables: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The jobs of a pipeline of `source` as gitlab-ci-local plans them (its schema check passed)."""
    result = run_gcl(gcl, repo, "--list-json", source=source, variables=variables)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "json schema validated" in result.stdout + result.stderr
    jobs: list[dict[str, Any]] = json.loads(result.stdout[result.stdout.index("["):])
    return jobs


def stand_in(tmp_path: Path) -> Path:
    script = tmp_path / "tempest-live-ci-stand-in"
    script.write_text(STAND_IN)
    script.chmod(0o755)
    return script


@pytest.fixture
def package(tmp_path: Path) -> Path:
    """An OpenStack package's repository, its debian/salsa-ci.yml including the shipped
    template (locally: Salsa's own includes cannot be fetched here) beside a stub build
    job that leaves a rebuilt keystone's .deb and .changes, and a source upload's
    .changes, in debian/output, as Salsa CI's build job does."""
    built = tmp_path / "built"
    built.mkdir()
    debs = [build_deb(built, "keystone", "2:27.0.0-2+ci1", source="keystone"),
            build_deb(built, "python3-keystone", "2:27.0.0-2+ci1", source="keystone")]
    return package_repo(tmp_path, built, debs)


def package_repo(tmp_path: Path, built: Path, debs: list[Path]) -> Path:
    """keystone's repository in tmp_path, whose build job leaves `debs` (built in `built`),
    their binary upload's .changes and a source upload's .changes in debian/output."""
    repo = tmp_path / "keystone"
    (repo / "debian").mkdir(parents=True)
    shutil.copytree(TOP / "gitlab", repo / "gitlab")
    write_changes(built / "keystone_27.0.0-2+ci1_amd64.changes", debs, version="2:27.0.0-2+ci1")
    (built / "keystone_27.0.0-2+ci1_source.changes").write_text("Source: keystone\n")
    (repo / "debian" / "salsa-ci.yml").write_text(yaml.safe_dump({
        "include": [{"local": "/gitlab/salsa-ci.yml"}],
        "stages": ["build", "test"],
        "build": {"stage": "build", "script": [
            "mkdir -p debian/output", f"cp {built}/*.deb {built}/*.changes debian/output/"],
            "artifacts": {"paths": ["debian/output/"]}},
    }, sort_keys=False))
    (repo / ".gitlab-ci.yml").write_text("include:\n  - local: /debian/salsa-ci.yml\n")
    git_repo(repo)
    return repo


def upload_check_variables(tmp_path: Path, code: int) -> dict[str, str]:
    return {"SALSA_CI_ENABLE_TEMPEST_LIVE_CI": "1",
            "TEMPEST_LIVE_CI_RUN_JOB": str(TOP / "gitlab" / "run-job"),
            "TEMPEST_LIVE_CI_BIN": str(stand_in(tmp_path)),
            "STAND_IN_RECORD": str(tmp_path / "argv.txt"), "STAND_IN_EXIT": str(code)}


def test_the_upload_check_takes_the_build_jobs_binary_uploads_as_candidates(
        gcl: Path, package: Path, tmp_path: Path) -> None:
    result = run_gcl(gcl, package, variables=upload_check_variables(tmp_path, 0))
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    argv = (tmp_path / "argv.txt").read_text().splitlines()
    # The upload-check job, the binary upload's .changes (the source upload's left out),
    # the run directory where the artifacts are taken from.
    build_dir = package / ".gitlab-ci-local" / "builds" / "tempest-live-ci"
    assert argv == ["run", "upload-check", "--output", f"{build_dir}/tempest-live-ci",
                    "--candidate", f"{build_dir}/debian/output/keystone_27.0.0-2+ci1_amd64.changes"]
    # Where GitLab takes the Tests tab's junit.xml and the report from: the job's artifacts.
    artifacts = package / ".gitlab-ci-local" / "artifacts" / "tempest-live-ci"
    assert (artifacts / "tempest-live-ci" / "junit.xml").is_file()
    assert (artifacts / "tempest-live-ci" / "summary.json").is_file()
    log = (package / ".gitlab-ci-local" / "output" / "tempest-live-ci.log").read_text()
    assert "tempest-live-ci: exit 0: every test passed" in log


def test_the_upload_check_is_off_unless_enabled_and_off_when_disabled(
        gcl: Path, package: Path) -> None:
    def when(variables: dict[str, str]) -> str:
        jobs = {job["name"]: job for job in listed(gcl, package, "push", variables)}
        assert jobs["tempest-live-ci"]["needs"] == [
            {"job": "build", "artifacts": True, "optional": False}]
        return str(jobs["tempest-live-ci"]["when"])

    assert when({}) == "never"
    assert when({"SALSA_CI_ENABLE_TEMPEST_LIVE_CI": "1"}) == "on_success"
    assert when({"SALSA_CI_ENABLE_TEMPEST_LIVE_CI": "1",
                 "SALSA_CI_DISABLE_TEMPEST_LIVE_CI": "yes"}) == "never"


@pytest.mark.parametrize(("code", "passes"), [(0, True), (4, False), (8, False), (12, False),
                                              (16, False), (20, False)])
def test_exit_codes_are_the_upload_checks_outcome(gcl: Path, package: Path, tmp_path: Path,
                                                  code: int, passes: bool) -> None:
    """An upload check passes only when every test did; the reason is the log's last line."""
    result = run_gcl(gcl, package, "tempest-live-ci", "--needs",
                     variables=upload_check_variables(tmp_path, code))
    assert (result.returncode == 0) is passes, result.stdout[-3000:]
    log = (package / ".gitlab-ci-local" / "output" / "tempest-live-ci.log").read_text()
    assert f"tempest-live-ci: exit {code}: " in log


def templates() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((TOP / "gitlab" / "tempest-live-ci.yml").read_text())
    return data


def test_the_machine_and_its_keys_reach_run_as_one_argument_each(tmp_path: Path) -> None:
    """A runner that keeps a guest or a host of its own gives it to run-job by variables
    (the keys as GitLab file variables): each is one argument of `run`, shell syntax and
    spaces included, and nothing of them is run."""
    hostile = "$(touch pwned) ; `touch pwned`"
    keys = tmp_path / f"keys {hostile}"
    keys.mkdir()
    env = {"PATH": os.environ["PATH"], "CI_PROJECT_DIR": str(tmp_path),
           "TEMPEST_LIVE_CI_JOB": "upload-check",
           "TEMPEST_LIVE_CI_BIN": str(stand_in(tmp_path)),
           "STAND_IN_RECORD": str(tmp_path / "argv.txt"), "STAND_IN_EXIT": "0",
           "TEMPEST_LIVE_CI_MACHINE": "ssh:root@192.0.2.10:22",
           "TEMPEST_LIVE_CI_SSH_KEY": str(keys / "id_ed25519"),
           "TEMPEST_LIVE_CI_HOST_KEY": str(keys / "host key.pub"),
           "TEMPEST_LIVE_CI_SSH_NETNS": "ci-guests"}
    result = subprocess.run([str(TOP / "gitlab" / "run-job")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "argv.txt").read_text().splitlines() == [
        "run", "upload-check", "--output", f"{tmp_path}/tempest-live-ci",
        "--machine", "ssh:root@192.0.2.10:22", "--ssh-key", str(keys / "id_ed25519"),
        "--host-key", str(keys / "host key.pub"), "--ssh-netns", "ci-guests"]
    assert not list(tmp_path.rglob("pwned"))
    assert "tempest-live-ci: exit 0: every test passed" in result.stderr

    # Without them, the default machine: no --machine at all.
    for key in ("TEMPEST_LIVE_CI_MACHINE", "TEMPEST_LIVE_CI_SSH_KEY", "TEMPEST_LIVE_CI_HOST_KEY",
                "TEMPEST_LIVE_CI_SSH_NETNS"):
        del env[key]
    result = subprocess.run([str(TOP / "gitlab" / "run-job")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "argv.txt").read_text().splitlines() == [
        "run", "upload-check", "--output", f"{tmp_path}/tempest-live-ci"]


def test_a_testbed_failure_is_retried_and_a_nightlys_failed_tests_allowed() -> None:
    """What gitlab-ci-local does not run but GitLab does: retry on 16, never on 20."""
    t = templates()
    assert t[".tempest-live-ci"]["retry"] == {"max": 2, "exit_codes": [16]}
    assert t[".tempest-live-ci-nightly"]["allow_failure"] == {"exit_codes": [4]}
    assert "allow_failure" not in t[".tempest-live-ci-upload-check"]
    assert t[".tempest-live-ci"]["artifacts"]["when"] == "always"
    assert t[".tempest-live-ci"]["artifacts"]["reports"]["junit"] == "tempest-live-ci/junit.xml"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A clone of this project's tracked files, as a GitLab runner checks it out."""
    repo = tmp_path / "tempest-live-ci"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=TOP, capture_output=True,
                           check=True).stdout.split(b"\0")
    for name in filter(None, files):
        source = TOP / os.fsdecode(name)
        if source.is_file():
            target = repo / os.fsdecode(name)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    git_repo(repo)
    return repo


def shipped_jobs() -> set[str]:
    return {p.stem for p in (TOP / "jobs").glob("*.yaml")}


def test_the_nightly_is_one_matrix_job_per_shipped_job(gcl: Path, project: Path) -> None:
    scheduled = listed(gcl, project, "schedule")
    nightly = {job["name"] for job in scheduled if job["name"].startswith("nightly: [")}
    assert nightly == {f"nightly: [{name}]" for name in shipped_jobs() - {"upload-check"}}
    by_name = {job["name"]: job for job in scheduled}
    assert by_name["tests"]["when"] == "never"
    assert by_name["pages"]["when"] == "always"
    # A push runs the tests, no guest.
    pushed = {job["name"]: job["when"] for job in listed(gcl, project, "push")}
    assert pushed["tests"] == "on_success"
    assert {name for name, when in pushed.items() if when != "never"} == {"tests"}


def test_a_night_makes_the_history_pages(gcl: Path, project: Path, tmp_path: Path) -> None:
    """Three matrix jobs (one with failed tests, exit 4, allowed) and the pages job, which
    stores their run directories and writes each job's history page and the index with
    the real `results` commands."""
    record = tmp_path / "runs"
    record.mkdir()
    names = ["smoke-trixie", "smoke-sid", "nightly-sid-identity"]
    stream = tmp_path / "tempest.subunit"
    test = "tempest.api.identity.v3.test_tokens.TokensV3Test"
    stream.write_bytes(passed(f"{test}.test_create_token") + failed(f"{test}.test_rescope"))
    stand = tmp_path / "stand-in-real-results"
    # Here the stand-in writes a real run directory: `results show` of a stream.
    stand.write_text(STAND_IN.replace(
        "echo '{\"stand_in\": true}' > \"$output/summary.json\"",
        f"{sys.executable} {TOP / 'bin' / 'tempest-live-ci'} results show {stream} "
        "--output \"$output\" > /dev/null").replace(
        'exit "${STAND_IN_EXIT:-0}"', 'case $output in */smoke-sid) exit 4 ;; esac; exit 0'))
    stand.chmod(0o755)
    variables = {"TEMPEST_LIVE_CI_BIN": str(stand), "STAND_IN_RECORD": str(record / "argv"),
                 "STAND_IN_EXIT": "0", "TEMPEST_LIVE_CI_PAGES_URL": ""}
    jobs = [f"nightly: [{name}]" for name in names]
    result = run_gcl(gcl, project, *jobs, "pages", variables=variables, source="schedule")
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    # smoke-sid's failed tests (exit 4) are allowed: the night goes on to its pages.
    assert "nightly: [smoke-sid]" in result.stdout and "WARN" in result.stdout
    public = project / ".gitlab-ci-local" / "artifacts" / "pages" / "public"
    index = (public / "index.html").read_text()
    for name in names:
        assert f'href="store/{name}/history.html"' in index
        assert (public / "store" / name / "history.html").is_file()
        assert json.loads((public / "store" / name / "index.json").read_text())
    assert (public / "store" / "nightly-sid-shards.html").is_file()
