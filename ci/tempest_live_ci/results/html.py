"""report.html: one self-contained page (inline CSS, no script, no network)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tempest_live_ci import files, render
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import format_duration
from tempest_live_ci.results.model import FAILING, FLAKY, SKIPPED, STATUSES, Run, TestRecord

if TYPE_CHECKING:
    import jinja2
else:
    jinja2 = lazy_module("jinja2")

TEMPLATES = Path(__file__).resolve().parent / "templates"



def _duration(value: float | None) -> str:
    if value is None:
        return "–"
    if value < 10:
        return f"{value:.2f}s"
    return format_duration(value)


def environment() -> jinja2.Environment:
    # Test ids, tracebacks and metadata are untrusted text in HTML.
    env = render.environment(TEMPLATES, autoescape=True)
    env.filters["duration"] = _duration
    return env


def _key_id(record: TestRecord) -> str:
    return record.id


def _key_failure(record: TestRecord) -> tuple[bool, str]:
    return (not record.is_fixture, record.id)


def render_html(run: Run, summary: Mapping[str, Any]) -> str:
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
        metadata=summary.get("metadata", {}),
    )


def write_html(run: Run, summary: Mapping[str, Any], path: Path) -> Path:
    return files.write_text(path, render_html(run, summary))
