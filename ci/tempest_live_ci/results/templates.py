"""The reports' jinja2 templates (results/templates/): report.html's and the history page's."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from tempest_live_ci import render
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import format_duration

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
