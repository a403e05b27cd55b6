"""End to end: the identity profile's in-guest stages through the ssh backend.

The guest is the live image (identity preinstalled) booted by `vm boot`,
the libvirt stack's own command, and kept there; `run --machine ssh:` then
logs in to it as a machine someone else booted would be (its address in the
testbed, the image's key and pinned host key, from inside the testbed's
namespace) and runs prepare, install, configure, tempest-conf, tempest and
the logs over the protocol alone: no image, no testbed, no boot of its own.
The same guest first runs a job whose setup command fails: the error names
the step and the command's status, the logs still come home, and the guest
serves the identity profile's token tests after it (the default job's
whole selection runs on the libvirt stack, test_run.py), as a package's
Salsa CI pipeline runs its upload check on it under gitlab-ci-local,
through the shipped template and gitlab/run-job. CI has one boot for both,
and for `vm boot`, `vm ssh` and `vm destroy` themselves.

A run on such a guest that gets SIGTERM under tempest (the partial report,
and tempest stopped on a machine that outlives the run) is a nightly test
with a guest of its own: CI has the interrupt's report and the stop of the
step beside the default job (test_run.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tempest_live_ci.image import Image
from tempest_live_ci.job import parse_job
from tempest_live_ci.testbed.config import new_run_id
from tempest_live_ci.testbed.lifecycle import APT_PROXY_PORT
from tempest_live_ci.vm.boot import VMState
from tests.conftest import TOP, Dirs, needs_root
from tests.debs import build_deb
from tests.e2e.test_interrupts import check_interrupted, passed_one
from tests.integration.test_gitlab import install_gcl, package_repo, run_gcl
from tests.subunitgen import failed, passed, subunit_stats

Tlc = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [needs_root, pytest.mark.slow]

# A few tests of the identity profile (a minute under TCG), for the runs on the kept guest.
TOKEN_TESTS = "tempest:\n  regex: tempest\\.api\\.identity\\.v3\\.test_tokens\n"
# What they are on trixie (tempest 43): a test's idempotent id never changes.
TOKEN_TEST_IDS = tuple(
    f"tempest.api.identity.v3.test_tokens.TokensV3Test.{name}[id-{uuid}]" for name, uuid in (
        ("test_create_token", "6f8e4436-fc96-4282-8122-e41df57197a9"),
        ("test_token_auth_creation_existence_deletion", "0f9f5a5f-d5cd-4a86-8a5b-c5ded151f212"),
        ("test_validate_token", "a9512ac3-3909-48a4-b395-11f438e16260")))


@dataclass
class Kept:
    """A guest booted by `vm boot` and kept, as `run --machine ssh:` reaches it."""

    run_id: str
    state: VMState
    host_key: Path
    via: list[str]  # run's --machine, --ssh-key, --host-key, --ssh-netns
    env: dict[str, str]


@contextlib.contextmanager
def kept_guest(tlc: Tlc, dirs: Dirs, image: Image, tmp_path: Path) -> Iterator[Kept]:
    """`vm boot` (the default job's memory), checked; its apt through the testbed's proxy;
    `vm destroy` at the end, checked."""
    env = {"TEMPEST_LIVE_CI_CACHE_DIR": str(image.directory.parent.parent)}
    run_id = new_run_id()
    memory = parse_job({}, "default", "default").vm.memory_mib
    boot = tlc("vm", "boot", "--run-id", run_id, "--image", image.hash,
               *(["--memory", str(memory)] if memory else []), env=env, timeout=1200)
    try:
        assert boot.returncode == 0, boot.stderr[-3000:]
        check_the_kept_guest(tlc, run_id, boot, env)
        state = VMState.read(dirs.state / run_id)
        assert state.netns == run_id
        # The machine's own way to the archive, as its admin would set it: the testbed's
        # apt proxy (the namespace has no other way out).
        proxy = tlc("vm", "ssh", "--run-id", run_id, "--",
                    "echo 'Acquire::http::Proxy \"http://192.168.100.1:"
                    f"{APT_PROXY_PORT}\";' > /etc/apt/apt.conf.d/00proxy", env=env)
        assert proxy.returncode == 0, proxy.stderr
        host_key = tmp_path / "host_key.pub"
        host_key.write_text(state.host_key + "\n")
        via = ["--machine", f"ssh:root@{state.address}:22", "--ssh-key", state.private_key,
               "--host-key", str(host_key), "--ssh-netns", state.netns or ""]
        yield Kept(run_id, state, host_key, via, env)
        # The runs left the machine running: it is not theirs to stop.
        alive = tlc("vm", "ssh", "--run-id", run_id, "--", "true", env=env)
        assert alive.returncode == 0, alive.stderr
    finally:
        destroy = tlc("vm", "destroy", "--run-id", run_id, env=env)
    assert destroy.returncode == 0, destroy.stderr
    assert run_id not in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                        text=True).stdout
    assert not (dirs.state / run_id).exists()


def test_the_identity_stages_through_the_ssh_backend_on_a_kept_guest(
        tlc: Tlc, dirs: Dirs, no_leaks: None, live_image: Image, tmp_path: Path) -> None:
    with kept_guest(tlc, dirs, live_image, tmp_path) as kept:
        state = kept.state
        check_a_failing_setup_command_names_the_step(tlc, kept.via, kept.env, tmp_path)
        # The identity profile's stages, with its token tests (the whole default job's
        # tests run on the libvirt stack, test_run.py), as a package's upload check
        # runs them under gitlab-ci-local.
        out = check_an_upload_check_through_gitlab_ci_local(dirs, state, kept.host_key,
                                                            kept.env, tmp_path)
        summary = json.loads((out / "summary.json").read_text())
        assert summary["exit_code"] == 0 and summary["metadata"]["profile"] == "identity"
        assert summary["counts"]["passed"] > 0 and summary["counts"]["failed"] == 0
        machine = summary["machine"]
        assert (machine["backend"], machine["address"]) == ("ssh", state.address)
        assert machine["apt_proxy"] == f"http://192.168.100.1:{APT_PROXY_PORT}"
        assert "root" in machine["capabilities"]
        # The stages of the guest ran; nothing of the libvirt stack's did.
        assert {"machine", "prepare", "install", "candidates", "configure", "tempest",
                "logs"} <= set(summary["stages"])
        assert not {"archive", "image", "testbed", "vm"} & set(summary["stages"])
        assert (out / "tempest.subunit").stat().st_size > 0
        assert (out / "junit.xml").is_file() and (out / "report.html").is_file()
        assert (out / "guest-logs" / "var/log/tempest-live-ci/journal.txt").is_file()
        assert (out / "tempest.conf").is_file()


@pytest.mark.nightly
def test_tempest_interrupted_on_a_kept_machine(tlc: Tlc, dirs: Dirs, no_leaks: None,
                                               live_image: Image, tmp_path: Path) -> None:
    with kept_guest(tlc, dirs, live_image, tmp_path) as kept:
        check_tempest_interrupted_on_the_machine(dirs, tlc, kept.run_id, kept.via, kept.env,
                                                 tmp_path)


def check_the_kept_guest(tlc: Tlc, run_id: str, boot: subprocess.CompletedProcess[str],
                         env: dict[str, str]) -> None:
    """`vm boot` left the guest up, booted from the network, and said how to reach it."""
    assert f"vm ssh --run-id {run_id}" in boot.stderr + boot.stdout
    # The guest outlives the command that booted it.
    assert run_id in subprocess.run(["ip", "netns", "list"], capture_output=True,
                                    text=True).stdout
    cmdline = tlc("vm", "ssh", "--run-id", run_id, "--", "cat", "/proc/cmdline", env=env)
    assert cmdline.returncode == 0, cmdline.stderr
    assert "fetch=http://192.168.100.1/img/filesystem.squashfs" in cmdline.stdout
    assert "console=ttyS0" in cmdline.stdout
    # systemd finished booting: nothing waits, nothing failed.
    state = tlc("vm", "ssh", "--run-id", run_id, "--", "systemctl is-system-running --wait",
                env=env, timeout=300)
    failed = tlc("vm", "ssh", "--run-id", run_id, "--", "systemctl", "--failed", "--no-legend",
                 "--plain", env=env)
    assert state.stdout.strip() == "running", f"system {state.stdout}; failed:\n{failed.stdout}"
    # The command's status is vm ssh's own.
    status = tlc("vm", "ssh", "--run-id", run_id, "--", "exit", "3", env=env)
    assert status.returncode == 3


# Tests one at a time: still running once the first has passed.
ONE_AT_A_TIME = "tempest:\n  regex: tempest\\.api\\.identity\\.v3\n  concurrency: 1\n"


def check_tempest_interrupted_on_the_machine(dirs: Dirs, tlc: Tlc, run_id: str, via: list[str],
                                             env: dict[str, str], tmp_path: Path) -> None:
    """SIGTERM (a CI runner's timeout) once a test has passed: exit 130, the tests done
    so far reported as incomplete, and tempest stopped on the machine, which the run
    does not own and leaves running."""
    work = tmp_path / "interrupted"
    work.mkdir()
    job = work / "job.yaml"
    job.write_text(ONE_AT_A_TIME)
    stderr = work / "stderr"
    out = work / "out"
    with open(stderr, "w") as err:
        process = subprocess.Popen(
            [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "run", str(job), *via,
             "--output", str(out)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=err, text=True, env={**os.environ, **dirs.env(), **env})
    try:
        deadline = time.monotonic() + 1800
        while not passed_one(out / "tempest.subunit"):
            assert process.poll() is None, \
                f"the run ended before a test passed:\n{stderr.read_text()[-3000:]}"
            assert time.monotonic() < deadline, "no test passed after 30 min"
            time.sleep(1)
        process.send_signal(signal.SIGTERM)
        code = process.wait(300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    text = stderr.read_text()
    assert code == 130, text[-3000:]
    check_interrupted(text)
    assert "stopping step tempest in the guest" in text
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 130 and summary["complete"] is False
    assert summary["incomplete"]["interrupted"] is True
    stats = subunit_stats(out / "tempest.subunit")
    counts = summary["counts"]
    assert stats["passed"] > 0
    assert counts["passed"] + counts["xfail"] + counts["uxsuccess"] == stats["passed"]
    assert (out / "report.html").is_file() and (out / "junit.xml").is_file()
    # Nothing of tempest runs on: the step, tempest and its workers were ended.
    ps = tlc("vm", "ssh", "--run-id", run_id, "--", "ps", "-eo", "args", env=env)
    assert ps.returncode == 0, ps.stderr
    running = [line for line in ps.stdout.splitlines()
               if "-m deploy" in line or "tempest run" in line or "subunit.run" in line]
    assert not running, running
    record = tlc("vm", "ssh", "--run-id", run_id, "--", "test", "-e",
                 "/var/lib/tempest-live-ci/steps/tempest.pid", env=env)
    assert record.returncode == 1


def check_a_failing_setup_command_names_the_step(tlc: Tlc, via: list[str],
                                                 env: dict[str, str], tmp_path: Path) -> None:
    job = tmp_path / "failing.yaml"
    job.write_text("guest:\n  setup_commands:\n    - echo preparing\n"
                   "    - echo 'no such thing' >&2; exit 7\n")
    out = tmp_path / "out-failing"  # kept by pytest after a failure
    result = tlc("run", str(job), *via, "--output", str(out), env=env, timeout=1200)
    assert result.returncode == 16, result.stderr[-3000:]
    error = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert error and "step prepare failed" in error[-1] and "exited with status 7" in error[-1]
    assert "no such thing" in error[-1]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["exit_code"] == 16
    # Logs are collected in finally, also from a failed run.
    assert (out / "guest-logs" / "var/log/tempest-live-ci/journal.txt").is_file()
    assert not (out / "tempest.subunit").exists()


# The upload check's job, as a package's pipeline would name it: trixie (the kept guest's),
# the profile chosen from the candidates' source (identity for keystone), the token tests.
UPLOAD_CHECK = f"name: upload-check-trixie\n{TOKEN_TESTS}  profile: auto\n"


def check_an_upload_check_through_gitlab_ci_local(dirs: Dirs, state: VMState, host_key: Path,
                                                  env: dict[str, str], tmp_path: Path) -> Path:
    """A package's Salsa CI pipeline under gitlab-ci-local: its build job leaves a binary
    upload of source keystone in debian/output (a small real package, which installs
    beside keystone without touching it), and the shipped template's upload check runs
    the real tool through gitlab/run-job on this machine (TEMPEST_LIVE_CI_MACHINE),
    compared with a nightly's results fetched from a URL: the candidate installed, the
    tests passed, the nightly's failure fixed, the job passed. The run's directory, as
    the job's artifacts hold it."""
    built = tmp_path / "built"
    built.mkdir()
    repo = package_repo(tmp_path, built, [
        build_deb(built, "keystone-tlc-probe", "2:27.0.0-2+ci1", source="keystone")])
    job = tmp_path / "upload-check-trixie.yaml"
    job.write_text(UPLOAD_CHECK)
    # The nightly's run directory the pipeline compares with, at a URL as its artifacts
    # would be (file://: curl in gitlab/run-job fetches it the same way). Its stream is
    # made here, as a nightly whose token validation failed; its summary by `results show`.
    nightly = tmp_path / "nightly"
    nightly.mkdir()
    (nightly / "tempest.subunit").write_bytes(
        passed(TOKEN_TEST_IDS[0]) + passed(TOKEN_TEST_IDS[1]) + failed(TOKEN_TEST_IDS[2]))
    shown = subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), "results",
                            "show", str(nightly)], capture_output=True, text=True)
    assert shown.returncode == 4, shown.stderr
    # The tool from this checkout, with the python that has its dependencies.
    tool = tmp_path / "tempest-live-ci"
    tool.write_text(f"#!/bin/sh\nexec {sys.executable} {TOP / 'bin' / 'tempest-live-ci'} \"$@\"\n")
    tool.chmod(0o755)
    variables = {
        "SALSA_CI_ENABLE_TEMPEST_LIVE_CI": "1", "TEMPEST_LIVE_CI_RUN_JOB": str(TOP / "gitlab" / "run-job"),
        "TEMPEST_LIVE_CI_BIN": str(tool), "TEMPEST_LIVE_CI_JOB": str(job),
        "TEMPEST_LIVE_CI_MACHINE": f"ssh:root@{state.address}:22",
        "TEMPEST_LIVE_CI_SSH_KEY": state.private_key, "TEMPEST_LIVE_CI_HOST_KEY": str(host_key),
        "TEMPEST_LIVE_CI_SSH_NETNS": state.netns or "",
        "TEMPEST_LIVE_CI_BASELINE_URL": nightly.as_uri(), **dirs.env(), **env}
    result = run_gcl(install_gcl(), repo, variables=variables, timeout=2400)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    log = (repo / ".gitlab-ci-local" / "output" / "tempest-live-ci.log").read_text()
    assert "tempest-live-ci: exit 0: every test passed" in log
    artifacts = repo / ".gitlab-ci-local" / "artifacts" / "tempest-live-ci" / "tempest-live-ci"
    summary = json.loads((artifacts / "summary.json").read_text())
    assert summary["exit_code"] == 0
    assert [(c["package"], c["installed"]) for c in summary["candidates"]] == \
        [("keystone-tlc-probe", "2:27.0.0-2+ci1")]
    # Compared with the nightly fetched into baseline/: the failure there is fixed here.
    assert summary["baseline"]["path"].endswith("/baseline"), summary["baseline"]
    assert summary["baseline"]["fixed"] == [TOKEN_TEST_IDS[2]], summary["baseline"]
    assert summary["baseline"]["regressions"] == []
    assert "baseline" in summary["stages"]
    return artifacts
