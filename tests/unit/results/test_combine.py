"""`results combine`: the shards of a nightly, each the newest stored run of its job,
as one report. The runs are real: stestr streams of tempest-like trees, the
results stage, the summary and job.yaml `run` writes, stored by `run`'s own
store step; the command is the real CLI."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from conftest import Streams
from tempest_live_ci import paths
from tempest_live_ci.deploy.profiles import PROFILES
from tempest_live_ci.job import job_as_dict, load_job, parse_job
from tempest_live_ci.results import process_run
from tempest_live_ci.run import RunContext, _store, write_run_summary

TOP = Path(__file__).resolve().parents[3]


def stored_run(streams: Streams, tmp_path: Path, stream: Path, job: str, run_id: str,
               tempest: dict[str, Any], *, code: int = 0, start: str | None = None) -> Path:
    """A run of `job` as `run` leaves it and stores it: stream, reports, summary, job.yaml."""
    out = tmp_path / run_id
    out.mkdir()
    shutil.copy(stream, out / "tempest.subunit")
    process_run(out / "tempest.subunit", out, {"profile": tempest.get("profile", "identity")})
    parsed = parse_job({"name": job, "tempest": tempest}, "test", job)
    (out / "job.yaml").write_text(yaml.safe_dump(job_as_dict(parsed), sort_keys=False))
    ctx = RunContext(parsed, run_id, out, ())
    ctx.stages["total"] = 600.0
    write_run_summary(ctx, code, None)
    if start is not None:
        summary = json.loads((out / "summary.json").read_text())
        summary["start"] = start
        (out / "summary.json").write_text(json.dumps(summary))
    _store(ctx)
    return out


def combine(dirs: Any, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), "results",
                           "combine", *args], capture_output=True, text=True, timeout=60,
                          env={**dirs.env(), "PATH": "/usr/bin:/bin"})


def test_the_shards_of_a_night_side_by_side(streams: Streams, dirs: Any, tmp_path: Path) -> None:
    stored_run(streams, tmp_path, streams.passing, "nightly-sid-identity", "tlc-00000001",
               {"profile": "identity"})
    stored_run(streams, tmp_path, streams.mixed, "nightly-sid-network", "tlc-00000002",
               {"profile": "network"}, code=4)
    result = combine(dirs, "nightly-sid-shards", "nightly-sid-identity", "nightly-sid-network",
                     "--html-in-store")
    assert result.returncode == 4, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "nightly-sid-shards: FAILED: tests failed in a shard (exit 4)"
    identity = next(line for line in lines if line.startswith("nightly-sid-identity "))
    network = next(line for line in lines if line.startswith("nightly-sid-network "))
    assert "tlc-00000001" in identity and "exit 0" in identity
    # What each shard ran: its profile's tests, as the guest's plan chose them.
    assert identity.endswith(r"profile identity, regex tempest\.api\.identity")
    assert network.endswith(r"profile network, regex tempest\.api\.network, smoke only")
    # The totals are the shards' counts added up.
    passing = json.loads((dirs.results / "nightly-sid-identity" / "tlc-00000001" /
                          "summary.json").read_text())["counts"]
    mixed = json.loads((dirs.results / "nightly-sid-network" / "tlc-00000002" /
                        "summary.json").read_text())["counts"]
    total = next(line for line in lines if line.startswith("total "))
    assert total.split()[1:3] == [str(passing["passed"] + mixed["passed"]),
                                  str(passing["failed"] + mixed["failed"])]
    # Said, not hidden: the smoke-only shard, and that nothing counts the cross-shard tests.
    assert "  smoke tests only in: nightly-sid-network" in lines
    assert any("no --reference run to count them" in line for line in lines)
    page = (dirs.results / "nightly-sid-shards.html").read_text()
    assert '<a href="nightly-sid-network/tlc-00000002/report.html">' in page
    assert "<script" not in page and "http" not in page.split("<body>")[1]


def test_a_missing_or_stale_shard_makes_the_night_incomplete(streams: Streams, dirs: Any,
                                                              tmp_path: Path) -> None:
    stored_run(streams, tmp_path, streams.passing, "nightly-sid-identity", "tlc-00000011",
               {"profile": "identity"}, start="2026-12-02T02:00:00+00:00")
    stored_run(streams, tmp_path, streams.passing, "nightly-sid-image", "tlc-00000012",
               {"profile": "image"}, start="2026-11-29T02:00:00+00:00")
    result = combine(dirs, "nightly-sid-shards", "nightly-sid-identity", "nightly-sid-image",
                     "nightly-sid-volume", "--json")
    assert result.returncode == 16, result.stderr
    report = json.loads(result.stdout)
    by_job = {s["job"]: s for s in report["shards"]}
    assert by_job["nightly-sid-identity"]["stale"] is False
    assert by_job["nightly-sid-image"]["stale"] is True  # three nights older
    assert by_job["nightly-sid-volume"]["run_id"] is None
    assert report["verdict"].startswith("INCOMPLETE")
    text = combine(dirs, "nightly-sid-shards", "nightly-sid-identity", "nightly-sid-image",
                   "nightly-sid-volume").stdout
    assert "  shards with no stored run: nightly-sid-volume" in text
    assert "  shards not of this night: nightly-sid-image" in text


def test_the_tests_of_the_whole_nightly_no_shard_ran_are_listed(
        streams: Streams, dirs: Any, tmp_path: Path) -> None:
    stored_run(streams, tmp_path, streams.passing, "nightly-sid-identity", "tlc-00000021",
               {"profile": "identity"})
    stored_run(streams, tmp_path, streams.mixed, "nightly-sid", "tlc-00000022",
               {"profile": "full"}, code=4)
    result = combine(dirs, "nightly-sid-shards", "nightly-sid-identity",
                     "--reference", "nightly-sid", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    shard = set(json.loads((dirs.results / "nightly-sid-identity" / "tlc-00000021" /
                            "summary.json").read_text())["tests"])
    whole = set(json.loads((dirs.results / "nightly-sid" / "tlc-00000022" /
                            "summary.json").read_text())["tests"])
    assert whole - shard, "the two streams must differ for this test to mean anything"
    assert report["reference"]["left_out"] == sorted(whole - shard)


def test_bad_names_are_refused_in_one_line(dirs: Any) -> None:
    for args, culprit in ((["../x", "nightly-sid-identity"], "'../x'"),
                          (["shards", "a/b"], "'a/b'"),
                          (["shards", "nightly-sid-image", "nightly-sid-image"],
                           "'nightly-sid-image' is named twice")):
        result = combine(dirs, *args)
        assert result.returncode == 20, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and culprit in result.stderr, \
            result.stderr


def test_every_profile_but_the_whole_cloud_has_a_nightly_shard() -> None:
    # The shipped jobs: the checkout's, or the installed package's (autopkgtest).
    shards = {path.stem: load_job(path) for path in paths.jobs_dir().glob("nightly-sid-*.yaml")}
    assert set(shards) == {f"nightly-sid-{name}" for name in PROFILES if name != "full"}
    for name, job in shards.items():
        assert job.name == name and job.tempest.profile == name.removeprefix("nightly-sid-")
        assert job.image.suite == "sid"
        # Each night is judged against the shard's own previous night.
        assert job.results.baseline == "latest" and job.results.baseline_job is None
