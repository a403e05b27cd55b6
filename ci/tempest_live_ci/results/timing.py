"""Where a run's time went: the host's stages and the guest's steps on one time line.

summary.json holds the numbers as `run` recorded them: "stages" (host
seconds per stage, in the order they ran, and "total"), "steps" (each guest
step's seconds and the parts it timed), and metadata.steps, which adds each
step's memory peak. The stages ran one after the other; a step ran inside
the stage that STEP_STAGE names, its steps one after the other from the
stage's start. Nothing records when a step began, so that is where the
time line draws it: from the stage's start, each step after the previous.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tempest_live_ci.log import format_duration

# The stage of run.py that runs each guest step (run.py's _guest_stages, _run_tempest,
# _collect_guest_logs).
STEP_STAGE = {
    "check": "prepare", "prepare": "prepare", "install": "install", "candidates": "candidates",
    "configure": "configure", "tempest-conf": "configure", "tempest": "tempest",
    "collect": "logs",
}
TOTAL = "total"


@dataclass(frozen=True)
class Span:
    """A stage (depth 0) or a guest step (depth 1), seconds from the run's start."""

    name: str
    start: float
    seconds: float
    depth: int
    memory_peak_mib: int | None = None
    # The step's own timed parts, (name, seconds), as the guest recorded them.
    parts: tuple[tuple[str, float], ...] = ()

    @property
    def end(self) -> float:
        return self.start + self.seconds


@dataclass(frozen=True)
class Timeline:
    spans: tuple[Span, ...]
    # Seconds from the run's start to its end: the recorded total, else the stages' sum.
    total: float
    memory_peak_mib: int | None = None

    def __bool__(self) -> bool:
        return bool(self.spans)


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value >= 0:
        return float(value)
    return None


def _mapping(value: object) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _parts(value: object) -> tuple[tuple[str, float], ...]:
    found = []
    for name, seconds in _mapping(value).items():
        number = _number(seconds)
        if number is not None:
            found.append((str(name), number))
    return tuple(found)


def _memory(*steps: Mapping[str, Any]) -> int | None:
    for step in steps:
        value = step.get("memory_peak_mib")
        # Older runs kept the peak among the parts.
        value = value if value is not None else _mapping(step.get("parts")).get("memory_peak_mib")
        number = _number(value)
        if number is not None:
            return int(number)
    return None


def timeline(summary: Mapping[str, Any]) -> Timeline:
    """The stages and steps a summary.json records, laid out from the run's start."""
    metadata = _mapping(summary.get("metadata"))
    stages = {str(k): v for k, v in _mapping(summary.get("stages")).items()
              if k != TOTAL and _number(v) is not None}
    recorded = _mapping(metadata.get("steps"))
    steps = {**{str(k): _mapping(v) for k, v in recorded.items()},
             **{str(k): {**_mapping(recorded.get(k)), **_mapping(v)}
                for k, v in _mapping(summary.get("steps")).items()}}
    spans: list[Span] = []
    placed: set[str] = set()
    clock = 0.0

    def add_steps(names: list[str], start: float) -> float:
        for name in names:
            step = steps[name]
            seconds = _number(step.get("seconds"))
            if seconds is None:
                continue
            spans.append(Span(name, start, seconds, 1, _memory(step, _mapping(recorded.get(name))),
                              tuple(p for p in _parts(step.get("parts"))
                                    if p[0] != "memory_peak_mib")))
            placed.add(name)
            start += seconds
        return start

    for stage, seconds in stages.items():
        length = float(seconds)
        spans.append(Span(stage, clock, length, 0))
        add_steps([s for s in steps if STEP_STAGE.get(s) == stage], clock)
        clock += length
    # Steps whose stage is not recorded (a run that ended early, a step of a newer guest).
    clock = max(clock, add_steps([s for s in steps if s not in placed], clock))
    total = _number(_mapping(summary.get("stages")).get(TOTAL))
    peak = _number(metadata.get("guest_memory_peak_mib"))
    if peak is None:
        peak = _number(_mapping(summary.get("guest")).get("memory_peak_mib"))
    return Timeline(tuple(spans), max(total or 0.0, clock, *(s.end for s in spans)),
                    int(peak) if peak is not None else None)


def format_timeline(line: Timeline) -> str:
    """The time line as an aligned table: stage, step, start, duration, memory peak."""
    if not line:
        return ""
    rows = [("stage / step", "start", "time", "memory")]
    for span in line.spans:
        rows.append((("  " if span.depth else "") + span.name, format_duration(span.start),
                     format_duration(span.seconds),
                     f"{span.memory_peak_mib} MiB" if span.memory_peak_mib is not None else ""))
    rows.append((TOTAL, "", format_duration(line.total),
                 f"{line.memory_peak_mib} MiB" if line.memory_peak_mib is not None else ""))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    lines = [f"{r[0]:<{widths[0]}}  {r[1]:>{widths[1]}}  {r[2]:>{widths[2]}}  "
             f"{r[3]:>{widths[3]}}".rstrip() for r in rows]
    return "\n".join(lines) + "\n"
