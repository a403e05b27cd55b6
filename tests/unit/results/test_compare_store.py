"""compare, the results store and the `results` CLI, on real streams."""

from __future__ import annotations

import json
import shutil
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from conftest import Streams
from tempest_live_ci.job import parse_job
from tempest_live_ci.results import compare_runs, latest_run, process_run, store_run
from tempest_live_ci.results.store import read_index
from tempest_live_ci.run import RunContext, write_run_summary

FLAVORS = "tempest.api.compute.test_flavors.FlavorsTest."


def run_dir(tmp_path: Path, name: str, stream: Path, job: str = "nightly-sid") -> Path:
    out = tmp_path / name
    out.mkdir()
    shutil.copy(stream, out / "tempest.subunit")
    process_run(out / "tempest.subunit", out, {"job": job, "run_id": name})
    return out


def test_compare(streams: Streams) -> None:
    c = compare_runs(streams.evolving_v1, streams.evolving_v2)
    assert c.new_failures == (FLAVORS + "test_list_flavors",)
    assert c.fixed == (FLAVORS + "test_get_flavor",)
    assert c.still_failing == (FLAVORS + "test_always_broken",)
    assert c.newly_skipped == (FLAVORS + "test_flavor_extra_specs",)
    assert c.appeared == (FLAVORS + "test_new_in_v2",)
    assert c.disappeared == (FLAVORS + "test_removed_in_v2",)
    back = compare_runs(streams.evolving_v2, streams.evolving_v1)
    assert back.new_failures == (FLAVORS + "test_get_flavor",)
    assert back.fixed == (FLAVORS + "test_list_flavors",)


def test_compare_from_summary_when_stream_is_gone(streams: Streams, tmp_path: Path) -> None:
    base = run_dir(tmp_path, "base", streams.evolving_v1)
    (base / "tempest.subunit").unlink()
    c = compare_runs(base, streams.evolving_v2)
    assert c.new_failures == (FLAVORS + "test_list_flavors",)


def test_store_index_latest(streams: Streams, tmp_path: Path, dirs: Any) -> None:
    assert latest_run("nightly-sid") is None
    first = store_run("nightly-sid", run_dir(tmp_path, "r1", streams.evolving_v1))
    second = store_run("nightly-sid", run_dir(tmp_path, "r2", streams.passing))
    assert first == dirs.results / "nightly-sid" / "r1"
    assert (second / "report.html").is_file() and (second / "tempest.subunit").is_file()
    assert latest_run("nightly-sid") == second
    index = read_index("nightly-sid")
    assert [(e["run_id"], e["exit_code"]) for e in index] == [("r1", 4), ("r2", 0)]
    assert index[1]["counts"]["passed"] == 3 and index[1]["duration"] >= 0
    # Storing a run with the same id again keeps both.
    third = store_run("nightly-sid", tmp_path / "r1")
    assert third.name == "r1.2" and latest_run("nightly-sid") == third


