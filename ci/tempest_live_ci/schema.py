"""YAML data → frozen dataclasses, every value checked: the schema of the job files
(job.py) and of the site's config.yaml (siteconfig.py).

A section is a dataclass; its YAML keys are its field names with dashes or
underscores. A value is checked against the field's annotation (str, int,
bool, X | None, tuple[X, ...], dict[str, str] of tempest.conf's section.key
names), then against the key's own check; an unknown key, a wrong type or a
bad value is a UsageError naming the dotted key.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tempest_live_ci.errors import UsageError, shown

# A key's check beyond its type: (predicate, what the value must be).

# Where a job's strings end up (tempest.conf, argv, apt and shell files in
# the guest, the reports), a control character would be syntax: a CR or a
# LF adds a line, a NUL cuts an argument. Only the guest's shell commands
# are scripts, where LF and TAB are shell syntax like any other.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_SCRIPT_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")
# A tempest.conf value that is a negative number is no option to argparse.
_NEGATIVE = re.compile(r"-[0-9]+(\.[0-9]+)?")
# section.key, each starting with a letter, a digit or _: never an option.
_CONF_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*\.[A-Za-z0-9_][A-Za-z0-9_-]*")


def check_text(where: str, value: str, *, script: bool = False) -> str:
    """A string of a job or of the site's config.yaml: no control character (script: but
    LF and TAB), no NUL."""
    bad = (_SCRIPT_CONTROL if script else _CONTROL).search(value)
    if bad is not None:
        raise UsageError(f"{where}: {shown(value)} holds the control character "
                         f"{bad.group()!r}")
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def key_text(key: Any) -> str:
    """A key as an error names it: as it is when it looks like one, else quoted and cut."""
    if isinstance(key, str) and re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", key):
        return key
    return shown(key)


def coerce(where: str, tp: Any, value: Any, *, script: bool = False) -> Any:
    """Check `value` against the annotation `tp`; return it in the field's type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(tp)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return coerce(where, inner, value, script=script)
    if origin is tuple:
        (inner, _) = typing.get_args(tp)
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise UsageError(f"{where}: expected a list, got {shown(value)}")
        return tuple(coerce(f"{where}[{i}]", inner, v, script=script)
                     for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise UsageError(f"{where}: expected a mapping of section.key: value, "
                             f"got {shown(value)}")
        result = {}
        for key, item in value.items():
            if not isinstance(key, str) or not _CONF_KEY.fullmatch(key):
                raise UsageError(f"{where}: {shown(key)} is not a section.key name")
            if isinstance(item, bool):
                item = "true" if item else "false"
            if not isinstance(item, (str, int, float)) or _CONTROL.search(str(item)):
                raise UsageError(f"{where}.{key}: expected one line of text, got {shown(item)}")
            text = str(item)
            if text.startswith("-") and not _NEGATIVE.fullmatch(text):
                raise UsageError(f"{where}.{key}: {shown(text)} starts with '-' (it would be "
                                 "read as an option of discover-tempest-config)")
            result[key] = text
        return result
    if tp is bool:
        if not isinstance(value, bool):
            raise UsageError(f"{where}: expected true or false, got {shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise UsageError(f"{where}: expected an integer, got {shown(value)}")
        return value
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise UsageError(f"{where}: expected a string, got {shown(value)}")
        return check_text(where, value, script=script)
    raise TypeError(f"unsupported field type {_type_name(tp)}")


def section(prefix: str, cls: type[Any], data: Any) -> Any:
    """One section of a job (or of the site's config.yaml) as its dataclass, every value
    checked by its declaration (setting(): its rule, whether it is a shell script)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{prefix}: expected a mapping, got {shown(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: setting_of(f) for f in dataclasses.fields(cls)}
    values = {}
    spelled: dict[str, str] = {}
    for raw_key, value in data.items():
        key = str(raw_key).replace("-", "_")
        if key not in fields:
            raise UsageError(f"{prefix}.{key_text(raw_key)}: unknown key (known: "
                             f"{', '.join(sorted(f.replace('_', '-') for f in fields))})")
        where = f"{prefix}.{raw_key}"
        # ssh-timeout and ssh_timeout are one key: given twice, one would be lost.
        if key in spelled:
            raise UsageError(f"{where}: the same key as {prefix}.{spelled[key]}, given twice")
        spelled[key] = str(raw_key)
        declared = fields[key]
        values[key] = coerce(where, hints[key], value, script=declared.script)
        rule = declared.rule
        if rule is not None and values[key] is not None and not rule.ok(values[key]):
            raise UsageError(f"{where}: {shown(values[key])} is not {rule.must_be}")
    return cls(**values)


@dataclass(frozen=True)
class Rule:
    """What a value must be beyond its type: a predicate and its words for the error."""

    ok: Callable[[Any], bool]
    must_be: str


def one_of(values: Sequence[str]) -> Rule:
    """'a, b or c'."""
    text = f"{', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else values[0]
    return Rule(lambda v: bool(v in values), text)


def between(low: int, high: int) -> Rule:
    return Rule(lambda v: bool(low <= v <= high), f"between {low} and {high}")


POSITIVE = Rule(lambda v: bool(v > 0), "positive")


@dataclass(frozen=True)
class Setting:
    """Everything about one job key besides its type and default, in one place.

    rule: the check beyond the type. path: the value names a file beside the
    job file (relative paths are resolved against the job file's directory)
    unless this predicate says it is something else (a URL, "latest").
    site: the site's config.yaml gives the default for jobs that say nothing.
    script: a shell script for the guest (LF and TAB allowed). option: the
    `run` option that adds to it (a list) or replaces it, with its help and
    metavar. plan: how the run's plan shows the value (a format of {}, or for
    a flag the words when set).
    """

    rule: Rule | None = None
    path: Callable[[str], bool] | None = None
    site: bool = False
    script: bool = False
    option: str | None = None
    help: str = ""
    metavar: str | None = None
    plan: str | Callable[[Any], str] | None = None


def setting(default: Any = None, *, factory: Callable[[], Any] | None = None,
            rule: Rule | None = None, path: Callable[[str], bool] | None = None,
            site: bool = False, script: bool = False, option: str | None = None,
            help: str = "", metavar: str | None = None,
            plan: str | Callable[[Any], str] | None = None) -> Any:
    """A job key: its default and its Setting (read back by setting_of)."""
    meta = {"setting": Setting(rule=rule, path=path, site=site, script=script, option=option,
                               help=help, metavar=metavar, plan=plan)}
    if factory is not None:
        return field(default_factory=factory, metadata=meta)
    return field(default=default, metadata=meta)


def setting_of(f: dataclasses.Field[Any]) -> Setting:
    found = f.metadata.get("setting")
    return found if isinstance(found, Setting) else Setting()
