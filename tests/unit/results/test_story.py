"""Each test's story over a job's stored runs: a real results store (store_run) of copies of
a stored run, whose tests fail, pass, and die with the testbed (exit 16)."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import pytest

from tempest_live_ci.results import actions
from tempest_live_ci.results.history import load_history, render_history
from tempest_live_ci.results.store import store_run

DATA = Path(__file__).resolve().parents[2] / "data" / "smoke-image-sid"
JOB = "smoke-image-sid"
FAILING = ("tempest.api.image.v2.admin.test_images.MultiStoresImagesTest."
           "test_delete_image_from_specific_store[id-1ecec683-41d4-4470-a0df-54969ec74514]")
# Passed in every run that finished; the guest was killed while it ran in r3.
KILLED = ("tempest.api.image.v2.admin.test_images.BasicOperationsImagesAdminTest."
          "test_list_public_image[id-f6ab4aa0-035e-4664-9f2d-c57c6df50605]")
# run id, exit code, FAILING's status, KILLED's status, FAILING's seconds
RUNS = [("r1", 0, "passed", "passed", 12.0), ("r2", 4, "failed", "passed", 300.0),
        ("r3", 16, "incomplete", "incomplete", 40.0), ("r4", 4, "failed", "passed", 310.0),
        ("r5", 0, "passed", "passed", 14.0), ("r6", 4, "failed", "passed", 320.0),
        ("r7", 4, "failed", "passed", 330.0)]


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TEMPEST_LIVE_CI_RESULTS_DIR", str(tmp_path / "store"))
    summary = json.loads((DATA / "summary.json").read_text())
    for n, (run_id, code, failing, killed, seconds) in enumerate(RUNS):
        run = tmp_path / "runs" / run_id
        run.mkdir(parents=True)
        tests = {**summary["tests"], FAILING: failing, KILLED: killed}
        (run / "summary.json").write_text(json.dumps({
            **summary, "run_id": run_id, "metadata": {**summary["metadata"], "run_id": run_id},
            "exit_code": code, "tests": tests,
            "start": f"2026-11-{20 + n}T02:00:00+00:00", "durations": {FAILING: seconds}}))
        store_run(JOB, run)
    return tmp_path / "store"


def test_results_history_test_prints_the_story(store: Path) -> None:
    out = io.StringIO()
    actions.history(JOB, test=FAILING, out=out)
    lines = out.getvalue().splitlines()
    assert lines[0] == FAILING
    assert lines[1] == "  failing since: r6 (2026-11-25T02:00:00)"
    assert lines[2] == "  last passed:   r5 (2026-11-24T02:00:00)"
    # r3 (exit 16) counts for nothing: 6 counted runs, P F F P F F, three flips.
    assert lines[3] == "  failed 4, flaky 0, flipped 3 times in 6 counted runs: flake rate 50%"
    assert lines[4] == "  duration: median 5m00s, last 5m30s, range 12.0s–5m30s"
    r3 = next(line for line in lines if line.lstrip().startswith("r3 "))
    assert "incomplete" in r3 and "not counted" in r3

    as_json = io.StringIO()
    actions.history(JOB, test=FAILING, as_json=True, out=as_json)
    data = json.loads(as_json.getvalue())
    assert data["failing_since"] == {"run_id": "r6", "date": "2026-11-25T02:00:00"}
    assert [r["counted"] for r in data["runs"]] == [True, True, False, True, True, True, True]


def test_a_testbed_failure_makes_no_test_flip(store: Path) -> None:
    history = load_history(JOB)
    assert [test for test, _ in history.flips] == [FAILING]
    assert KILLED not in history.stories and KILLED not in dict(history.grid)
    page = render_history(history)
    stories = page.split('id="stories"', 1)[1].split('id="flips"', 1)[0]
    assert FAILING in stories and "flake rate</b> 50%" in stories
    assert "r3 2026-11-22T02:00:00: incomplete (exit 16: not counted)" in stories
    assert 'class="cell s-incomplete uncounted"' in page


def test_the_report_tells_each_failures_story(store: Path, tmp_path: Path) -> None:
    run = tmp_path / "this-run"
    shutil.copytree(DATA, run)
    actions.html(run, out=io.StringIO())
    html = (run / "report.html").read_text()
    failure = html.split('id="failures"', 1)[1].split(FAILING, 1)[1].split("<pre>", 1)[0]
    assert "<b>Failing since</b> r6 (2026-11-25T02:00:00)" in failure
    assert "<b>last passed</b> r5" in failure
    assert '<svg class="spark"' in failure and "<polyline points=" in failure
    # Every failure has its story, the others failed in every counted run.
    assert html.count('<div class="story">') == 4
    assert html.count("<b>last passed</b> never in these runs") == 3
