"""The plain functions behind `tempest-live-ci results ...`: streams in, exit code out."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING

from tempest_live_ci import files
from tempest_live_ci.errors import ExitCode, UsageError
from tempest_live_ci.log import log
from tempest_live_ci.results.baseline import gated
from tempest_live_ci.results.compare import compare_runs, format_comparison, gate_exit_code
from tempest_live_ci.results.history import load_history, render_history, stories_for, story
from tempest_live_ci.results.html import render_html
from tempest_live_ci.results.junit import junit_document
from tempest_live_ci.results.model import Run
from tempest_live_ci.results.names import HTML, JUNIT, SUMMARY
from tempest_live_ci.results.run import load_run, print_summary
from tempest_live_ci.results.servicelogs import Excerpt, excerpt_texts, excerpts
from tempest_live_ci.results.store import format_history, latest_run, read_index
from tempest_live_ci.results.store import store_run as _store_run
from tempest_live_ci.results.summary import (
    build_summary,
    merge_summary,
    read_summary,
    run_fact,
    stored_metadata,
    stored_summary,
    write_summary,
)
from tempest_live_ci.results.timing import format_timeline, timeline

if TYPE_CHECKING:
    from tempest_live_ci.results.history import StoredRun, Story


def _load(source: Path) -> tuple[Run, dict[str, object]]:
    metadata = stored_metadata(source)
    run = load_run(source, interrupted=bool(metadata.pop("interrupted", False)))
    return run, metadata


def _write(text: str, destination: Path | None, out: IO[str]) -> None:
    """To stdout, or a new file renamed over `destination`: never written through a link."""
    if destination is None:
        out.write(text)
    else:
        files.write_text(destination, text)


def _destination(source: Path, output: str | None, default_name: str) -> Path | None:
    """-o PATH, '-' for stdout; by default a file in a run directory, stdout for a bare stream."""
    if output == "-":
        return None
    if output is not None:
        return Path(output)
    return source / default_name if source.is_dir() else None


def show(source: Path, *, output_dir: Path | None = None, as_json: bool = False,
         out: IO[str] = sys.stdout, err: IO[str] = sys.stderr) -> ExitCode:
    """Summarize a run; write summary.json into the run (or output) directory.

    Returns the run's own exit code (0, 4, 8 or 16), under the gate it was
    judged by (results.gate: regressions, baseline.gated).
    """
    run, metadata = _load(source)
    target = output_dir if output_dir is not None else (source if source.is_dir() else None)
    previous = stored_summary(source) or (read_summary(target / SUMMARY) if target else {})
    summary = gated(build_summary(run, metadata), previous)
    if target is not None:
        # What `run` recorded next to the results (job, stages, image, boot,
        # ...) is kept: the run's directory, else the file being rewritten.
        recorded = previous.get("exit_code")
        if isinstance(recorded, int) and recorded != summary["exit_code"]:
            log.warning("%s said exit code %d; the results now say %d",
                        SUMMARY, recorded, summary["exit_code"])
        summary = merge_summary(previous, summary)
        target.mkdir(parents=True, exist_ok=True)
        write_summary(summary, target / SUMMARY)
    human = out
    if as_json:
        # stdout is the JSON; the human summary goes beside it.
        out.write(json.dumps(summary, indent=2) + "\n")
        human = err
    table = format_timeline(timeline(summary))
    if table:
        human.write("where the time went:\n" + table)
    print_summary(summary, human)
    return ExitCode(summary["exit_code"])


def _logs(run: Run, source: Path) -> dict[str, Excerpt]:
    """What the services logged during each failure, from a run directory's guest-logs/."""
    return excerpts(run.records, source if source.is_dir() else None)


def _junit_text(run: Run, source: Path, logs: dict[str, Excerpt]) -> str:

    return junit_document(run, name=run_fact(stored_summary(source), "job") or "",
                          logs=excerpt_texts(logs))


def _html_text(run: Run, metadata: dict[str, object], source: Path,
               logs: dict[str, Excerpt]) -> str:

    previous = stored_summary(source)
    # The baseline's comparison and the gated verdict of `run` stay in the report.
    summary = gated(merge_summary(previous, build_summary(run, metadata)), previous)
    return render_html(run, summary, logs, stories_for(run.records, run_fact(summary, "job"),
                                                       run_fact(summary, "run_id")))


