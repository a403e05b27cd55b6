"""End to end: `tempest-live-ci run` as the quick start runs it, under TCG here.

Real image (the identity profile preinstalled), real isolated testbed, real
network boot, real keystone and tempest in the guest, the subunit stream
home as it is produced: the quick start's run of the default job (ten
minutes here). Two whole runs of it side by side, one interrupted under
tempest, took 22 minutes in CI here: two TCG guests of two vCPUs on two
cores are slower side by side than one after the other (a boot 3m50s each
against a minute alone, configure 5m31s against 2m16s); they are a nightly
test. The in-guest stages through the ssh
backend are in test_machine_ssh.py, the profiles beyond identity in
test_profiles.py.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tempest_live_ci.image import Image
from tempest_live_ci.results.stream import read_stream
from tests.conftest import TOP, Dirs, _processes_using, needs_root
from tests.subunitgen import subunit_stats

pytestmark = [needs_root, pytest.mark.slow]


def run_env(dirs: Dirs, image: Image) -> dict[str, str]:
    # The session's image store: the run finds the image the fixture built.
    return {**os.environ, **dirs.env(),
            "TEMPEST_LIVE_CI_CACHE_DIR": str(image.directory.parent.parent)}


def tlc_run(dirs: Dirs, image: Image, *args: str,
            timeout: float = 2400) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), "run", *args],
                          capture_output=True, text=True, timeout=timeout,
                          env=run_env(dirs, image))


def run_id_in(stderr: str) -> str | None:
    found = re.search(r"run id (tlc-[0-9a-f]{8})", stderr)
    return found.group(1) if found else None


def namespace_inodes() -> dict[str, int]:
    """The host's named network namespaces: name → inode (two namespaces, two inodes)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        if line.strip():
            name = line.split()[0]
            with contextlib.suppress(OSError):
                found[name] = os.stat(f"/run/netns/{name}").st_ino
    return found


