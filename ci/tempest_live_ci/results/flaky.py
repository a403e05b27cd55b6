"""Re-run failed tests and merge: a test that passes on a re-run is flaky, not failed.

The re-run itself is the caller's: a callable that receives a `--load-list`
file (one test id a line) and returns the subunit bytes of that run, e.g.
`tempest run --load-list` in the guest, or `stestr run --load-list` here.
"""

from __future__ import annotations

import bisect
import dataclasses
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from pathlib import Path

from tempest_live_ci import files
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
_RERUN_STREAM_RE = re.compile(r"tempest-rerun-([0-9]{1,6})\.subunit")

# Re-run outcomes that clear a failure.
_GOOD = frozenset({PASSED, SKIPPED, XFAIL})
# First-run outcomes worth a re-run. An incomplete test is not: its worker or
# the guest died, a re-run would not tell whether the test is flaky.
_RERUNNABLE = frozenset({FAILED, ERROR, UXSUCCESS})


class Listed:
    """The tests a stream listed and never ran, found by the class or module they are in.

    The ids under a target (those starting with "target.") are one range of
    the sorted ids, from "target." up to "target/" ('/' follows '.'): two
    bisections per target, instead of a pass over every listed test for each
    failed fixture. 64,000 tests under one class, or 16,000 classes, stay a
    matter of milliseconds.
    """

    def __init__(self, ids: Sequence[str]) -> None:
        self.ids = ids
        self._order = sorted(range(len(ids)), key=ids.__getitem__)
        self._sorted = [ids[i] for i in self._order]

    def _span(self, target: str) -> tuple[int, int]:
        return (bisect.bisect_left(self._sorted, target + "."),
                bisect.bisect_left(self._sorted, target + "/"))

    def under(self, target: str) -> list[str]:
        """The listed ids under `target`, in the stream's order."""
        low, high = self._span(target)
        return [self.ids[i] for i in sorted(self._order[low:high])]

    def covered(self, targets: Iterable[str]) -> list[bool]:
        """For each listed id (stream order): is it under any of `targets`?"""
        depth = [0] * (len(self.ids) + 1)
        for target in set(targets):
            low, high = self._span(target)
            depth[low] += 1
            depth[high] -= 1
        result = [False] * len(self.ids)
        running = 0
        for position, index in enumerate(self._order):
            running += depth[position]
            result[index] = running > 0
        return result


def rerun_targets(record: TestRecord, stream: StreamData, listed: Listed | None = None) -> list[str]:
    """The loadable test ids that re-run a failure.

    A fixture failure ("setUpClass (tempest.x.Test)") is not a test id a
    runner can load: its class's tests, which the runner listed but never ran,
    are re-run instead. A module that failed to import has nothing to re-run.
    `listed`: the stream's Listed(not_run), when the caller asks for many.
    """
    target = fixture_target(record.id)
    if target is None:
        return [record.id]
    if record.id.startswith("unittest.loader._FailedTest."):
        return []
    return (listed or Listed(stream.not_run)).under(target)


