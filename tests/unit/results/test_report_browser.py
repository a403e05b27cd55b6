"""report.html and the history page looked at for real: rendered by headless Chromium from a
real stored run (tests/data/smoke-image-sid) and a real results store, the DOM and the
pixels checked. TEMPEST_LIVE_CI_SCREENSHOTS=DIR keeps the screenshots there (doc/ holds
the README's)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from test_story import FAILING, JOB, store  # noqa: F401 - the store fixture
from tests.png import has_colour, read_png

from tempest_live_ci.results import actions

DATA = Path(__file__).resolve().parents[2] / "data" / "smoke-image-sid"
# The report's colours (report.html.j2): a stage's bar, a passed and a failed test's bar.
STAGE_BLUE = (0x09, 0x69, 0xDA)
PASSED_GREEN = (0x1A, 0x7F, 0x37)
FAILED_RED = (0xCF, 0x22, 0x2E)

needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="chromium is not installed (tools/deps/test.list)")


def chromium(page: Path, profile: Path, *args: str) -> str:
    result = subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={profile}", *args, page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def screenshot(page: Path, tmp_path: Path, name: str, size: str) -> Path:
    shot = tmp_path / name
    chromium(page, tmp_path / "profile", f"--screenshot={shot}", f"--window-size={size}")
    kept = os.environ.get("TEMPEST_LIVE_CI_SCREENSHOTS")
    if kept:
        shutil.copyfile(shot, Path(kept) / name)
    return shot


@needs_chromium
def test_report_and_history_in_chromium(store: Path, tmp_path: Path) -> None:  # noqa: F811
    run = tmp_path / "run"
    shutil.copytree(DATA, run)
    actions.html(run, out=io.StringIO())
    page = run / "report.html"
    dom = chromium(page, tmp_path / "profile", "--dump-dom")
    timeline = dom.split('id="timeline"', 1)[1].split('id="workers"', 1)[0]
    for text in ("tempest-conf", "1705 MiB", "peak 1997 MiB", "48m14s"):
        assert text in timeline, text
    lanes = dom.split('id="worker-lanes"', 1)[1].split("</svg>", 1)[0]
    assert lanes.count("<rect class=\"s-") == 74 and "worker 1" in lanes
    failure = dom.split('id="failures"', 1)[1].split(FAILING, 1)[1].split('<div class="failure', 1)[0]
    assert "<b>Failing since</b> r6" in failure
    assert '<details class="logs">' in failure and "<h4>glance/glance-api.log</h4>" in failure
    assert "GET /v2/images/abddea3e-dff2-43f8-aed1-afaff2fa8ac0" in failure

    shot = screenshot(page, tmp_path, "report.png", "1100,1000")
    _, _, rows = read_png(shot)
    # The first screen: the stages' bars and the workers' lanes, green and red.
    assert has_colour(rows, STAGE_BLUE, at_least=500)
    assert has_colour(rows, PASSED_GREEN, at_least=200)
    assert has_colour(rows, FAILED_RED, at_least=2000)

    history = tmp_path / "history.html"
    actions.history(JOB, html=str(history), out=io.StringIO())
    dom = chromium(history, tmp_path / "profile", "--dump-dom")
    stories = dom.split('id="stories"', 1)[1].split('id="flips"', 1)[0]
    assert FAILING in stories and "flake rate</b> 50%" in stories
    assert "(exit 16: not counted)" in stories
    shot = screenshot(history, tmp_path, "history.png", "1100,700")
    assert has_colour(read_png(shot)[2], FAILED_RED, at_least=100)
