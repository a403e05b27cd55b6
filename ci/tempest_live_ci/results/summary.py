"""summary.json: counts, durations, slowest tests, per-service table, skip reasons, exit code."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from tempest_live_ci import files
from tempest_live_ci.errors import ExitCode, UsageError
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
from tempest_live_ci.results.names import SUMMARY
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
        # Every timed test's seconds: the duration trend of `results history`.
        "durations": {r.id: round(r.duration, 2) for r in run.records
                      if r.duration is not None},
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
