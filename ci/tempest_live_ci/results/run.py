"""What the orchestrator calls: a subunit stream in, summary.json + junit.xml + report.html out."""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tempest_live_ci import files
from tempest_live_ci.errors import ExitCode, UsageError
from tempest_live_ci.log import step
from tempest_live_ci.results.flaky import Rerun, merge_reruns, rerun_failures, rerun_streams
from tempest_live_ci.results.html import write_html
from tempest_live_ci.results.junit import write_junit
from tempest_live_ci.results.model import Run
from tempest_live_ci.results.names import HTML, JUNIT, STREAM, SUMMARY
from tempest_live_ci.results.stream import read_stream
from tempest_live_ci.results.summary import build_summary, format_summary, write_summary


@dataclass(frozen=True)
class RunResult:
    run: Run
    summary: Mapping[str, Any]
    exit_code: ExitCode
    summary_path: Path
    junit_path: Path
    html_path: Path


def process_run(
    subunit_path: Path,
    output_dir: Path,
    metadata: Mapping[str, object],
    *,
    rerun: Rerun | None = None,
    rerun_attempts: int = 2,
    interrupted: bool = False,
) -> RunResult:
    """Read a run's stream, re-run its failures if asked, write the three reports.

    `rerun` receives a --load-list file and returns the subunit bytes of
    running those tests again; each attempt's stream is kept in output_dir as
    tempest-rerun-N.subunit. `interrupted` says the stream stopped early (the
    connection to the guest was lost): the run is then incomplete (exit 16).
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    with step("Reading the test results"):
        first = read_stream(subunit_path)
        reruns = []
        incomplete = interrupted or first.stream_errors or any(
            r.status == "incomplete" for r in first.records)
        # After a guest died there is nothing to re-run on.
        if rerun is not None and rerun_attempts > 0 and not incomplete:
            reruns = rerun_failures(first, rerun, attempts=rerun_attempts, workdir=output_dir)
        run = merge_reruns(first, reruns, interrupted=interrupted)
        return write_reports(run, output_dir, metadata)


def write_reports(run: Run, output_dir: Path, metadata: Mapping[str, object]) -> RunResult:
    summary = build_summary(run, metadata)
    return RunResult(
        run=run,
        summary=summary,
        exit_code=ExitCode(summary["exit_code"]),
        summary_path=write_summary(summary, output_dir / SUMMARY),
        junit_path=write_junit(run, output_dir / JUNIT),
        html_path=write_html(run, summary, output_dir / HTML),
    )


def stream_of(source: Path) -> Path:
    """The stream named by a run output directory or by its own path."""
    if source.is_dir():
        path = source / STREAM
        if not files.exists(path):
            raise UsageError(f"{source}: no {STREAM} in this directory")
        return path
    if not source.exists():
        raise UsageError(f"{source}: no such file or directory")
    return source


def load_run(source: Path, *, interrupted: bool = False) -> Run:
    """A Run from a stream, or from a run directory together with its kept re-runs.

    In a directory every stream must be a regular file, not a link; a bare
    stream the user named may be a link to one.
    """
    path = stream_of(source)
    if not source.is_dir():
        return merge_reruns(read_stream(path, follow=True), interrupted=interrupted)
    reruns = [read_stream(p) for p in rerun_streams(path.parent)]
    return merge_reruns(read_stream(path), reruns, interrupted=interrupted)


# What the results stage reads back from a summary.json it did not write this
# time (`results show|html` of someone's run directory, the store's runs):
# key -> the JSON types it may have.
_SUMMARY_KEYS: dict[str, tuple[type, ...]] = {
    "metadata": (dict,), "baseline": (dict, type(None)), "changes": (dict, type(None)),
    "tests": (dict,), "counts": (dict,), "candidates": (list, dict, type(None)),
    "exit_code": (int, type(None)), "verdict": (str,), "run_verdict": (str,),
}
BASELINE_LISTS = ("regressions", "fixed", "still_failing", "flaky", "new_tests",
                  "removed_tests", "newly_skipped", "failing")


def _type_error(path: Path, key: str, value: object, expected: str) -> UsageError:
    return UsageError(f"{path}: {key}: {files.quoted(value)} is not {expected}")


def _check_summary(data: dict[str, Any], path: Path) -> None:
    """Refuse (exit 20, naming the key) a summary.json whose parts the reports read are
    not what they should be: a baseline without its lists, counts that are text."""
    for key, types in _SUMMARY_KEYS.items():
        value = data.get(key)
        if key in data and (not isinstance(value, types) or isinstance(value, bool)):
            raise _type_error(path, key, value, "what a summary.json holds there")
    counts = data.get("counts") or {}
    for key, value in counts.items():
        if not isinstance(value, int) or isinstance(value, bool):
            raise _type_error(path, f"counts.{files.quoted(key, 20)}", value, "a count")
    baseline = data.get("baseline")
    if isinstance(baseline, dict):
        if not isinstance(baseline.get("gate"), str):
            raise _type_error(path, "baseline.gate", baseline.get("gate"), "a gate")
        for key in BASELINE_LISTS:
            ids = baseline.get(key)
            if not isinstance(ids, list) or not all(isinstance(t, str) for t in ids):
                raise _type_error(path, f"baseline.{key}", ids, "a list of test ids")
    changes = data.get("changes")
    if isinstance(changes, dict):
        for key in ("image", "tempest"):
            if not isinstance(changes.get(key), dict):
                raise _type_error(path, f"changes.{key}", changes.get(key), "an object")
        packages = changes.get("packages")
        if packages is not None:
            kinds = ("added", "removed", "upgraded", "downgraded")
            if not isinstance(packages, dict) or not all(
                    isinstance(packages.get(k), list)
                    and all(isinstance(e, dict) for e in packages[k]) for k in kinds):
                raise _type_error(path, "changes.packages", packages,
                                  "lists of added, removed, upgraded, downgraded packages")


def read_summary(path: Path) -> dict[str, Any]:
    """A summary.json as a dict; {} when there is none.

    A regular file only (not a link), of a bounded size and depth, whose
    parts the reports read have the right shapes; else exit 20 naming it.
    """
    if not files.exists(path):
        return {}
    data = files.read_json(path)
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a JSON object")
    _check_summary(data, path)
    return data


def stored_summary(source: Path) -> dict[str, Any]:
    """The earlier summary.json of a run directory ({} for a bare stream)."""
    return read_summary(source / SUMMARY) if source.is_dir() else {}


def stored_metadata(source: Path) -> dict[str, object]:
    """The metadata of an earlier summary.json in a run directory, to keep it on regeneration."""
    data = stored_summary(source)
    metadata = data.get("metadata", {})
    if not isinstance(metadata, dict):
        return {}
    incomplete = data.get("incomplete")
    if isinstance(incomplete, dict) and incomplete.get("interrupted"):
        metadata = {**metadata, "interrupted": True}
    return metadata


def run_fact(summary: Mapping[str, Any], key: str) -> str | None:
    """A string fact of a run (job, run_id) from a summary.json.

    The results stage keeps it in "metadata", `run` adds it at the top level:
    either will do, metadata first.
    """
    metadata = summary.get("metadata")
    for where in (metadata if isinstance(metadata, dict) else {}, summary):
        value = where.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def print_summary(result: RunResult | Mapping[str, Any], stream: IO[str] | None = None) -> None:
    """The short human summary (verdict, counts, what failed) on stderr by default."""
    summary = result.summary if isinstance(result, RunResult) else result
    out = stream if stream is not None else sys.stderr
    out.write(format_summary(summary))
    out.flush()
