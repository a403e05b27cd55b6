"""`results history JOB --html`: the last N stored runs of a job on one page.

Counts and duration per run, a grid of every test that was not steadily
passing or skipped (one cell per run), and the tests that flip: their
status changed from one run to the next, the first thing to look at in a
nightly series.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from tempest_live_ci.results.html import environment
from tempest_live_ci.results.model import FAILING, FLAKY, PASSED, SKIPPED, STATUSES, XFAIL
from tempest_live_ci.results.names import SUMMARY
from tempest_live_ci.results.run import read_summary
from tempest_live_ci.results.store import job_dir, read_index

_STEADY = frozenset({PASSED, SKIPPED, XFAIL})
ABSENT = "absent"


@dataclass(frozen=True)
class StoredRun:
    run_id: str
    date: str
    exit_code: int | None
    counts: dict[str, int]
    duration: float | None
    tests: dict[str, str]
    candidates: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class History:
    job: str
    runs: list[StoredRun]
    # Tests not steadily good, worst first: (test id, one status per run).
    grid: list[tuple[str, list[str]]]
    flips: list[tuple[str, int]]  # test id, how many times its status changed
    steady: int  # tests that passed (or skipped) in every run they ran in


def load_history(job: str, last: int = 30) -> History:
    directory = job_dir(job)
    runs = []
    for entry in read_index(job)[-last:]:
        path = directory / str(entry.get("path", ""))
        summary = read_summary(path / SUMMARY) if entry.get("path") else {}
        tests = summary.get("tests")
        runs.append(StoredRun(
            run_id=str(entry.get("run_id", "?")), date=str(entry.get("date", ""))[:19],
            exit_code=entry.get("exit_code"), counts=dict(entry.get("counts") or {}),
            duration=entry.get("duration"),
            tests={str(k): str(v) for k, v in tests.items()} if isinstance(tests, dict) else {},
            candidates=list(entry.get("candidates") or [])))
    every = sorted({t for run in runs for t in run.tests})
    grid, flips, steady = [], [], 0
    for test in every:
        row = [run.tests.get(test, ABSENT) for run in runs]
        present = [s for s in row if s != ABSENT]
        if all(s in _STEADY for s in present):
            steady += 1
            continue
        grid.append((test, row))
        changes = sum(1 for a, b in itertools.pairwise(present)
                      if (a in FAILING) != (b in FAILING) or (FLAKY in (a, b) and a != b))
        if changes:
            flips.append((test, changes))
    grid.sort(key=lambda item: (-sum(s in FAILING for s in item[1]), item[0]))
    flips.sort(key=lambda item: (-item[1], item[0]))
    return History(job, runs, grid, flips, steady)


def render_history(history: History) -> str:
    return environment().get_template("history.html.j2").render(
        h=history, statuses=STATUSES, absent=ABSENT)
