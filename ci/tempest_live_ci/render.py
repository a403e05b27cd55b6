"""Templates (host-setup/, live-build/) rendered with jinja2 and StrictUndefined.

A variable missing from the context is an error, never an empty string in a
configuration file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jinja2

from tempest_live_ci import paths

_environments: dict[tuple[Path, bool], jinja2.Environment] = {}


def environment(directory: Path | None = None, *, autoescape: bool = False) -> jinja2.Environment:
    """Configuration files are rendered as they are; HTML (autoescape) escapes its values."""
    directory = directory or paths.data_dir()
    env = _environments.get((directory, autoescape))
    if env is None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=autoescape,
        )
        _environments[(directory, autoescape)] = env
    return env


def render(template: str, **context: Any) -> str:
    """Render a template named relative to the data directory, e.g. "host-setup/dnsmasq.conf.j2"."""
    return environment().get_template(template).render(**context)


def render_to(template: str, destination: str | os.PathLike[str], *, mode: int = 0o644,
              **context: Any) -> Path:
    text = render(template, **context)
    path = Path(destination)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)
    return path