def tlc_ok(tlc: Any, *args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
    result = tlc(*args)
    assert result.returncode == code, result.stderr
    return result  # type: ignore[no-any-return]


def test_cli(streams: Streams, tmp_path: Path, tlc: Any) -> None:
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(streams.mixed, run / "tempest.subunit")
    show = tlc_ok(tlc, "results", "show", str(run), "--json", code=4)
    assert json.loads(show.stdout)["counts"]["failed"] == 2
    # With --json, stdout is the JSON alone; the human summary goes to stderr.
    assert "FAILED: some tests failed (exit 4)" in show.stderr
    assert json.loads((run / "summary.json").read_text())["exit_code"] == 4
    tlc_ok(tlc, "results", "junit", str(run))
    assert len(list(ET.parse(run / "junit.xml").getroot().iter("testcase"))) == 13
    tlc_ok(tlc, "results", "html", str(run))
    assert "token mismatch" in (run / "report.html").read_text()
    junit = tlc_ok(tlc, "results", "junit", str(streams.worker_died))
    assert ET.fromstring(junit.stdout).get("errors") == "1"
    tlc_ok(tlc, "results", "show", str(streams.cut), code=16)
    tlc_ok(tlc, "results", "show", str(streams.all_skipped), code=8)
    tlc_ok(tlc, "results", "show", str(streams.passing), code=0)
    # A live stream with a class skipped in setUpClass: passed, not "testbed failure".
    live = tlc_ok(tlc, "results", "show", str(streams.passing_live), code=0)
    # Without --json the human summary is the output: on stdout (`| less`).
    assert "never ran" not in live.stdout and "PASSED" in live.stdout
    assert "PASSED" not in live.stderr
    tlc_ok(tlc, "results", "show", str(streams.all_skipped_live), code=8)
    tlc_ok(tlc, "results", "show", str(tmp_path / "nothing"), code=20)


def test_cli_compare_gate_history(streams: Streams, tmp_path: Path, tlc: Any) -> None:
    v1, v2 = str(streams.evolving_v1), str(streams.evolving_v2)
    out = tlc_ok(tlc, "results", "compare", v1, v2, "--json")
    assert json.loads(out.stdout)["new_failures"] == [FLAVORS + "test_list_flavors"]
    human = tlc_ok(tlc, "results", "compare", v1, v2)
    assert "new failures: 1" in human.stdout and human.stderr == ""
    tlc_ok(tlc, "results", "compare", v1, v2, "--gate", code=4)
    # Only new failures fail the gate: v1 → v1 has failures, none of them new.
    tlc_ok(tlc, "results", "compare", v1, v1, "--gate", code=0)

    # Without BASE: the job's latest stored run (the job named in summary.json).
    base = run_dir(tmp_path, "base", streams.evolving_v1, job="upload-check")
    tlc_ok(tlc, "results", "store", "upload-check", str(base))
    new = run_dir(tmp_path, "new", streams.evolving_v2, job="upload-check")
    tlc_ok(tlc, "results", "compare", str(new), "--gate", code=4)
    tlc_ok(tlc, "results", "compare", str(streams.passing), "--job", "upload-check", "--gate")
    tlc_ok(tlc, "results", "compare", str(streams.passing), code=20)
    history = tlc_ok(tlc, "results", "history", "upload-check", "--json")
    assert [e["run_id"] for e in json.loads(history.stdout)] == ["base"]
    human = tlc_ok(tlc, "results", "history", "upload-check")
    assert "base" in human.stdout and human.stderr == ""
    tlc_ok(tlc, "results", "history", "../etc", code=20)


def run_as_run_writes_it(tmp_path: Path, stream: Path, job: str, run_id: str) -> Path:
    """A run directory as `run` leaves it: the results stage's summary.json, then
    job.write_run_summary() merging the run's own facts in at the top level."""
    out = tmp_path / run_id
    out.mkdir()
    shutil.copy(stream, out / "tempest.subunit")
    # No job or run_id in the metadata: `run` writes them at the top level.
    process_run(out / "tempest.subunit", out, {"profile": "identity"})
    ctx = RunContext(parse_job({"name": job}, "test", job), run_id, out, ())
    ctx.stages.update(image=12.5, testbed=0.4, vm=20.1, total=61.0)
    ctx.facts["image"] = {"directory": "/var/cache/img", "host_key_fingerprint": "SHA256:x"}
    ctx.facts["boot"] = {"dhcp": 1.5, "kernel": 3.2, "ssh": 9.8}
    write_run_summary(ctx, 4, "FAILED: some tests failed")
    return out


def test_show_keeps_what_run_wrote(streams: Streams, tmp_path: Path, tlc: Any) -> None:
    out = run_as_run_writes_it(tmp_path, streams.evolving_v1, "upload-check", "r42")
    before = json.loads((out / "summary.json").read_text())
    assert {"job", "run_id", "stages", "image", "boot", "tool_version"} <= set(before)
    tlc_ok(tlc, "results", "show", str(out), code=4)
    # Same stream, same results: the rewritten summary is the same, key for key.
    assert json.loads((out / "summary.json").read_text()) == before
    elsewhere = tmp_path / "regenerated"
    tlc_ok(tlc, "results", "show", str(out), "-o", str(elsewhere), code=4)
    assert json.loads((elsewhere / "summary.json").read_text()) == before


def test_job_and_run_id_from_the_top_level(streams: Streams, tmp_path: Path, tlc: Any,
                                           dirs: Any) -> None:
    base = run_as_run_writes_it(tmp_path, streams.evolving_v1, "upload-check", "r1")
    stored = tlc_ok(tlc, "results", "store", "upload-check", str(base)).stdout.strip()
    assert stored == str(dirs.results / "upload-check" / "r1")
    new = run_as_run_writes_it(tmp_path, streams.evolving_v2, "upload-check", "r2")
    # No BASE, no --job: the job `run` recorded, and its latest stored run.
    result = tlc_ok(tlc, "results", "compare", str(new), "--gate", code=4)
    assert f"base: {stored}" in result.stdout


def test_summary_that_is_no_json_object(streams: Streams, tmp_path: Path, tlc: Any) -> None:
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(streams.passing, out / "tempest.subunit")
    (out / "summary.json").write_text("[]\n")
    result = tlc_ok(tlc, "results", "show", str(out), code=20)
    assert "summary.json: not a JSON object" in result.stderr
    assert "Traceback" not in result.stderr
    assert tlc_ok(tlc, "results", "store", "j", str(out), code=20).stderr == result.stderr
