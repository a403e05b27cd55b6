"""End to end: a run interrupted at each of its stages leaves nothing behind.

SIGINT (Ctrl-C) and SIGTERM (a CI runner's timeout, systemd's stop) unwind
the run: every stage undoes what it made, in reverse order, and the run ends
with exit 130. SIGKILL leaves the run no chance: `tempest-live-ci cleanup`
then finds everything from the journal and the run id. After each, nothing
of the run is left: namespaces, links, processes, libvirt domains, nftables
tables, mounts and state directories are compared with before.

The signal is sent once the stage's title is on stderr and a few seconds
have passed, so the stage is under way (in tempest: once a test is done).
SIGTERM and SIGHUP are turned into the KeyboardInterrupt of Ctrl-C at once
(cli.py), so each stage is interrupted by one of the two, and both signals
are covered. The in-guest steps (prepare, install, configure, tempest)
leave the host in the same state as the boot; they take a guest booted,
installed and configured (three to six minutes under TCG each), and are
nightly: tempest interrupted beside the default job (test_run.py: the
partial report, the step stopped in the guest), configure interrupted, and
tempest interrupted beside a guest killed under tempest (two runs side by
side).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.image import Image
from tempest_live_ci.results.stream import read_stream
from tests.conftest import TOP, Dirs, needs_root
from tests.conftest import _processes_using as processes_using
from tests.e2e.test_run import _qemu_of as qemu_of
from tests.e2e.test_run import run_id_in
from tests.subunitgen import subunit_stats

pytestmark = [needs_root, pytest.mark.slow]

JOB = "tempest:\n  regex: tempest\\.api\\.identity\\.v3\n  concurrency: 1\n"


def host_state(dirs: Dirs) -> dict[str, set[str]]:
    """What a run can leave on the host, each as a set of names to compare."""
    def lines(argv: list[str]) -> set[str]:
        result = proc.run(argv, capture=True, check=False)
        return {line.strip() for line in result.stdout.splitlines() if line.strip()}

    return {
        "domains": lines(["virsh", "-c", "qemu:///system", "list", "--all", "--name"]),
        "nft tables": lines(["nft", "list", "tables"]),
        "mounts": {line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()
                   if str(dirs.top) in line},
        "state": {p.name for p in dirs.state.glob("tlc-*")},
    }


def processes_of(*markers: str) -> set[int]:
    """Processes whose command line names one of `markers` (the run id, the test's dirs)."""
    return set().union(*(processes_using(marker) for marker in markers))


@pytest.fixture
def nothing_left(dirs: Dirs, no_leaks: None) -> Iterator[None]:
    # no_leaks: the namespaces, links and processes of the test's own runs
    # (not those other work on the host makes meanwhile).
    before = host_state(dirs)
    yield
    after = host_state(dirs)
    left = {kind: sorted(after[kind] - before[kind]) for kind in after
            if after[kind] - before[kind]}
    assert not left, f"left behind: {left}"
    assert not processes_of(str(dirs.top)), "processes left behind"


def start_run(dirs: Dirs, image: Image, work: Path) -> tuple[subprocess.Popen[str], Path]:
    """A run of JOB in the background: its job file, stderr and out/ in `work`."""
    work.mkdir(exist_ok=True)
    job = work / "interrupted.yaml"
    job.write_text(JOB)
    stderr = work / "stderr"
    env = {**os.environ, **dirs.env(),
           "TEMPEST_LIVE_CI_CACHE_DIR": str(image.directory.parent.parent)}
    with open(stderr, "w") as err:
        process = subprocess.Popen(
            [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "run", str(job),
             "--output", str(work / "out")], stdout=subprocess.DEVNULL, stderr=err,
            text=True, env=env)
    return process, stderr


def wait_for(stderr: Path, process: subprocess.Popen[str], text: str, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while text not in (seen := stderr.read_text()):
        assert process.poll() is None, f"the run ended before {text!r}:\n{seen[-3000:]}"
        assert time.monotonic() < deadline, f"no {text!r} after {timeout:.0f} s:\n{seen[-3000:]}"
        time.sleep(0.2)
    return seen


# (the stage's title on stderr, then seconds more)
STAGES = {
    "testbed": ("Setting up the testbed…", 0.0),
    "boot": ("Booting the guest…", 5.0),
    "configure": ("Configuring OpenStack…", 20.0),
}
CASES = [
    pytest.param(stage, signum, id=f"{stage}-{signal.Signals(signum).name}",
                 marks=[pytest.mark.nightly] if nightly else [])
    for stage, signum, nightly in (("testbed", signal.SIGINT, False),
                                   ("boot", signal.SIGTERM, False),
                                   ("configure", signal.SIGINT, True))
]


@pytest.mark.parametrize(("stage", "signum"), CASES)
def test_an_interrupted_run_undoes_every_stage(stage: str, signum: int, dirs: Dirs,
                                               live_image: Image, nothing_left: None,
                                               tmp_path: Path) -> None:
    title, into = STAGES[stage]
    process, stderr = start_run(dirs, live_image, tmp_path)
    try:
        wait_for(stderr, process, title, 900)
        time.sleep(into)
        assert process.poll() is None, stderr.read_text()[-3000:]
        process.send_signal(signum)
        code = process.wait(300)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert code == 130, stderr.read_text()[-3000:]
    check_interrupted(stderr.read_text())


def check_interrupted(text: str) -> str:
    """The run said it was interrupted, ended with 130 and left no process: its run id."""
    assert "error: interrupted" in text, text[-3000:]
    assert "unexpected error" not in text
    run_id = re.search(r"run id (tlc-[0-9a-f]{8})", text)
    assert run_id is not None, text[-3000:]
    assert f"run {run_id.group(1)} ended with exit code 130" in text
    assert not processes_of(run_id.group(1)), "processes of the run left behind"
    return run_id.group(1)


def passed_one(stream: Path) -> bool:
    return stream.exists() and any(r.status == "passed" for r in read_stream(stream).records)


@pytest.mark.nightly
def test_tempest_interrupted_and_guest_killed_at_once(dirs: Dirs, live_image: Image,
                                                      nothing_left: None,
                                                      tmp_path: Path) -> None:
    """Two runs in tempest side by side, serial so that tests are still running
    once the first has passed. One gets SIGTERM (a CI runner's timeout): exit
    130. The other's qemu is killed (the OOM killer, a host in trouble): exit
    16. Both keep the tests done before as a report marked incomplete, and
    nothing of either is left."""
    works = {"sigterm": tmp_path / "sigterm", "killed": tmp_path / "killed"}
    runs = {name: start_run(dirs, live_image, work) for name, work in works.items()}
    try:
        deadline = time.monotonic() + 1800
        waiting = set(runs)
        while waiting:
            for name in sorted(waiting):
                process, stderr = runs[name]
                assert process.poll() is None, \
                    f"the {name} run ended before a test passed:\n{stderr.read_text()[-3000:]}"
                if passed_one(works[name] / "out" / "tempest.subunit"):
                    waiting.discard(name)
            assert time.monotonic() < deadline, f"no test passed in {sorted(waiting)} after 30 min"
            time.sleep(1)
        runs["sigterm"][0].send_signal(signal.SIGTERM)
        killed_id = run_id_in(runs["killed"][1].read_text())
        assert killed_id is not None
        os.kill(qemu_of(killed_id), signal.SIGKILL)
        codes = {name: process.wait(600) for name, (process, _) in runs.items()}
    finally:
        for process, _ in runs.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
                try:
                    process.wait(120)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
    texts = {name: stderr.read_text() for name, (_, stderr) in runs.items()}
    assert codes == {"sigterm": 130, "killed": 16}, \
        {name: text[-3000:] for name, text in texts.items()}
    check_interrupted(texts["sigterm"])
    # The killed guest is a testbed failure, told as such.
    assert "tests running at the time" in texts["killed"]
    assert "no logs from the guest: the guest stopped" in texts["killed"]
    assert "unexpected error" not in texts["killed"]
    assert not processes_of(killed_id), "processes of the killed guest's run left behind"
    assert (works["killed"] / "out" / "console.log").stat().st_size > 0
    for name, work in works.items():
        out = work / "out"
        summary = json.loads((out / "summary.json").read_text())
        assert summary["exit_code"] == codes[name] and summary["complete"] is False, name
        assert summary["incomplete"]["interrupted"] is True, name
        # What python-subunit reads of the cut stream: the tests that passed before.
        stats = subunit_stats(out / "tempest.subunit")
        assert stats["passed"] > 0, name
        counts = summary["counts"]
        assert counts["passed"] + counts["xfail"] + counts["uxsuccess"] == stats["passed"], name
        assert (out / "report.html").is_file() and (out / "junit.xml").is_file()



def test_a_killed_run_is_cleaned_up_by_cleanup(dirs: Dirs, live_image: Image,
                                               nothing_left: None, tmp_path: Path) -> None:
    process, stderr = start_run(dirs, live_image, tmp_path)
    try:
        # The guest is starting: the namespace, libvirtd, qemu and the
        # testbed's daemons all exist, as in any later stage.
        wait_for(stderr, process, "Booting the guest…", 900)
        time.sleep(10)
        process.send_signal(signal.SIGKILL)
        process.wait(60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    run_id = re.search(r"run id (tlc-[0-9a-f]{8})", stderr.read_text())
    assert run_id is not None
    # The killed run's namespace, domain and daemons are still there: cleanup's work.
    assert run_id.group(1) in proc.run(["ip", "netns", "list"], capture=True).stdout
    result = subprocess.run(
        [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "cleanup"],
        capture_output=True, text=True, timeout=300, env={**os.environ, **dirs.env()})
    assert result.returncode == 0, result.stderr
    assert run_id.group(1) in result.stderr + result.stdout
    assert not processes_of(run_id.group(1)), "processes of the run left behind"
