"""`results history JOB --html`: the last N stored runs of a job on one page.

Counts and duration per run, a grid of every test that was not steadily
passing or skipped (one cell per run), and the tests that flip: their
status changed from one run to the next, the first thing to look at in a
nightly series; each such test's story (failing since, last passed, flake
rate, duration trend), which `results history JOB --test ID` prints and the
run's report shows beside a failure.

A run that ended in a testbed failure (16) or was interrupted (130) is
shown, and counts for nothing: no test fails or flips in it.
"""

from __future__ import annotations

import itertools
import statistics
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tempest_live_ci import files
from tempest_live_ci.errors import ExitCode, UsageError
from tempest_live_ci.log import format_duration
from tempest_live_ci.results.model import (
    FAILING,
    FLAKY,
    PASSED,
    SKIPPED,
    STATUSES,
    XFAIL,
    TestRecord,
)
from tempest_live_ci.results.names import JUNIT, SUMMARY
from tempest_live_ci.results.store import job_dir, read_index, valid_name
from tempest_live_ci.results.summary import read_summary
from tempest_live_ci.results.templates import environment
from tempest_live_ci.terminal import printable

_STEADY = frozenset({PASSED, SKIPPED, XFAIL})
ABSENT = "absent"
# Runs shown but left out of every figure: the testbed failed (exit 16: a guest
# killed, a stream cut) or someone interrupted the run (130). Their tests did
# not fail; they were stopped.
UNCOUNTED = frozenset({int(ExitCode.TESTBED), int(ExitCode.INTERRUPTED)})
# junit.xml of a stored run, read for its tests' times when summary.json has none.
_JUNIT_LIMIT = 256 * files.MiB


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    date: str
    exit_code: int | None
    counts: dict[str, int]
    duration: float | None
    tests: dict[str, str]
    candidates: list[str] = field(default_factory=list)
    # Each test's seconds (summary.json's "durations", else the run's junit.xml).
    durations: dict[str, float] = field(default_factory=dict)

    @property
    def counted(self) -> bool:
        return self.exit_code not in UNCOUNTED


@dataclass(frozen=True)
class Story:
    """How one test has behaved over a job's stored runs (the counted ones)."""

    test: str
    runs: list[tuple[StoredRun, str]]  # every run, oldest first, with the test's status
    failing_since: StoredRun | None  # the first run of the failures it is in now
    last_passed: StoredRun | None
    counted: int
    failed: int
    flaky: int
    flips: int

    @property
    def flake_rate(self) -> float:
        """Counted runs in which it was flaky or flipped from the run before, as a share."""
        return (self.flaky + self.flips) / self.counted if self.counted else 0.0

    @property
    def durations(self) -> list[float | None]:
        return [run.durations.get(self.test) for run, _ in self.runs]

    @property
    def steady(self) -> bool:
        return not (self.failed or self.flaky or self.flips)

    def lines(self) -> list[str]:
        """The story as `results history JOB --test ID` prints it."""
        out = [printable(self.test)]
        if not self.counted:
            return [*out, "  in no counted run"]
        since = self.failing_since
        out.append("  failing since: " + (f"{since.run_id} ({since.date})" if since else
                                          "- (not failing in the last counted run)"))
        passed = self.last_passed
        out.append("  last passed:   " + (f"{passed.run_id} ({passed.date})" if passed else
                                          "never, in these runs"))
        out.append(f"  failed {self.failed}, flaky {self.flaky}, flipped {self.flips} times in "
                   f"{self.counted} counted runs: flake rate {self.flake_rate:.0%}")
        known = [d for d in self.durations if d is not None]
        if known:
            out.append(f"  duration: median {format_duration(statistics.median(known))}, "
                       f"last {format_duration(known[-1])}, "
                       f"range {format_duration(min(known))}–{format_duration(max(known))}")
        out.append("  runs, oldest first:")
        for run, status in self.runs:
            seconds = run.durations.get(self.test)
            out.append(f"    {printable(run.run_id):<24} {printable(run.date):<20} "
                       f"exit {run.exit_code!s:>4}  {status:<10} "
                       + (format_duration(seconds) if seconds is not None else "")
                       + ("" if run.counted else "  (not counted: the run did not finish)"))
        return out


@dataclass(frozen=True)
class History:
    job: str
    runs: list[StoredRun]
    # Tests not steadily good, worst first: (test id, one status per run).
    grid: list[tuple[str, list[str]]]
    flips: list[tuple[str, int]]  # test id, how many times its status changed
    steady: int  # tests that passed (or skipped) in every counted run they ran in
    stories: dict[str, Story] = field(default_factory=dict)


