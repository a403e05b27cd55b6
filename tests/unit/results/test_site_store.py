"""Where runs go: the results store, which the site's config.yaml can move, is where
`run` writes by default; `run --output DIR` still writes DIR and copies it there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from conftest import Streams
from tempest_live_ci.job import parse_job
from tempest_live_ci.results import process_run
from tempest_live_ci.results.store import read_index
from tempest_live_ci.run import RunContext, _store, default_output_dir, write_run_summary
from tempest_live_ci.siteconfig import results_dir

TOP = Path(__file__).resolve().parents[3]


def finished_run(out: Path, stream: Path, job: str, run_id: str) -> RunContext:
    """A run directory as `run` leaves it after its results stage."""
    out.mkdir(parents=True)
    shutil.copy(stream, out / "tempest.subunit")
    process_run(out / "tempest.subunit", out, {"profile": "identity"})
    ctx = RunContext(parse_job({"name": job}, "test", job), run_id, out, ())
    write_run_summary(ctx, 0, None)
    return ctx


def test_a_run_is_written_into_the_store_and_indexed_in_place(streams: Streams, dirs: Any,
                                                               monkeypatch: Any) -> None:
    store = dirs.top / "site-store"
    (dirs.config).mkdir()
    (dirs.config / "config.yaml").write_text(yaml.safe_dump({"results": {"store": str(store)}}))
    monkeypatch.delenv("TEMPEST_LIVE_CI_RESULTS_DIR")
    assert results_dir() == store
    job = parse_job({"name": "nightly-sid"}, "test", "nightly-sid")
    out = default_output_dir(job, "tlc-0123abcd")
    assert out == store / "nightly-sid" / "tlc-0123abcd"

    ctx = finished_run(out, streams.passing, "nightly-sid", "tlc-0123abcd")
    _store(ctx)
    # Indexed where it was written: no copy beside it.
    assert [e["run_id"] for e in read_index("nightly-sid")] == ["tlc-0123abcd"]
    assert sorted(p.name for p in (store / "nightly-sid").iterdir()) == \
        [".lock", "index.json", "latest", "tlc-0123abcd"]

    # The environment wins over config.yaml.
    monkeypatch.setenv("TEMPEST_LIVE_CI_RESULTS_DIR", str(dirs.results))
    assert results_dir() == dirs.results


def test_run_output_is_copied_into_the_store(streams: Streams, dirs: Any, tmp_path: Path) -> None:
    # run --output DIR: the run is written there and copied into the store.
    out = tmp_path / "my-output"
    ctx = finished_run(out, streams.passing, "smoke-trixie", "tlc-89abcdef")
    _store(ctx)
    stored = dirs.results / "smoke-trixie" / "tlc-89abcdef"
    assert (out / "summary.json").is_file() and (stored / "summary.json").is_file()
    assert json.loads((stored / "summary.json").read_text())["run_id"] == "tlc-89abcdef"


def test_history_page_in_the_store_of_the_site(streams: Streams, dirs: Any, tmp_path: Path) -> None:
    """What the nightly unit runs after every run: the page beside the job's runs."""
    store = dirs.top / "site-store"
    dirs.config.mkdir()
    (dirs.config / "config.yaml").write_text(yaml.safe_dump({"results": {"store": str(store)}}))
    env = {**os.environ, **dirs.env()}
    del env["TEMPEST_LIVE_CI_RESULTS_DIR"]

    def tlc(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), *args],
                              capture_output=True, text=True, env=env, timeout=120)

    out = tmp_path / "run"
    finished_run(out, streams.passing, "nightly-sid", "tlc-00000001")
    stored = tlc("results", "store", "nightly-sid", str(out))
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.strip() == str(store / "nightly-sid" / "tlc-00000001")
    page = tlc("results", "history", "nightly-sid", "--html-in-store")
    assert page.returncode == 0, page.stderr
    html = (store / "nightly-sid" / "history.html").read_text()
    assert "tlc-00000001" in html
    both = tlc("results", "history", "nightly-sid", "--html-in-store", "--html", "-")
    assert both.returncode == 20 and "--html-in-store: cannot be combined with --html" in \
        both.stderr
    assert not (dirs.results / "nightly-sid").exists()
