"""What the orchestrator calls: a subunit stream in, summary.json + junit.xml + report.html out."""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tempest_live_ci.errors import ExitCode, UsageError
from tempest_live_ci.log import step
from tempest_live_ci.results.model import Run
from tempest_live_ci.results.summary import build_summary, format_summary, write_summary

# The stream reader (subunit, testtools) and the HTML report (jinja2) are
# imported where they are used: `results history` needs neither, `results
# junit` no HTML.
if TYPE_CHECKING:
    from tempest_live_ci.results.flaky import Rerun

STREAM = "tempest.subunit"
SUMMARY = "summary.json"
JUNIT = "junit.xml"
HTML = "report.html"


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
    from tempest_live_ci.results.flaky import merge_reruns, rerun_failures
    from tempest_live_ci.results.stream import read_stream

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
    from tempest_live_ci.results.html import write_html
    from tempest_live_ci.results.junit import write_junit

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
        if not path.is_file():
            raise UsageError(f"{source}: no {STREAM} in this directory")
        return path
    if not source.is_file():
        raise UsageError(f"{source}: no such file or directory")
    return source


def load_run(source: Path, *, interrupted: bool = False) -> Run:
    """A Run from a stream, or from a run directory together with its kept re-runs."""
    from tempest_live_ci.results.flaky import merge_reruns, rerun_streams
    from tempest_live_ci.results.stream import read_stream

    path = stream_of(source)
    reruns = [read_stream(p) for p in rerun_streams(path.parent)] if source.is_dir() else []
    return merge_reruns(read_stream(path), reruns, interrupted=interrupted)


def read_summary(path: Path) -> dict[str, Any]:
    """A summary.json as a dict; {} when there is none."""
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UsageError(f"{path}: not JSON: {e}") from e
    if not isinstance(data, dict):
        raise UsageError(f"{path}: not a JSON object")
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
