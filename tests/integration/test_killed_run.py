"""`tempest-live-ci run` SIGKILLed at the testbed stage, then `cleanup`: nothing is left.

The run is the real CLI with a real isolated testbed (its namespace, links,
dnsmasq, HTTP server) and the real apt proxy (apt-cacher-ng, the socats);
it is held and killed at two points (tests/integration/runs.py): while the
testbed is being set up (right after apt-cacher-ng started, before its
socats) and right after the testbed is up, in the VM
stage before anything boots (no qemu ever starts).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.image.livebuild import mounts_under
from tempest_live_ci.testbed import aptproxy
from tests.conftest import Dirs, _processes_using, needs_root
from tests.integration.runs import fake_image, held_run, job_file

pytestmark = [needs_root]

Tlc = Callable[..., subprocess.CompletedProcess[str]]


def netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def nft_tables() -> str:
    return subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout


@pytest.mark.parametrize("hang_at", ["apt-cacher-ng", "qemu"])
def test_a_run_killed_at_the_testbed_stage_leaves_nothing_after_cleanup(
        tlc: Tlc, dirs: Dirs, no_leaks: None, tmp_path: Path, hang_at: str) -> None:
    job = job_file(tmp_path)
    fake_image(job)
    before_ns, before_tables = netns(), nft_tables()
    output = tmp_path / "out"
    try:
        with held_run(dirs, job, output, hang_at) as run:
            run_id = run_id_of(output)
            assert run_id in netns() - before_ns
            state = dirs.state / run_id
            assert (state / "journal.json").exists()
            daemon = aptproxy.daemon_pid(aptproxy.proxy_state_dir())
            assert daemon is not None and proc.pid_alive(daemon)
            running = _processes_using(str(dirs.top)) - {run.process.pid, run.hang_pid}
            # dnsmasq, HTTP, apt-cacher-ng; and the two socats once the testbed is up.
            assert len(running) == (5 if hang_at == "qemu" else 3), running
            stderr = run.kill()
        assert "Setting up the testbed" in stderr
        assert ("Booting the guest" in stderr) is (hang_at == "qemu")
        # What SIGKILL left: the namespace and every daemon (own sessions all).
        assert run_id in netns()
        assert running <= _processes_using(str(dirs.top))

        dry = tlc("cleanup", "--dry-run", check=True)
        assert f"{run_id}: its run is gone" in dry.stdout, dry.stdout + dry.stderr
        result = tlc("cleanup", check=True)
        assert f"{run_id}: removed network namespace {run_id}" in result.stdout, result.stdout
        assert f"removed process {daemon} (apt-cacher-ng)" in result.stdout, result.stdout
    finally:
        tlc("cleanup")

    # Nothing left: namespaces, links (no_leaks), nftables, processes, mounts, state.
    # Only the run's: tests elsewhere on the host make and remove namespaces meanwhile
    # (no_leaks checks those this test's state directory owns).
    assert run_id not in netns()
    assert nft_tables() == before_tables
    assert not _processes_using(str(dirs.top))
    assert not mounts_under(dirs.top)
    assert not state.exists()
    proxy_state = aptproxy.proxy_state_dir()
    assert not list(proxy_state.glob("*.pid")) and not list(proxy_state.glob("*.sock"))
    assert sorted(p.name for p in dirs.state.iterdir()) == ["apt-cacher-ng", "registry"]
    assert not list((dirs.state / "registry").glob("*.json"))  # every record undone
    assert tlc("cleanup", check=True).stderr.strip().endswith("nothing to clean up")


def run_id_of(output: Path) -> str:
    found = re.search(r"run id (tlc-[0-9a-f]{8})", (output / "run.log").read_text())
    assert found is not None
    return found.group(1)
