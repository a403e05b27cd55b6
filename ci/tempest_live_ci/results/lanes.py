"""The tempest run as a time line: one lane per worker, one bar per test.

stestr tags each test with the worker that ran it (subunit tag "worker-N");
a test without one (a serial run, a stream of another runner) is in lane
"-". Bars are placed in seconds from the first test's start, so the idle
stretches of a worker (a class fixture, a worker waiting for its next
group) are the gaps between them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from tempest_live_ci.results.model import TestRecord

_WORKER = re.compile(r"worker-([0-9]{1,6})")
NO_WORKER = "-"


@dataclass(frozen=True)
class Bar:
    id: str
    status: str
    start: float
    seconds: float


@dataclass(frozen=True)
class Lane:
    name: str
    bars: tuple[Bar, ...]
    busy: float  # seconds the worker spent in tests

    @property
    def idle(self) -> float:
        if not self.bars:
            return 0.0
        return max(0.0, self.bars[-1].start + self.bars[-1].seconds - self.bars[0].start
                   - self.busy)


@dataclass(frozen=True)
class Lanes:
    lanes: tuple[Lane, ...]
    seconds: float  # from the first test's start to the last one's end

    def __bool__(self) -> bool:
        return bool(self.lanes)

    def ticks(self, count: int = 8) -> list[float]:
        """Round times (seconds) for the axis, about `count` of them."""
        if self.seconds <= 0:
            return [0.0]
        step = next((s for s in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600,
                                 7200, 14400) if self.seconds / s <= count), 28800)
        return [float(t) for t in range(0, int(self.seconds) + 1, step)]


def worker_of(record: TestRecord) -> str:
    for tag in record.tags:
        match = _WORKER.fullmatch(tag)
        if match:
            return match.group(1)
    return NO_WORKER


def _lane_key(name: str) -> tuple[int, int]:
    return (1, 0) if name == NO_WORKER else (0, int(name))


def lanes(records: Iterable[TestRecord]) -> Lanes:
    timed = [r for r in records if r.start is not None]
    if not timed:
        return Lanes((), 0.0)
    origin = min(r.start for r in timed if r.start is not None)
    by_worker: dict[str, list[Bar]] = {}
    for r in timed:
        assert r.start is not None
        by_worker.setdefault(worker_of(r), []).append(
            Bar(r.id, r.status, (r.start - origin).total_seconds(), r.duration or 0.0))
    found = []
    end = 0.0
    for name in sorted(by_worker, key=_lane_key):
        bars = sorted(by_worker[name], key=lambda b: b.start)
        end = max(end, max(b.start + b.seconds for b in bars))
        found.append(Lane(name, tuple(bars), sum(b.seconds for b in bars)))
    return Lanes(tuple(found), end)
