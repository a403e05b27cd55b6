"""Re-run failed tests and merge: a test that passes on a re-run is flaky, not failed.

The re-run itself is the caller's: a callable that receives a `--load-list`
file (one test id a line) and returns the subunit bytes of that run, e.g.
`tempest run --load-list` in the guest, or `stestr run --load-list` here.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from tempest_live_ci.log import log, step
from tempest_live_ci.results.model import (
    ERROR,
    FAILED,
    FLAKY,
    INCOMPLETE,
    PASSED,
    SKIPPED,
    UXSUCCESS,
    XFAIL,
    Run,
    StreamData,
    TestRecord,
    fixture_target,
)
from tempest_live_ci.results.stream import read_stream

Rerun = Callable[[Path], bytes]

RERUN_STREAM = "tempest-rerun-{n}.subunit"
_RERUN_STREAM_RE = re.compile(r"^tempest-rerun-(\d+)\.subunit$")

# Re-run outcomes that clear a failure.
_GOOD = frozenset({PASSED, SKIPPED, XFAIL})
# First-run outcomes worth a re-run. An incomplete test is not: its worker or
# the guest died, a re-run would not tell whether the test is flaky.
_RERUNNABLE = frozenset({FAILED, ERROR, UXSUCCESS})


def _under(test_id: str, target: str) -> bool:
    return test_id.startswith(target + ".")


def rerun_targets(record: TestRecord, stream: StreamData) -> list[str]:
    """The loadable test ids that re-run a failure.

    A fixture failure ("setUpClass (tempest.x.Test)") is not a test id a
    runner can load: its class's tests, which the runner listed but never ran,
    are re-run instead. A module that failed to import has nothing to re-run.
    """
    target = fixture_target(record.id)
    if target is None:
        return [record.id]
    if record.id.startswith("unittest.loader._FailedTest."):
        return []
    return [t for t in stream.not_run if _under(t, target)]


def write_load_list(test_ids: Iterable[str], path: Path) -> Path:
    """A stestr/tempest `--load-list` file: one test id a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t}\n" for t in test_ids), encoding="utf-8")
    return path


def rerun_failures(stream: StreamData, rerun: Rerun, *, attempts: int,
                   workdir: Path) -> list[StreamData]:
    """Re-run the failed tests of `stream` up to `attempts` times.

    Each attempt re-runs only what is still failing. The load lists and the
    streams are kept in `workdir` (rerun-N.load-list, tempest-rerun-N.subunit)
    so that the merged result can be rebuilt later from the directory.
    """
    pending: list[str] = []
    for record in stream.records:
        if record.status in _RERUNNABLE:
            pending.extend(rerun_targets(record, stream))
    pending = list(dict.fromkeys(pending))
    results: list[StreamData] = []
    for n in range(1, attempts + 1):
        if not pending:
            break
        load_list = write_load_list(pending, workdir / f"rerun-{n}.load-list")
        with step(f"Re-running {len(pending)} failed test{'s' * (len(pending) != 1)} "
                  f"(attempt {n} of {attempts})"):
            data = rerun(load_list)
            (workdir / RERUN_STREAM.format(n=n)).write_bytes(data)
            parsed = read_stream(data)
        results.append(parsed)
        outcome = {r.id: r.status for r in parsed.records}
        pending = [t for t in pending if outcome.get(t) not in _GOOD]
        log.info("%d still failing", len(pending))
    return results


def rerun_streams(directory: Path) -> list[Path]:
    """The re-run streams kept in a run's output directory, in attempt order."""
    found = []
    for path in directory.iterdir():
        match = _RERUN_STREAM_RE.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def _attempt_status(record: TestRecord, targets: Sequence[str], rerun: StreamData) -> str | None:
    """How a failure fared in one re-run: a status, or None if it was not re-run there."""
    outcome = {r.id: r.status for r in rerun.records}
    if record.id in outcome and outcome[record.id] not in _GOOD:
        # The test (or its fixture) failed again.
        return outcome[record.id]
    seen = [outcome[t] for t in targets if t in outcome]
    if not seen:
        return outcome.get(record.id)
    bad = [s for s in seen if s not in _GOOD]
    if bad:
        return bad[0]
    return PASSED if len(seen) == len(targets) else INCOMPLETE


def _fixture_targets(records: Sequence[TestRecord], statuses: Sequence[str]) -> list[str]:
    """The classes and modules whose fixture (setUpClass, setUpModule, ...) ended in `statuses`."""
    return [t for r in records if r.status in statuses
            if (t := fixture_target(r.id)) is not None]


def merge_reruns(first: StreamData, reruns: Sequence[StreamData] = (), *,
                 interrupted: bool = False) -> Run:
    """One Run from a first stream and its re-runs: failures that passed again are flaky."""
    records = []
    for record in first.records:
        if record.status in _RERUNNABLE and reruns:
            targets = rerun_targets(record, first)
            attempts = [record.status]
            for rerun in reruns:
                status = _attempt_status(record, targets, rerun)
                if status is not None:
                    attempts.append(status)
            if len(attempts) > 1:
                details = dict(record.details)
                if PASSED in attempts[1:]:
                    details["rerun"] = (
                        f"failed on the first run, passed on re-run "
                        f"{attempts.index(PASSED, 1)} of {len(attempts) - 1}: flaky"
                    )
                    record = dataclasses.replace(record, status=FLAKY, details=details)
                record = dataclasses.replace(record, attempts=tuple(attempts))
        records.append(record)

    # A live stream lists every test ("exists") before running any. The tests
    # of a class or module whose setUpClass/setUpModule failed never run, nor
    # do those of one that skipped itself there: tempest skips whole classes
    # from setUpClass (skip_checks raises SkipTest), and unittest reports one
    # skip of "setUpClass (pkg.module.Class)" instead of one per test.
    failed_fixtures = _fixture_targets(records, (ERROR, FLAKY))
    skipped_fixtures = _fixture_targets(records, (SKIPPED,))
    explained = tuple(t for t in first.not_run if any(_under(t, f) for f in failed_fixtures))
    skipped = tuple(t for t in first.not_run if t not in explained
                    and any(_under(t, f) for f in skipped_fixtures))
    return Run(
        records=tuple(records),
        not_run=tuple(t for t in first.not_run if t not in explained and t not in skipped),
        not_run_explained=explained,
        not_run_skipped=skipped,
        stream_errors=first.stream_errors,
        stray_output=first.stray_output,
        interrupted=interrupted,
        reruns=len(reruns),
    )
