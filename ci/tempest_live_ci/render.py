"""Templates (host-setup/, live-build/) rendered with jinja2 and StrictUndefined.

A variable missing from the context is an error, never an empty string in a
configuration file.

Values are quoted where they land:

- XML and HTML templates (`*.xml.j2`, `*.html.j2`) are autoescaped;
- shell templates quote each value with the `shell_quote` filter
  (shlex.quote): `--mirror {{ mirror | shell_quote }}`;
- every other template is a line-oriented configuration file (dnsmasq,
  nftables, apt-cacher-ng, iPXE): a value holding a newline or another
  control character would start a line of its own, so it is refused.

Validation (config.py, testbed/config.py, image/model.py) refuses such values
long before; this is the last line of defence.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tempest_live_ci import paths
from tempest_live_ci.errors import UsageError, shown
from tempest_live_ci.lazy import lazy_module

if TYPE_CHECKING:
    import jinja2
else:
    jinja2 = lazy_module("jinja2")

_environments: dict[tuple[Path, bool | None], jinja2.Environment] = {}
_ESCAPED = (".xml", ".html", ".htm")


def shell_quote(value: Any) -> str:
    """One shell word, whatever the value holds."""
    return shlex.quote(str(value))


def has_control_character(text: str) -> bool:
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in text)


def _single_line(value: Any) -> Any:
    """finalize of the configuration-file templates: no value may break out of its line."""
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    if has_control_character(text):
        raise UsageError(f"a value for a configuration file holds a control character: {shown(text)}")
    return value


def _autoescape(name: str | None) -> bool:
    return name is not None and name.removesuffix(".j2").endswith(_ESCAPED)


def environment(directory: Path | None = None, *,
                autoescape: bool | None = None) -> jinja2.Environment:
    """Configuration files are rendered as they are; XML and HTML escape their values.

    autoescape None decides by the template's name (see the module docstring).
    """
    directory = directory or paths.data_dir()
    env = _environments.get((directory, autoescape))
    if env is None:
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(str(directory)),
            undefined=jinja2.StrictUndefined,
            keep_trailing_newline=True,
            trim_blocks=True,
            lstrip_blocks=True,
            autoescape=_autoescape if autoescape is None else autoescape,
            finalize=None if autoescape else _single_line,
        )
        env.filters["shell_quote"] = shell_quote
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
