"""summary.json: counts, durations, slowest tests, per-service table, skip reasons, exit code."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from tempest_live_ci import files
from tempest_live_ci.errors import ExitCode
from tempest_live_ci.log import format_duration
from tempest_live_ci.results.model import (
    ERROR,
    FAILED,
    FAILING,
    FLAKY,
    INCOMPLETE,
    PASSED,
    SKIPPED,
    STATUSES,
    UXSUCCESS,
    XFAIL,
    Run,
)
from tempest_live_ci.terminal import printable

SUMMARY_FORMAT = 1
SLOWEST = 15


def exit_code(run: Run) -> ExitCode:
    """0 all passed (skips are normal), 4 some failed, 8 no test ran, 16 the stream is incomplete.

    An incomplete stream means the guest or the runner died: a testbed
    failure, even when every finished test passed.
    """
    if not run.complete:
        return ExitCode.TESTBED
    statuses = Counter(r.status for r in run.records)
    if any(statuses[s] for s in FAILING):
        return ExitCode.TESTS_FAILED
    if not (statuses[PASSED] + statuses[FLAKY] + statuses[XFAIL]):
        # Nothing ran, or everything was skipped: nothing was tested.
        return ExitCode.NO_TESTS
    return ExitCode.OK


def verdict(run: Run) -> str:
    """One line saying what the exit code means for this run."""
    code = exit_code(run)
    if code == ExitCode.TESTBED:
        causes = []
        if run.incomplete_tests:
            causes.append(f"{len(run.incomplete_tests)} test(s) never finished")
        if run.not_run:
            causes.append(f"{len(run.not_run)} listed test(s) never ran")
        if run.stream_errors:
            causes.append("the subunit stream is cut or corrupt")
        if run.interrupted:
            causes.append("the run was interrupted")
        return "INCOMPLETE: the test run died before the end (" + "; ".join(causes) + \
            "): testbed failure, a retry makes sense"
    if code == ExitCode.TESTS_FAILED:
        return "FAILED: some tests failed"
    if code == ExitCode.NO_TESTS:
        return "NO TESTS: no test ran"
    return "PASSED: all tests passed"


def counts(run: Run) -> dict[str, int]:
    found = Counter(r.status for r in run.records)
    result = {status: found[status] for status in STATUSES}
    result["total"] = len(run.records)
    result["not_run"] = len(run.not_run) + len(run.not_run_explained) + len(run.not_run_skipped)
    return result


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def build_summary(run: Run, metadata: Mapping[str, object] | None = None) -> dict[str, Any]:
    """The content of summary.json (JSON types only)."""
    starts = [r.start for r in run.records if r.start is not None]
    ends = [end for r in run.records if (end := r.end or r.start) is not None]
    wall = (max(ends) - min(starts)).total_seconds() if starts and ends else 0.0
    test_time = sum(r.duration or 0.0 for r in run.records)

    services: dict[str, dict[str, Any]] = defaultdict(
        lambda: {**{s: 0 for s in STATUSES}, "total": 0, "duration": 0.0})
    for r in run.records:
        row = services[r.service]
        row[r.status] += 1
        row["total"] += 1
        row["duration"] = round(row["duration"] + (r.duration or 0.0), 3)

    reasons: dict[str, list[str]] = defaultdict(list)
    for r in run.by_status(SKIPPED):
        reasons[r.reason or "(no reason given)"].append(r.id)

    timed = sorted((r for r in run.records if r.duration is not None),
                   key=lambda r: r.duration or 0.0, reverse=True)
    code = exit_code(run)
    return {
        "format": SUMMARY_FORMAT,
        "exit_code": int(code),
        "verdict": verdict(run),
        "complete": run.complete,
        "counts": counts(run),
        "start": _iso(min(starts)) if starts else None,
        "end": _iso(max(ends)) if ends else None,
        "duration": round(wall, 3),
        "test_time": round(test_time, 3),
        "reruns": run.reruns,
        "failures": [
            {"id": r.id, "status": r.status, "duration": r.duration,
             "attempts": list(r.attempts), "text": r.failure_text or r.reason}
            for r in run.records if r.status in FAILING
        ],
        "flaky": [{"id": r.id, "attempts": list(r.attempts)} for r in run.by_status(FLAKY)],
        "incomplete": {
            "running": [r.id for r in run.incomplete_tests],
            "not_run": list(run.not_run),
            "stream_errors": list(run.stream_errors),
            "interrupted": run.interrupted,
        },
        "not_run_after_fixture_failure": list(run.not_run_explained),
        "not_run_after_fixture_skip": list(run.not_run_skipped),
        "slowest": [{"id": r.id, "status": r.status, "duration": round(r.duration or 0.0, 3)}
                    for r in timed[:SLOWEST]],
        "services": dict(sorted(services.items())),
        "skip_reasons": [
            {"reason": reason, "count": len(ids), "tests": ids}
            for reason, ids in sorted(reasons.items(), key=lambda kv: (-len(kv[1]), kv[0]))
        ],
        "stray_output": run.stray_output[-4096:],
        "metadata": dict(metadata or {}),
        # Every test's final status: what `results compare` reads when the
        # stream itself is gone.
        "tests": run.statuses(),
    }


def merge_summary(previous: Mapping[str, Any], summary: Mapping[str, Any]) -> dict[str, Any]:
    """A regenerated summary over an earlier summary.json: what build_summary() makes is
    replaced, everything else is kept (what `run` adds: job, run_id, stages, image, boot, ...)."""
    return {**previous, **summary}


def write_summary(summary: Mapping[str, Any], path: Path) -> Path:
    return files.write_text(path, json.dumps(summary, indent=2, sort_keys=False, default=str)
                            + "\n")


def format_summary(summary: Mapping[str, Any], *, limit: int = 20) -> str:
    """A short human summary: the verdict, counts, what failed, what never finished.

    Test ids, stream errors and the runner's output come from the guest:
    their control characters are escaped (terminal.printable), one line each.
    """
    c = summary["counts"]
    lines = [
        f"{c['total']} tests in {format_duration(summary['duration'])}: "
        f"{c[PASSED]} passed, {c[FAILED]} failed, {c[ERROR]} errors, {c[SKIPPED]} skipped"
        + (f", {c[FLAKY]} flaky" if c[FLAKY] else "")
        + (f", {c[XFAIL]} expected failures" if c[XFAIL] else "")
        + (f", {c[UXSUCCESS]} unexpected successes" if c[UXSUCCESS] else "")
        + (f", {c[INCOMPLETE]} incomplete" if c[INCOMPLETE] else ""),
    ]
    for title, ids in (
        ("failed", [f["id"] for f in summary["failures"] if f["status"] != INCOMPLETE]),
        ("flaky (failed, then passed on re-run)", [f["id"] for f in summary["flaky"]]),
        ("still running when the stream ended", summary["incomplete"]["running"]),
        ("listed but never run", summary["incomplete"]["not_run"]),
    ):
        if ids:
            lines.append(f"{title}:")
            lines.extend(f"  {printable(i)}" for i in ids[:limit])
            if len(ids) > limit:
                lines.append(f"  ... and {len(ids) - limit} more")
    if summary["exit_code"] in (ExitCode.NO_TESTS, ExitCode.TESTBED) and summary["stray_output"]:
        lines.append("runner output outside the stream (last lines):")
        lines.extend(f"  {printable(line)}"
                     for line in summary["stray_output"].rstrip().splitlines()[-15:])
    for error in summary["incomplete"]["stream_errors"][:3]:
        lines.append(f"stream error: {printable(error)}")
    lines.append(f"{summary['verdict']} (exit {summary['exit_code']})")
    return "\n".join(lines) + "\n"


def print_summary(summary: Mapping[str, Any], stream: IO[str]) -> None:
    stream.write(format_summary(summary))
    stream.flush()