def junit(source: Path, *, output: str | None = None, out: IO[str] = sys.stdout) -> ExitCode:
    """Write junit.xml for a run (into its directory, or stdout for a bare stream)."""
    run, _ = _load(source)
    _write(_junit_text(run, source, _logs(run, source)), _destination(source, output, JUNIT),
           out)
    return ExitCode.OK


def html(source: Path, *, output: str | None = None, out: IO[str] = sys.stdout) -> ExitCode:
    """Write report.html for a run (into its directory, or stdout for a bare stream)."""
    run, metadata = _load(source)
    _write(_html_text(run, metadata, source, _logs(run, source)),
           _destination(source, output, HTML), out)
    return ExitCode.OK


def refresh_reports(run_dir: Path) -> None:
    """junit.xml and report.html of a finished run written again: with what its guest's
    services logged (guest-logs/ arrives after the results stage) and every stage's time."""
    run, metadata = _load(run_dir)
    logs = _logs(run, run_dir)
    files.write_text(run_dir / JUNIT, _junit_text(run, run_dir, logs))
    files.write_text(run_dir / HTML, _html_text(run, metadata, run_dir, logs))


def _job_of(source: Path) -> str | None:
    return run_fact(stored_summary(source), "job")


def compare(sources: tuple[Path, ...], *, job: str | None = None, gate: bool = False,
            as_json: bool = False, out: IO[str] = sys.stdout) -> ExitCode:
    """Compare BASE and NEW (directories or streams); BASE defaults to the job's latest run.

    With gate=True the exit code is 4 when NEW has failures BASE did not, else 0.
    """
    if len(sources) == 2:
        base, new = sources
    elif len(sources) == 1:
        new = sources[0]
        job = job or _job_of(new)
        if job is None:
            raise UsageError("compare: no BASE given and no job to take the latest run of",
                             hint="pass BASE NEW, or --job JOB")
        found = latest_run(job)
        if found is None:
            raise UsageError(f"compare: job {job} has no stored run to compare with")
        base = found
    else:
        raise UsageError("compare takes [BASE] NEW")
    comparison = compare_runs(base, new)
    if as_json:
        out.write(json.dumps(comparison.to_json(), indent=2) + "\n")
    else:
        out.write(format_comparison(comparison))
    return gate_exit_code(comparison) if gate else ExitCode.OK


def history(job: str, *, as_json: bool = False, html: str | None = None, last: int = 30,
            test: str | None = None, out: IO[str] = sys.stdout) -> ExitCode:
    """List a job's stored runs, oldest first; with html, a page of the last `last` runs
    (counts, durations, a per-test status grid, the tests that flip); with test, that
    test's story over them."""
    if last < 1:
        raise UsageError(f"--last {last}: at least 1")
    if test is not None:
        stored = load_history(job, last).runs
        if not any(test in run.tests for run in stored):
            raise UsageError(f"--test {files.quoted(test)}: in none of the last {len(stored)} "
                             f"runs of {job}")
        told = story(test, stored)
        if as_json:
            out.write(json.dumps(story_json(told), indent=2) + "\n")
        else:
            out.write("\n".join(told.lines()) + "\n")
        return ExitCode.OK
    if html is not None:
        runs = load_history(job, last)
        page = render_history(runs)
        if html != "-":
            Path(html).parent.mkdir(parents=True, exist_ok=True)
        _write(page, None if html == "-" else Path(html), out)
        if html != "-":
            log.info("%s: the last %d runs of %s", html, len(runs.runs), job)
        return ExitCode.OK
    entries = read_index(job)[-last:]
    if as_json:
        out.write(json.dumps(entries, indent=2) + "\n")
    else:
        out.write(format_history(job, entries))
    return ExitCode.OK


def story_json(told: Story) -> dict[str, object]:
    def run(stored: StoredRun | None) -> dict[str, object] | None:
        if stored is None:
            return None
        return {"run_id": stored.run_id, "date": stored.date}

    return {"test": told.test, "failing_since": run(told.failing_since),
            "last_passed": run(told.last_passed), "counted_runs": told.counted,
            "failed": told.failed, "flaky": told.flaky, "flips": told.flips,
            "flake_rate": round(told.flake_rate, 3),
            "runs": [{"run_id": r.run_id, "date": r.date, "exit_code": r.exit_code,
                      "counted": r.counted, "status": status,
                      "duration": r.durations.get(told.test)} for r, status in told.runs]}


def store(job: str, output_dir: Path, *, out: IO[str] = sys.stdout) -> ExitCode:
    """Keep a run's output directory in the results store; prints the stored path."""
    out.write(f"{_store_run(job, output_dir)}\n")
    return ExitCode.OK
