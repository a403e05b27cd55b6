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
from tempest_live_ci.results.history import stories_for
from tempest_live_ci.results.html import write_html
from tempest_live_ci.results.junit import write_junit
from tempest_live_ci.results.model import Run
from tempest_live_ci.results.names import HTML, JUNIT, STREAM, SUMMARY
from tempest_live_ci.results.servicelogs import excerpt_texts, excerpts
from tempest_live_ci.results.stream import read_stream
from tempest_live_ci.results.summary import (
    build_summary,
    format_summary,
    run_fact,
    write_summary,
)


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
    # A run's guest-logs/ arrive after its results stage: `run` writes the reports again
    # then (actions.refresh_reports). A directory made by hand may hold them already.
    logs = excerpts(run.records, output_dir)
    job = metadata.get("job")
    return RunResult(
        run=run,
        summary=summary,
        exit_code=ExitCode(summary["exit_code"]),
        summary_path=write_summary(summary, output_dir / SUMMARY),
        junit_path=write_junit(run, output_dir / JUNIT, name=job if isinstance(job, str) else "",
                               logs=excerpt_texts(logs)),
        html_path=write_html(run, summary, output_dir / HTML, logs,
                             stories_for(run.records, job if isinstance(job, str) else None,
                                         run_fact(summary, "run_id"))),
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


def print_summary(result: RunResult | Mapping[str, Any], stream: IO[str] | None = None) -> None:
    """The short human summary (verdict, counts, what failed) on stderr by default."""
    summary = result.summary if isinstance(result, RunResult) else result
    out = stream if stream is not None else sys.stderr
    out.write(format_summary(summary))
    out.flush()