def _junit_durations(path: Path) -> dict[str, float]:
    """Each test's time from a stored junit.xml (classname.name → seconds)."""
    if not files.exists(path):
        return {}
    try:
        root = ET.fromstring(files.read_regular(path, limit=_JUNIT_LIMIT))
    except (UsageError, ET.ParseError):
        return {}
    found = {}
    for case in root.iter("testcase"):
        try:
            seconds = float(case.get("time") or "")
        except ValueError:
            continue
        classname = case.get("classname") or ""
        found[f"{classname}.{case.get('name')}" if classname else str(case.get("name"))] = \
            seconds
    return found


def _durations(summary: dict[str, object], run_dir: Path) -> dict[str, float]:
    recorded = summary.get("durations")
    if isinstance(recorded, dict):
        return {str(k): float(v) for k, v in recorded.items()
                if isinstance(v, int | float) and not isinstance(v, bool)}
    return _junit_durations(run_dir / JUNIT)


def _changes(statuses: list[str]) -> int:
    return sum(1 for a, b in itertools.pairwise(statuses)
               if (a in FAILING) != (b in FAILING) or (FLAKY in (a, b) and a != b))


def story(test: str, runs: list[StoredRun]) -> Story:
    row = [(run, run.tests.get(test, ABSENT)) for run in runs]
    counted = [(run, status) for run, status in row if run.counted and status != ABSENT]
    statuses = [status for _, status in counted]
    since = None
    for run, status in reversed(counted):
        if status not in FAILING:
            break
        since = run
    last_passed = next((run for run, status in reversed(counted) if status == PASSED), None)
    return Story(test, row, since, last_passed, len(counted),
                 sum(s in FAILING for s in statuses), statuses.count(FLAKY), _changes(statuses))


def load_history(job: str, last: int = 30, *, exclude: str | None = None) -> History:
    """The last `last` stored runs of `job` (without the run `exclude`, a run id)."""
    directory = job_dir(job)
    runs = []
    for entry in read_index(job)[-last - (exclude is not None):]:
        if exclude is not None and entry.get("run_id") == exclude:
            continue
        path = directory / str(entry.get("path", ""))
        summary = read_summary(path / SUMMARY) if entry.get("path") else {}
        tests = summary.get("tests")
        runs.append(StoredRun(
            run_id=str(entry.get("run_id", "?")), date=str(entry.get("date", ""))[:19],
            exit_code=entry.get("exit_code"), counts=dict(entry.get("counts") or {}),
            duration=entry.get("duration"),
            tests={str(k): str(v) for k, v in tests.items()} if isinstance(tests, dict) else {},
            candidates=list(entry.get("candidates") or []),
            durations=_durations(summary, path) if entry.get("path") else {}))
    runs = runs[-last:]
    every = sorted({t for run in runs for t in run.tests})
    grid, flips, steady, stories = [], [], 0, {}
    for test in every:
        told = story(test, runs)
        if told.steady:
            steady += 1
            continue
        stories[test] = told
        grid.append((test, [status for _, status in told.runs]))
        if told.flips:
            flips.append((test, told.flips))
    grid.sort(key=lambda item: (-stories[item[0]].failed, item[0]))
    flips.sort(key=lambda item: (-item[1], item[0]))
    return History(job, runs, grid, flips, steady, stories)


def stories_for(records: Iterable[TestRecord], job: str | None,
                run_id: str | None, last: int = 30) -> dict[str, Story]:
    """The stories of a run's failed and flaky tests over the job's stored runs before it
    (the run itself left out, stored or not)."""
    wanted = [r.id for r in records if r.status in FAILING or r.status == FLAKY]
    if not wanted or not job or not valid_name(job) or not job_dir(job).is_dir():
        return {}
    runs = load_history(job, last, exclude=run_id).runs
    return {test: story(test, runs) for test in wanted} if runs else {}


def sparkline(values: Sequence[float | None], width: float = 120,
              height: float = 18) -> str:
    """The points of an SVG polyline of `values` (None: no point), scaled to the box."""
    known = [v for v in values if v is not None]
    if len(known) < 2:
        return ""
    top = max(known) or 1.0
    step = width / (len(values) - 1)
    return " ".join(f"{i * step:.1f},{height - 1 - (v / top) * (height - 2):.1f}"
                    for i, v in enumerate(values) if v is not None)


def render_history(history: History) -> str:
    return environment().get_template("history.html.j2").render(
        h=history, statuses=STATUSES, absent=ABSENT, sparkline=sparkline)
