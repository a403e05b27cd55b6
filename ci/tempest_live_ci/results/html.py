"""report.html: one self-contained page (inline CSS, no script, no network)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tempest_live_ci import files
from tempest_live_ci.results.history import Story, sparkline
from tempest_live_ci.results.lanes import lanes
from tempest_live_ci.results.model import FAILING, FLAKY, SKIPPED, STATUSES, Run, TestRecord
from tempest_live_ci.results.servicelogs import MARGIN, Excerpt
from tempest_live_ci.results.templates import environment
from tempest_live_ci.results.timing import timeline

# What the Run table leaves to the time line above it.
_SHOWN_ELSEWHERE = frozenset({"steps", "guest_memory_peak_mib"})
# The worker lanes' drawing, in SVG user units: the time axis, a lane's height.
LANE_WIDTH = 1200
LANE_HEIGHT = 16


def _key_id(record: TestRecord) -> str:
    return record.id


def _key_failure(record: TestRecord) -> tuple[bool, str]:
    return (not record.is_fixture, record.id)


def render_html(run: Run, summary: Mapping[str, Any],
                logs: Mapping[str, Excerpt] | None = None,
                stories: Mapping[str, Story] | None = None) -> str:
    """The page; `logs`: what the services logged during each failure (servicelogs.excerpts);
    `stories`: the failures' stories over the job's earlier runs (history.stories_for)."""
    failing = [r for r in run.records if r.status in FAILING]
    # Failures first, fixture and import errors before the tests they hide.
    failing.sort(key=_key_failure)
    return environment().get_template("report.html.j2").render(
        summary=summary,
        statuses=STATUSES,
        failing=failing,
        flaky=sorted(run.by_status(FLAKY), key=_key_id),
        skipped_count=len(run.by_status(SKIPPED)),
        records=sorted(run.records, key=_key_id),
        metadata={k: v for k, v in summary.get("metadata", {}).items()
                  if k not in _SHOWN_ELSEWHERE},
        timing=timeline(summary),
        lanes=lanes(run.records),
        lane_width=LANE_WIDTH,
        lane_height=LANE_HEIGHT,
        logs=logs or {},
        margin=MARGIN,
        stories=stories or {},
        sparkline=sparkline,
    )


def write_html(run: Run, summary: Mapping[str, Any], path: Path,
               logs: Mapping[str, Excerpt] | None = None,
               stories: Mapping[str, Story] | None = None) -> Path:
    return files.write_text(path, render_html(run, summary, logs, stories))
