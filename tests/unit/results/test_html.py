"""report.html: opened in a real headless Chromium (screenshot taken, text asserted) where
chromium is installed; its markup checked without a browser everywhere."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import Streams, live_run
from tempest_live_ci.results import process_run
from tempest_live_ci.results.flaky import merge_reruns, rerun_failures
from tempest_live_ci.results.model import SKIPPED, Run
from tempest_live_ci.results.run import write_reports
from tempest_live_ci.results.stream import read_stream

needs_chromium = pytest.mark.skipif(shutil.which("chromium") is None,
                                    reason="chromium is not installed (tools/deps/test.list)")

METADATA = {
    "job": "nightly-sid",
    "run_id": "20260301T0200Z",
    "image": "sid-full-9c1e0d",
    "versions": {"keystone": "2:27.0.0-1", "python3-tempest": "1:42.0.0-1"},
    "candidates": ["keystone_27.0.0-2_all.deb", "python3-keystone_27.0.0-2_all.deb"],
    "note": "<script>alert('not run: autoescape')</script>",
}


def chromium(page: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", f"--user-data-dir={tmp_path / 'chromium-profile'}", *args,
         page.as_uri()],
        capture_output=True, text=True, timeout=120,
    )


@needs_chromium
def test_report_in_headless_chromium(streams: Streams, tmp_path: Path) -> None:
    # A run with every section: failures, an error, a flaky test, skips.
    tree = streams.flaky_tree("html")
    out = tmp_path / "run"
    out.mkdir()
    first = read_stream(live_run(tree, "--serial", "test_volumes"))

    def rerun(load_list: Path) -> bytes:
        return live_run(tree, "--serial", "--load-list", str(load_list))

    reruns = rerun_failures(first, rerun, attempts=1, workdir=out)
    mixed = read_stream(streams.mixed_live)
    combined = merge_reruns(first, reruns)
    mixed_run = merge_reruns(mixed)
    run = Run(records=mixed_run.records + combined.records,
              not_run_explained=mixed_run.not_run_explained, reruns=1)
    result = write_reports(run, out, METADATA)
    page = result.html_path

    started = time.monotonic()
    dom = chromium(page, tmp_path, "--dump-dom")
    assert dom.returncode == 0, dom.stderr
    html = dom.stdout
    for text in (
        "FAILED: some tests failed",
        "tempest.api.identity.v3.test_tokens.TokensV3Test.test_validate_token",
        "token mismatch",
        "cannot create router: quota exceeded",
        "Flaky (1)",
        "tempest.api.volume.test_volumes.VolumesTest.test_attach_volume",
        "identity v2 API is disabled",
        "tempest.api.identity",
        "keystone_27.0.0-2_all.deb",
        "2:27.0.0-1",
        "sid-full-9c1e0d",
        "marked as an expected failure, but passed",
    ):
        assert text in html, text
    # Metadata is text, never markup.
    assert "<script>alert" not in html and "&lt;script&gt;alert" in html
    # Failures come before skips, the flaky badge is there.
    assert html.index('id="failures"') < html.index('id="skips"')
    assert 'class="badge s-flaky"' in html
    assert f">{len([r for r in run.records if r.status == SKIPPED])}<" in html

    screenshot = tmp_path / "report.png"
    shot = chromium(page, tmp_path, f"--screenshot={screenshot}", "--window-size=1280,2000")
    assert shot.returncode == 0, shot.stderr
    assert screenshot.stat().st_size > 20_000
    assert screenshot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    print(f"chromium: {time.monotonic() - started:.1f}s, screenshot {screenshot}")


def test_report_has_no_external_resources(streams: Streams, tmp_path: Path) -> None:
    result = process_run(streams.cut, tmp_path, METADATA)
    html = result.html_path.read_text()
    assert "http://" not in html and "https://" not in html and "<link" not in html
    assert "<script" not in html
    assert "testbed failure" in html
    assert "tempest.api.network.test_ports.PortsTest.test_create_port" in html


def test_report_escapes_what_the_run_says(streams: Streams, tmp_path: Path) -> None:
    # Test ids, tracebacks and metadata are untrusted text: never markup.
    result = process_run(streams.mixed, tmp_path, METADATA)
    html = result.html_path.read_text()
    assert "<script>alert" not in html
    assert "&lt;script&gt;alert(&#39;not run: autoescape&#39;)&lt;/script&gt;" in html
    assert "token mismatch" in html
