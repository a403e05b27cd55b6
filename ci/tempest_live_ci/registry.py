"""One record per resource a run makes, written before the resource exists.

A resource is a class of the module that makes it, registered under a kind
(`@registry.kind("served")`), whose fields are what its undo() needs. Its
record, a small JSON file in <state dir>/registry/, holds the kind, the fields,
the owners and the kept flag: a kill at any moment leaves at most a record of
something never made (undo skips what is not there), never the reverse.

An owner is a process (pid and start time: a reused pid is not the owner) or
the path of a kept thing a use was handed over to (a kept testbed's journal);
`owner_alive` is the one liveness check of every kind. A shared resource (a
daemon many runs use) is one record with an owner per use, undone when its
last use ends, or by `cleanup` once no owner lives. Nothing here knows what a
resource is.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import functools
import importlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, TypeVar

from tempest_live_ci import paths, proc
from tempest_live_ci.errors import TestbedError, TLCError
from tempest_live_ci.inputs import read_regular
from tempest_live_ci.log import log

# A record is a few hundred bytes: anything larger is not one of ours.
RECORD_LIMIT = 64 * 1024


@dataclass(kw_only=True)
class Resource:
    """Something a run made; subclasses add the fields their undo() needs."""

    KIND: ClassVar[str] = ""
    name: str  # what cleanup's lines start with: the run id, or the path of what it is

    def undo(self) -> list[str] | None:
        """Remove it if it is (still) there, under the lock, maybe twice; raise if that
        fails. Returns what it removed when that says more than describe()."""
        raise NotImplementedError

    def describe(self) -> str:  # what it is, for "removed ..." lines
        return self.KIND

    def why(self) -> str:  # why cleanup removes it: its --dry-run line
        return f"{self.describe()}: its run is gone"


KINDS: dict[str, type[Resource]] = {}


def owner_alive(owner: str) -> bool:
    """The one liveness check: the process runs still (proc.identity()), or the kept
    thing a use was handed over to (a path) is still there."""
    if owner.startswith("/"):
        return os.path.lexists(owner)
    return proc.identity_alive(" ".join(owner.split()[:2]))  # a shared use adds a token


@dataclass
class Entry:
    """A record as read back: the resource, and whose it is."""

    path: Path
    resource: Resource
    owners: list[str]  # proc.identity() (and a token for each use of a shared one), or a path
    kept: bool
    created: float

    @property
    def alive(self) -> bool:
        return any(owner_alive(owner) for owner in self.owners)


def directory(state: Path | None = None) -> Path:
    """The registry of `state` (a state directory; the run's own by default)."""
    return (state or paths.state_dir()) / "registry"


_held = threading.local()


@contextlib.contextmanager
def locked(where: Path | None = None) -> Iterator[None]:
    """The lock of registry `where` (this state directory's): every change of a record,
    and every undo, holds it. Re-entrant: a second flock of this process on another
    descriptor would wait forever."""
    where = where or directory()
    held: set[Path] = _held.__dict__.setdefault("held", set())
    if where in held:
        yield
        return
    where.mkdir(parents=True, exist_ok=True)
    with open(where / ".lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        held.add(where)
        try:
            yield
        finally:
            held.discard(where)


def read(path: Path) -> Entry | None:
    """The record at `path`, or None (gone, or not one this version can undo: logged).
    A kind's module registers it when imported, and only a module of this package is."""
    try:
        data = json.loads(read_regular(path, None, limit=RECORD_LIMIT))
        module = str(data.get("module", ""))
        if data["kind"] not in KINDS and module.startswith(f"{__package__}."):
            with contextlib.suppress(ImportError):
                importlib.import_module(module)
        return Entry(path, KINDS[str(data["kind"])](**data["fields"]),
                     [str(o) for o in data["owners"]], bool(data["kept"]), float(data["created"]))
    except TLCError as e:
        if path.exists():
            log.warning("registry: %s", e.message)
    except (ValueError, KeyError, TypeError) as e:
        log.warning("registry: %s is not a record of a kind known here: %s", path, e)
    return None


def entries(where: Path | None = None) -> list[Entry]:
    """Every readable record, oldest first."""
    where = where or directory()
    found = [read(p) for p in where.glob("*.json")] if where.is_dir() else []
    return sorted((e for e in found if e is not None), key=lambda e: (e.created, e.path.name))


def leftovers(include_kept: bool = False) -> list[Entry]:
    """The records of owners that are gone, newest first (the order to undo them in)."""
    found = []
    for entry in reversed(entries()):
        if entry.alive:
            continue
        if entry.kept and not include_kept:
            log.info("kept on purpose, left alone: %s (%s)", entry.resource.name,
                     entry.resource.describe())
            continue
        found.append(entry)
    return found


@dataclass(frozen=True)
class Leftover:
    """Something cleanup removes: a record's resource, or what a sweep found."""

    name: str  # what the output lines start with: a run id, a namespace, a path
    reason: str
    remove: Callable[[], list[str]] = dataclasses.field(compare=False, repr=False)


# What no record names: made while the registry that would name it went (a test's state
# directory removed under a live run), or by an older version. A module that makes such
# things registers a sweep for them; cleanup runs them after the records.
SWEEPS: list[Callable[[], Iterator[Leftover]]] = []


def sweep(find: Callable[[], Iterator[Leftover]]) -> Callable[[], Iterator[Leftover]]:
    SWEEPS.append(find)
    return find


def find_leftovers(include_kept: bool = False) -> list[Leftover]:
    """The records of owners that are gone (newest first), then what the sweeps find."""
    found = [Leftover(e.resource.name, e.resource.why(),
                      functools.partial(undo_leftover, e, include_kept))
             for e in leftovers(include_kept)]
    for find in SWEEPS:
        found += find()
    return found


def undo_leftover(entry: Entry, include_kept: bool = False) -> list[str]:
    """Undo one of leftovers(), if it still is one; safe to call twice, and while its
    owners' runs go on elsewhere (looked at again under the lock)."""
    with locked():
        current = read(entry.path)
        if current is None or current.alive or (current.kept and not include_kept):
            return []
        try:
            removed = current.resource.undo()
        except OSError as e:
            raise TestbedError(f"cannot remove {current.resource.describe()}: {e}") from None
        current.path.unlink(missing_ok=True)
    return removed or [current.resource.describe()]


# --- for the modules that make things ---------------------------------------------------------

def _write(entry: Entry) -> None:
    data = {"kind": entry.resource.KIND, "module": type(entry.resource).__module__,
            "owners": entry.owners, "kept": entry.kept,
            "created": entry.created, "fields": dataclasses.asdict(entry.resource)}
    tmp = entry.path.with_name(f".{entry.path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, entry.path)


R = TypeVar("R", bound=type[Resource])


def kind(name: str) -> Callable[[R], R]:
    """Register a Resource class under `name`, the kind its records carry."""
    def register(cls: R) -> R:
        if KINDS.get(name, cls) is not cls:
            raise ValueError(f"registry: two kinds named {name}")
        cls.KIND = name
        KINDS[name] = cls
        return cls
    return register


def add(resource: Resource, *, kept: bool = False) -> Entry:
    """Record `resource` as this process's, before it is made."""
    name = f"{resource.KIND}-{secrets.token_hex(8)}.json"
    entry = Entry(directory() / name, resource, [proc.identity()], kept, time.time())
    update(entry)
    return entry


def update(entry: Entry) -> None:
    """Write the record back: its resource's fields learnt since (a pid), or its flag."""
    with locked(entry.path.parent):
        _write(entry)


def keep(entry: Entry, kept: bool = True) -> None:
    """Mark it kept on purpose (--keep-on-failure, `vm boot`): cleanup leaves it alone."""
    entry.kept = kept
    update(entry)


def release(entry: Entry, kept: bool, undo: Callable[[], object]) -> None:
    """At the end of its maker's block: kept on purpose, or undone (the maker's own way:
    `undo`) and forgotten."""
    if kept:
        keep(entry)
    else:
        undo()
        discard(entry)


def discard(entry: Entry) -> None:
    """Forget the record: its resource is undone (or was never made)."""
    with locked(entry.path.parent):
        entry.path.unlink(missing_ok=True)


def named(cls: type[Resource], name: str) -> list[Entry]:
    """The records of kind `cls` named `name` (a testbed's, to keep or forget it)."""
    return [e for e in entries() if isinstance(e.resource, cls) and e.resource.name == name]


def forget(cls: type[Resource], name: str) -> None:
    """Discard the records of kind `cls` named `name`: undone by a command (`vm destroy`)."""
    for entry in named(cls, name):
        discard(entry)


@contextlib.contextmanager
def holding(resource: Resource) -> Iterator[Entry]:
    """Recorded before the block makes it; undone and forgotten when the block ends,
    whichever way, unless it was kept meanwhile."""
    entry = add(resource)
    try:
        yield entry
    finally:
        current = read(entry.path)
        if current is None or not current.kept:
            resource.undo()
            discard(entry)


def shared(name: str, where: Path | None = None) -> Entry | None:
    """The record of shared resource `name` (in registry `where`), if there is one."""
    return read((where or directory()) / f"shared-{name}.json")


def join(resource: Resource, name: str, where: Path | None = None) -> str:
    """Count one more use of the shared resource `name` (in registry `where`) by this
    process; returns that use, for leave(). The caller makes the resource if it is not
    there (hold a lock of its own around both)."""
    path = (where or directory()) / f"shared-{name}.json"
    use = f"{proc.identity()} {secrets.token_hex(4)}"
    with locked(path.parent):
        current = read(path) or Entry(path, resource, [], False, time.time())
        current.owners.append(use)
        _write(current)
    return use


def leave(name: str, use: str, where: Path | None = None, *,
          successor: str | None = None) -> bool:
    """`use` (of join()) has ended, or is handed over to `successor` (a kept path); when
    nobody living uses the resource, it is undone and its record goes. True if it was."""
    path = (where or directory()) / f"shared-{name}.json"
    with locked(path.parent):
        current = read(path)
        if current is None:
            return False
        current.owners = [o for o in current.owners if o != use and owner_alive(o)]
        current.owners += [successor] if successor else []
        if current.owners or current.kept:
            _write(current)
            return False
        current.resource.undo()
        path.unlink(missing_ok=True)
        return True
