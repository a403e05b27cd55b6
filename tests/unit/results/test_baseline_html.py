"""The report with its baseline section and the history page, opened in headless Chromium:
text read from the DOM Chromium built, a screenshot taken and its pixels checked."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from test_baseline import judge, runs  # noqa: F401 - the module fixture
from test_html import chromium, needs_chromium
from tests.png import has_colour, read_png

from tempest_live_ci.results import store_run

RED = (0xCF, 0x22, 0x2E)  # the header of a failed run (--bad)
CANDIDATE_ROW = (0xDD, 0xF4, 0xFF)  # a candidate's row in the package changes
GREEN = (0x1A, 0x7F, 0x37)  # a passed test's cell (--ok)


@needs_chromium
def test_a_regression_beside_its_package_changes_in_chromium(runs: dict[str, Path],  # noqa: F811
                                                             tmp_path: Path) -> None:
    judge(runs, "regression", "regressions", tmp_path)
    page = tmp_path / "regression" / "report.html"
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    html = dom.stdout
    for text in ("REGRESSION: 1 test failing that did not fail in the baseline",
                 "Against the baseline", "gate: <b>regressions</b>",
                 "tempest.api.identity.v3.test_upload.UploadTest.test_regressed",
                 "What changed since the baseline", "img-1</code> → <code>img-2",
                 "1:41.0.0-1 → 1:42.0.0-1", "python3-oslo.db", "downgraded"):
        assert text in html, text
    # The candidates come first among the upgrades, marked.
    table = html[html.index('id="package-changes"'):]
    assert table.index("keystone") < table.index("python3-tempest")
    assert html.count('class="candidate"') == 2
    shot = tmp_path / "report.png"
    result = chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,1400")
    assert result.returncode == 0, result.stderr
    width, height, rows = read_png(shot)
    assert (width, height) == (1280, 1400)
    assert has_colour(rows, RED, at_least=5000, y_range=range(0, 40))
    assert has_colour(rows, CANDIDATE_ROW, at_least=500)


@needs_chromium
def test_history_page_in_chromium(runs: dict[str, Path], tmp_path: Path, dirs: Any,  # noqa: F811
                                  tlc: Any) -> None:
    for mode in ("base", "known", "regression", "flaky"):
        copy = tmp_path / mode
        shutil.copytree(runs[mode], copy)
        summary = json.loads((copy / "summary.json").read_text())
        summary["run_id"] = summary["metadata"]["run_id"] = f"night-{mode}"
        (copy / "summary.json").write_text(json.dumps(summary))
        store_run("nightly-sid", copy)
    page = tmp_path / "history.html"
    result = tlc("results", "history", "nightly-sid", "--html", str(page), "--last", "3")
    assert result.returncode == 0, result.stderr
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    html = dom.stdout
    assert "nightly-sid: the last 3 runs" in html
    assert "night-base" not in html and "night-flaky" in html
    flips = html[html.index('id="flips"'):html.index('id="grid"')]
    # known → regression → flaky: test_regressed passed, failed, passed.
    assert "UploadTest.test_regressed" in flips and "UploadTest.test_flaky" in flips
    assert "UploadTest.test_known_broken" not in flips
    grid = html[html.index('id="grid"'):]
    assert "UploadTest.test_known_broken" in grid and "UploadTest.test_stable" not in grid
    assert 'title="night-flaky: flaky"' in grid
    shot = tmp_path / "history.png"
    result = chromium(page, tmp_path, f"--screenshot={shot}", "--window-size=1280,1000")
    assert result.returncode == 0, result.stderr
    _, _, rows = read_png(shot)
    assert has_colour(rows, RED, at_least=100) and has_colour(rows, GREEN, at_least=100)


def test_history_cli_without_runs_and_bad_last(tlc: Any, dirs: Any) -> None:
    empty = tlc("results", "history", "nothing-yet", "--html", "-")
    assert empty.returncode == 0 and "No stored runs of job nothing-yet" in empty.stdout
    bad = tlc("results", "history", "nothing-yet", "--last", "0")
    assert bad.returncode == 20 and "--last 0: at least 1" in bad.stderr
