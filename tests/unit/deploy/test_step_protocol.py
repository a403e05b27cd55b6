"""`python3 -m deploy STEP` as the guest runs it: its result file, memory peak included."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tempest_live_ci import deploy

# Where the in-guest package is: the source tree, or the installed package under autopkgtest.
DEPLOY_PARENT = Path(deploy.__file__).resolve().parents[1]


def run_step(tmp_path: Path, step: str) -> tuple[subprocess.CompletedProcess[str], dict[str, object]]:
    state = tmp_path / "state"
    state.mkdir(exist_ok=True)
    (state / "params.json").write_text("{}\n")
    result = subprocess.run(
        [sys.executable, "-m", "deploy", step], capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(DEPLOY_PARENT),
             "TEMPEST_LIVE_CI_GUEST_STATE": str(state)})
    return result, json.loads((state / "steps" / f"{step}.json").read_text())


def test_a_step_records_the_memory_in_use_at_its_peak(tmp_path: Path) -> None:
    result, data = run_step(tmp_path, "check")
    assert result.returncode == 0, result.stderr
    facts = data["facts"]
    assert isinstance(facts, dict)
    total_mib = facts["memory_kib"] // 1024
    # MemTotal - MemAvailable while the step ran: more than nothing, less than all.
    assert 0 < facts["memory_peak_mib"] < total_mib
    assert data["status"] == "ok" and data["error"] is None


def test_a_failed_step_still_writes_its_result(tmp_path: Path) -> None:
    # configure with an empty params.json: its missing keys named, exit 3.
    result, data = run_step(tmp_path, "configure")
    assert result.returncode == 3
    assert data["status"] == "failed"
    assert "params: missing keys profile, suite" in str(data["error"])
    assert result.stderr.splitlines()[-1] == f"tempest-live-ci step configure failed: {data['error']}"
    assert "memory_peak_mib" in data["facts"]  # type: ignore[operator]