def links_in(netns: str | None) -> set[str]:
    argv = ["ip", *(["-n", netns] if netns else []), "-o", "link", "show"]
    out = subprocess.run(argv, capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


@dataclass
class Overlap:
    """What was seen of two runs while both ran: sampled every second."""

    # Samples in which both runs' namespaces existed, and both guests' qemu ran.
    both_namespaces: int = 0
    both_guests: int = 0
    namespace_inodes: set[tuple[int, int]] = field(default_factory=set)
    links: dict[str, set[str]] = field(default_factory=dict)
    # Links of the runs that showed up in the host's own namespace (none should).
    on_the_host: set[str] = field(default_factory=set)
    # When the first "Running tempest…" was seen: had both runs said "Booting the guest…"?
    both_booted_before_tempest: bool | None = None

    def sample(self, ids: list[str], stderrs: list[str], host_links: set[str]) -> None:
        if self.both_booted_before_tempest is None \
                and any("Running tempest…" in text for text in stderrs):
            self.both_booted_before_tempest = all("Booting the guest…" in text
                                                  for text in stderrs)
        namespaces = namespace_inodes()
        if all(run_id in namespaces for run_id in ids):
            self.both_namespaces += 1
            self.namespace_inodes.add((namespaces[ids[0]], namespaces[ids[1]]))
            for run_id in ids:
                self.links.setdefault(run_id, set()).update(links_in(run_id))
        if all(_qemu_of(run_id, missing_ok=True) for run_id in ids):
            self.both_guests += 1
        self.on_the_host |= {name for name in links_in(None) - host_links
                             if name.startswith("tempest") or any(i in name for i in ids)}


def check_passed_identity_run(out: Path, stderr: str, run_id: str) -> dict[str, Any]:
    """One run of the default job, from its stderr and output directory; its summary."""
    for title in ("Preparing the image", "Setting up the testbed", "Booting the guest",
                  "Installing OpenStack (profile identity)", "Configuring OpenStack",
                  "Running tempest"):
        assert f"{title}…" in stderr
    # The live progress while tempest ran.
    assert re.search(r"tempest: \d+ tests done: \d+ passed, 0 failed", stderr)

    stream = read_stream(out / "tempest.subunit")
    passed = [r.id for r in stream.records if r.status == "passed"]
    assert passed and all(t.startswith("tempest.api.identity.v3.") for t in passed), passed
    assert any(".test_tokens." in t for t in passed)

    summary: dict[str, Any] = json.loads((out / "summary.json").read_text())
    # Its own: the run id it said on stderr, in its summary and its results.
    assert summary["run_id"] == run_id and summary["metadata"]["run_id"] == run_id
    assert summary["exit_code"] == 0
    # The counts are python-subunit's (subunit-stats), not our reader's own.
    counts, stats = summary["counts"], subunit_stats(out / "tempest.subunit")
    assert counts["total"] == stats["total"] and counts["skipped"] == stats["skipped"]
    assert counts["passed"] + counts["xfail"] + counts["uxsuccess"] == stats["passed"]
    assert counts["failed"] == counts["error"] == stats["failed"] == 0
    # Every stage and every in-guest step timed; the versions of the profile's packages.
    assert {"image", "testbed", "vm", "prepare", "install", "configure", "tempest",
            "results", "logs", "total"} <= set(summary["stages"])
    steps = summary["metadata"]["steps"]
    assert {"prepare", "install", "configure", "tempest-conf", "tempest"} <= set(steps)
    assert steps["configure"]["parts"]["keystone answers"] > 0
    assert summary["metadata"]["versions"]["keystone"].startswith("2:")
    assert summary["image"]["preinstalled_profile"] == "identity"

    junit = ET.parse(out / "junit.xml").getroot()
    suite = junit if junit.tag == "testsuite" else junit.find("testsuite")
    assert suite is not None
    assert int(suite.get("tests", "0")) == summary["counts"]["total"]
    assert int(suite.get("failures", "0")) == 0
    report = (out / "report.html").read_text()
    assert f"<b>{counts['passed']}</b><span>passed</span>" in report

    # What an OpenStack engineer opens first.
    conf = (out / "tempest.conf").read_text()
    assert "[service_available]" in conf and re.search(r"nova\s*=\s*false", conf)
    assert (out / "tempest.log").stat().st_size > 0
    assert "keystone" in (out / "packages.txt").read_text()
    logs = out / "guest-logs"
    assert (logs / "var/log/tempest-live-ci/journal.txt").stat().st_size > 0
    # The application credential tests need keystone's one-thread-per-process setting.
    assert any(".test_application_credentials." in t for t in passed)
    assert list((logs / "var/log/keystone").glob("*.log"))
    for step in ("prepare", "install", "configure", "tempest-conf", "tempest"):
        assert (logs / "steps" / f"{step}.log").is_file()
    assert (out / "console.log").stat().st_size > 0
    # The guest's console is its own run's: libvirt names the domain after the run id.
    assert f"<name>{run_id}</name>" in (out / "domain.xml").read_text()
    return summary


def _qemu_of(run_id: str, *, missing_ok: bool = False) -> int:
    """The pid of the run's qemu: libvirt names the domain after the run id (-name guest=ID).

    0 if there is none and missing_ok."""
    wanted = f"guest={run_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and b"qemu-system" in argv[0] and any(a.startswith(wanted) for a in argv):
            return int(entry.name)
    if missing_ok:
        return 0
    raise AssertionError(f"no qemu process for {run_id}")


def test_the_quick_starts_default_job(dirs: Dirs, no_leaks: None, live_image: Image,
                                     tmp_path: Path) -> None:
    """`run` with no job file, as the quick start runs it: it passes, is stored under its
    job, and leaves nothing behind."""
    # deferred: test_interrupts imports this module
    from tests.e2e.test_interrupts import host_state

    before = host_state(dirs)
    host_links = links_in(None)
    out = tmp_path / "out"  # kept by pytest after a failure
    result = tlc_run(dirs, live_image, "--output", str(out))
    assert result.returncode == 0, result.stderr[-6000:]
    run_id = run_id_in(result.stderr)
    assert run_id is not None
    summary = check_passed_identity_run(out, result.stderr, run_id)
    # The job's regex is a dotted name: stestr looked for tests in that package alone.
    assert summary["metadata"]["discovered"] == \
        "/usr/lib/python3/dist-packages/tempest/api/identity/v3", summary["metadata"]
    # The boot's phases, timed: the network boot (iPXE, DHCP, HTTP) and the login.
    assert {"dhcp", "boot.ipxe", "kernel", "initrd", "squashfs", "ssh", "login"} \
        <= set(summary["boot"]), summary["boot"]
    stored = json.loads((dirs.results / "smoke-trixie" / run_id / "summary.json").read_text())
    assert stored["run_id"] == run_id and stored["counts"] == summary["counts"]
    latest = json.loads((dirs.results / "smoke-trixie" / "latest" / "summary.json").read_text())
    assert latest["run_id"] == run_id
    # Its testbed was its own namespace: nothing of it showed up on the host, nothing is left.
    assert not {name for name in links_in(None) - host_links
                if name.startswith("tempest") or run_id in name}
    after = host_state(dirs)
    left = {kind: sorted(after[kind] - before[kind]) for kind in after
            if after[kind] - before[kind]}
    assert not left, f"left behind: {left}"
    assert not _processes_using(run_id), f"processes of run {run_id} left behind"
    assert not (dirs.state / run_id).exists()


@pytest.mark.nightly
def test_the_default_job_beside_a_run_interrupted_under_tempest(dirs: Dirs, no_leaks: None,
                                                               live_image: Image,
                                                               tmp_path: Path) -> None:
    """Two runs at once on this host (a CI runner with two jobs), each with its isolated
    testbed: a namespace of its own, named by its run id, with its own bridge and tap.

    One is the quick start's run of the default job: it must pass as if alone.
    The other runs the identity API tests one at a time; once one has passed,
    it gets SIGTERM (a CI runner's timeout): the step is stopped in the guest,
    the tests done so far are reported as incomplete, exit 130, and the run
    unwinds every stage. The other run is left alone. Two TCG guests share the
    cores: each run takes longer than alone. (A guest killed under tempest is
    the nightly test_interrupts.py's.)
    """
    # deferred: test_interrupts imports this module
    from tests.e2e.test_interrupts import check_interrupted, host_state, passed_one, start_run

    before = host_state(dirs)
    works = {"default": tmp_path / "default", "interrupted": tmp_path / "interrupted"}
    host_links = links_in(None)
    overlap = Overlap()
    runs = {"default": start_default_run(dirs, live_image, works["default"]),
            "interrupted": start_run(dirs, live_image, works["interrupted"])}
    stderrs = {name: stderr for name, (_, stderr) in runs.items()}
    signalled = False
    try:
        deadline = time.monotonic() + 3600
        while any(process.poll() is None for process, _ in runs.values()):
            assert time.monotonic() < deadline, "the two runs took more than an hour"
            default = runs["default"][0].poll()
            assert default in (None, 0), stderrs["default"].read_text()[-6000:]
            now = [stderrs[name].read_text() for name in ("default", "interrupted")]
            seen = [run_id_in(text) for text in now]
            if seen[0] is not None and seen[1] is not None:
                overlap.sample([seen[0], seen[1]], now, host_links)
            if not signalled:
                assert runs["interrupted"][0].poll() is None, \
                    f"the run ended before it was interrupted:\n{now[1][-3000:]}"
                if passed_one(works["interrupted"] / "out" / "tempest.subunit"):
                    runs["interrupted"][0].send_signal(signal.SIGTERM)
                    signalled = True
            time.sleep(1)
    finally:
        # A failure in one run (or in this test) still unwinds the other: Ctrl-C, then wait.
        for process, _ in runs.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process, _ in runs.values():
            try:
                process.wait(300)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    texts = {name: stderr.read_text() for name, stderr in stderrs.items()}
    codes = {name: process.returncode for name, (process, _) in runs.items()}
    assert codes == {"default": 0, "interrupted": 130}, \
        {name: text[-4000:] for name, text in texts.items()}
    ids = [run_id_in(texts["default"]), check_interrupted(texts["interrupted"])]
    assert None not in ids and ids[0] != ids[1], ids

    # At the same time, not one after the other: both namespaces at once, both guests at
    # once; each in its own namespace with its own bridge and tap; nothing on the host.
    assert overlap.both_namespaces > 0, f"the two runs' namespaces never existed at once: {overlap}"
    assert overlap.both_guests > 0, f"the two guests never ran at the same time: {overlap}"
    assert all(a != b for a, b in overlap.namespace_inodes), overlap
    for run_id in ids:
        assert {"tempestbr", "tempesttap"} <= overlap.links[str(run_id)], overlap
    assert not overlap.on_the_host, overlap

    out = works["default"] / "out"
    summary = check_passed_identity_run(out, texts["default"], str(ids[0]))
    # The boot's phases, timed: the network boot (iPXE, DHCP, HTTP) and the login.
    assert {"dhcp", "boot.ipxe", "kernel", "initrd", "squashfs", "ssh", "login"} \
        <= set(summary["boot"]), summary["boot"]
    stored = json.loads((dirs.results / "smoke-trixie" / str(ids[0]) / "summary.json")
                        .read_text())
    assert stored["run_id"] == ids[0] and stored["counts"] == summary["counts"]
    latest = json.loads((dirs.results / "smoke-trixie" / "latest" / "summary.json").read_text())
    assert latest["run_id"] == ids[0]

    # The interrupted run: the tempest step stopped in the guest (deploy/running.py's words
    # in the step's log: its process group ended by SIGTERM, nothing left to SIGKILL), the
    # tests done before it reported as incomplete.
    interrupted = works["interrupted"] / "out"
    assert "stopping step tempest in the guest" in texts["interrupted"]
    step_log = (interrupted / "guest-logs" / "steps" / "tempest.log").read_text()
    assert "stopping step tempest: SIGTERM to process group" in step_log, step_log[-2000:]
    assert "SIGKILL" not in step_log
    summary = json.loads((interrupted / "summary.json").read_text())
    assert summary["exit_code"] == 130 and summary["complete"] is False
    assert summary["incomplete"]["interrupted"] is True
    stats = subunit_stats(interrupted / "tempest.subunit")
    assert stats["passed"] > 0
    counts = summary["counts"]
    assert counts["passed"] + counts["xfail"] + counts["uxsuccess"] == stats["passed"]
    assert (interrupted / "report.html").is_file() and (interrupted / "junit.xml").is_file()

    # Nothing of either run is left (and no_leaks: namespaces, links, processes).
    after = host_state(dirs)
    left = {kind: sorted(after[kind] - before[kind]) for kind in after
            if after[kind] - before[kind]}
    assert not left, f"left behind: {left}"
    for run_id in ids:
        assert not _processes_using(str(run_id)), f"processes of run {run_id} left behind"
        assert not (dirs.state / str(run_id)).exists()


def start_default_run(dirs: Dirs, image: Image,
                      work: Path) -> tuple[subprocess.Popen[str], Path]:
    """The quick start's `run` (no job file: the default job) in the background."""
    work.mkdir()
    stderr = work / "stderr"
    with open(stderr, "w") as err:
        process = subprocess.Popen(
            [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "run",
             "--output", str(work / "out")], stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=err, text=True, env=run_env(dirs, image))
    return process, stderr
