"""What the host tells the in-guest steps: one typed record, params.json.

The host builds it (guest/plan.py) and the guest reads it (util.params()),
both from this file of the same source tree, so every step reads the same
names with the same types. Standard library only, like all of deploy/.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

# tempest.discover's values besides a package's dotted name (deploy/tempest.py).
DISCOVER_AUTO, DISCOVER_ALL = "auto", "all"
PACKAGE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class TempestParams:
    """The tempest selection as the guest runs it (the profile's default filled in)."""

    regex: str | None = None
    exclude_regex: str | None = None
    smoke: bool = False
    discover: str = DISCOVER_AUTO  # where stestr looks for tests: auto, all or a package
    include_list: str | None = None  # a path in the guest
    exclude_list: str | None = None
    concurrency: int = 1
    conf: dict[str, str] = field(default_factory=dict)  # section.key: value


@dataclass(frozen=True)
class Params:
    profile: str
    suite: str  # the guest's suite (the image's, or what it is upgraded to)
    image_suite: str
    mirror: str
    guest_address: str
    admin_password: str
    # The services' own: their keystone users, their databases.
    service_password: str
    preinstalled: bool = True
    security_mirror: str | None = None
    check_valid_until: bool = True
    experimental: bool = False
    # The testbed's way to the archive: its apt proxy, or NAT (None).
    apt_proxy: str | None = None
    # The testbed's own servers (the candidates' repository, the extra
    # archives' proxy) are reached directly, not through the apt proxy.
    apt_direct: tuple[str, ...] = ()
    sources_list: str | None = None  # guest.sources_list's text, as the guest writes it
    setup_commands: tuple[str, ...] = ()
    vcpus: int = 2
    region: str = "RegionOne"
    image_url: str | None = None  # the test image glance gets, served by the testbed
    # How the host runs the guest: nova uses KVM inside it only when it is kvm.
    host_accelerator: str = "tcg"
    tempest: TempestParams = field(default_factory=TempestParams)

    def as_dict(self) -> dict[str, Any]:
        """params.json's content."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> Params:
        """params.json read back, each value of its declared type (ValueError if not)."""
        params: Params = _record(cls, data, "params")
        return params


def _record(cls: Any, data: Any, where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    unknown = sorted(map(str, set(data) - {f.name for f in fields}))
    missing = [f.name for f in fields if f.name not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if unknown or missing:
        raise ValueError(f"{where}: " + "; ".join(
            [f"unknown keys {', '.join(unknown)}"] * bool(unknown)
            + [f"missing keys {', '.join(missing)}"] * bool(missing)))
    return cls(**{key: _value(hints[key], value, f"{where}.{key}") for key, value in data.items()})


def _value(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None:
            return None
        (inner,) = [t for t in typing.get_args(tp) if t is not type(None)]
        return _value(inner, value, where)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ValueError(f"{where}: expected a list, got {type(value).__name__}")
        return tuple(_value(str, item, f"{where}[{i}]") for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            raise ValueError(f"{where}: expected a mapping of strings")
        return dict(value)
    if dataclasses.is_dataclass(tp):
        return _record(tp, value, where)
    # bool is an int to isinstance: a count must not be true, a flag not 1.
    if (tp is int and (isinstance(value, bool) or not isinstance(value, int))) \
            or not isinstance(value, tp):
        raise ValueError(f"{where}: expected {tp.__name__}, got {type(value).__name__}")
    return value