def write_load_list(test_ids: Iterable[str], path: Path) -> Path:
    """A stestr/tempest `--load-list` file: one test id a line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    files.write_text(path, "".join(f"{t}\n" for t in test_ids))
    return path


def rerun_failures(stream: StreamData, rerun: Rerun, *, attempts: int,
                   workdir: Path) -> list[StreamData]:
    """Re-run the failed tests of `stream` up to `attempts` times.

    Each attempt re-runs only what is still failing. The load lists and the
    streams are kept in `workdir` (rerun-N.load-list, tempest-rerun-N.subunit)
    so that the merged result can be rebuilt later from the directory.
    """
    pending: list[str] = []
    listed = Listed(stream.not_run)
    for record in stream.records:
        if record.status in _RERUNNABLE:
            pending.extend(rerun_targets(record, stream, listed))
    pending = list(dict.fromkeys(pending))
    results: list[StreamData] = []
    for n in range(1, attempts + 1):
        if not pending:
            break
        load_list = write_load_list(pending, workdir / f"rerun-{n}.load-list")
        with step(f"Re-running {len(pending)} failed test{'s' * (len(pending) != 1)} "
                  f"(attempt {n} of {attempts})"):
            data = rerun(load_list)
            files.write_bytes(workdir / RERUN_STREAM.format(n=n), data)
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
        match = _RERUN_STREAM_RE.fullmatch(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def _attempt(record: TestRecord, targets: Sequence[str],
             outcome: Mapping[str, TestRecord]) -> tuple[str, TestRecord | None] | None:
    """How a failure fared in one re-run (`outcome`: its records by test id): a status and
    the record that says it, or None if it was not re-run there."""
    if record.id in outcome and outcome[record.id].status not in _GOOD:
        # The test (or its fixture) failed again.
        return outcome[record.id].status, outcome[record.id]
    seen = [outcome[t] for t in targets if t in outcome]
    if not seen:
        again = outcome.get(record.id)
        return None if again is None else (again.status, again)
    bad = [r for r in seen if r.status not in _GOOD]
    if bad:
        return bad[0].status, bad[0]
    # A fixture passed only if every test it stopped ran again and passed.
    return (PASSED, None) if len(seen) == len(targets) else (INCOMPLETE, None)


def _fixture_targets(records: Sequence[TestRecord], statuses: Collection[str]) -> set[str]:
    """The classes and modules whose fixture (setUpClass, setUpModule, ...) ended in `statuses`."""
    return {t for r in records if r.status in statuses
            if (t := fixture_target(r.id)) is not None}


def merge_reruns(first: StreamData, reruns: Sequence[StreamData] = (), *,
                 interrupted: bool = False) -> Run:
    """One Run from a first stream and its re-runs: failures that passed again are flaky."""
    records = []
    listed = Listed(first.not_run)
    outcomes = [{r.id: r for r in rerun.records} for rerun in reruns]
    for record in first.records:
        if record.status in _RERUNNABLE and reruns:
            targets = rerun_targets(record, first, listed)
            attempts = [record.status]
            again: list[TestRecord] = []
            for outcome in outcomes:
                found = _attempt(record, targets, outcome)
                if found is not None:
                    attempts.append(found[0])
                    if found[1] is not None:
                        again.append(found[1])
            if len(attempts) > 1:
                details = dict(record.details)
                if PASSED in attempts[1:]:
                    details["rerun"] = (
                        f"failed on the first run, passed on re-run "
                        f"{attempts.index(PASSED, 1)} of {len(attempts) - 1}: flaky"
                    )
                    record = dataclasses.replace(record, status=FLAKY, details=details)
                record = dataclasses.replace(record, attempts=tuple(attempts),
                                             reruns=tuple(again))
        records.append(record)

    # A live stream lists every test ("exists") before running any. The tests
    # of a class or module whose setUpClass/setUpModule failed never run, nor
    # do those of one that skipped itself there: tempest skips whole classes
    # from setUpClass (skip_checks raises SkipTest), and unittest reports one
    # skip of "setUpClass (pkg.module.Class)" instead of one per test.
    failed = listed.covered(_fixture_targets(records, (ERROR, FLAKY)))
    skipped_too = listed.covered(_fixture_targets(records, (SKIPPED,)))
    explained = tuple(t for t, f in zip(first.not_run, failed, strict=True) if f)
    skipped = tuple(t for t, f, s in zip(first.not_run, failed, skipped_too, strict=True)
                    if s and not f)
    return Run(
        records=tuple(records),
        not_run=tuple(t for t, f, s in zip(first.not_run, failed, skipped_too, strict=True)
                      if not (f or s)),
        not_run_explained=explained,
        not_run_skipped=skipped,
        stream_errors=first.stream_errors,
        stray_output=first.stray_output,
        interrupted=interrupted,
        reruns=len(reruns),
    )
