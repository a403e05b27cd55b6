"""The registry: records written before the resource, undone once their owner is gone.

Owners are real processes: children that record something and are SIGKILLed,
or still run; a record whose owner's pid was reused (another start time) is
a dead owner's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tempest_live_ci import proc, registry
from tempest_live_ci.testbed.http import Served
from tests.conftest import TOP, Dirs

# A child that records `path` as its own Served, says so, and waits to be killed.
CHILD = textwrap.dedent("""
    import sys
    from tempest_live_ci import registry
    from tempest_live_ci.testbed.http import Served
    registry.add(Served(name=sys.argv[2], path=sys.argv[1], what="test file"))
    if len(sys.argv) > 3:
        registry.join(Served(name="shared", path=sys.argv[3], what="shared file"), "thing")
        registry.join(Served(name="shared", path=sys.argv[3], what="shared file"), "thing")
    print("recorded", flush=True)
    sys.stdin.read()
""")


@pytest.fixture
def children(dirs: Dirs) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for child in started:
        child.kill()
        child.wait()


def record_in_child(children: list[subprocess.Popen[str]], path: Path, run_id: str,
                    shared: Path | None = None) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), run_id, *([str(shared)] if shared else [])],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(TOP / "ci")})
    children.append(child)
    assert child.stdout is not None and child.stdout.readline() == "recorded\n"
    return child


def killed(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()


def test_what_a_killed_owner_recorded_is_undone_newest_first_and_only_once(
        dirs: Dirs, tmp_path: Path, children: list[subprocess.Popen[str]]) -> None:
    first, second, living = tmp_path / "first", tmp_path / "second", tmp_path / "living"
    for path in (first, second, living):
        path.mkdir()
        (path / "file").write_text("x")
    old = record_in_child(children, first, "tlc-00000001")
    new = record_in_child(children, second, "tlc-00000002")
    record_in_child(children, living, "tlc-00000003")
    assert registry.leftovers() == []  # every owner alive
    killed(old)
    killed(new)
    found = registry.leftovers()
    assert [e.resource.name for e in found] == ["tlc-00000002", "tlc-00000001"]
    assert registry.undo_leftover(found[0]) == [f"test file {second}"]
    assert not second.exists() and first.exists()
    # A second cleanup, or two at once: the record is gone, nothing is undone twice.
    assert registry.undo_leftover(found[0]) == []
    assert [e.resource.name for e in registry.leftovers()] == ["tlc-00000001"]
    assert registry.undo_leftover(found[1]) == [f"test file {first}"]
    assert not first.exists()
    assert living.is_dir() and registry.leftovers() == []
    assert [e.resource.name for e in registry.entries()] == ["tlc-00000003"]


def test_a_reused_pid_is_not_the_owner(dirs: Dirs, tmp_path: Path) -> None:
    entry = registry.add(Served(name="tlc-0000000a", path=str(tmp_path / "x"), what="file"))
    assert registry.leftovers() == []
    # The same pid with another start time: the process that recorded it is gone.
    data = json.loads(entry.path.read_text())
    pid, start = proc.identity().split()
    data["owners"] = [f"{pid} {int(start) - 1}"]
    entry.path.write_text(json.dumps(data))
    assert [e.path for e in registry.leftovers()] == [entry.path]


def test_kept_records_stay_unless_asked(dirs: Dirs, tmp_path: Path,
                                        children: list[subprocess.Popen[str]]) -> None:
    path = tmp_path / "kept"
    path.write_text("x")
    child = record_in_child(children, path, "tlc-0000000b")
    (entry,) = registry.entries()
    registry.keep(entry)
    killed(child)
    assert registry.leftovers() == []
    (found,) = registry.leftovers(include_kept=True)
    assert registry.undo_leftover(found) == []  # not without include_kept
    assert path.exists()
    assert registry.undo_leftover(found, include_kept=True) == [f"test file {path}"]
    assert not path.exists()


def test_holding_undoes_at_the_end_of_the_block_whichever_way(dirs: Dirs, tmp_path: Path) -> None:
    path = tmp_path / "held"
    with pytest.raises(RuntimeError), \
            registry.holding(Served(name="tlc-0000000c", path=str(path), what="file")):
        (entry,) = registry.entries()
        assert entry.resource == Served(name="tlc-0000000c", path=str(path), what="file")
        path.mkdir()
        raise RuntimeError
    assert not path.exists() and registry.entries() == []


def test_a_shared_resource_goes_with_its_last_user(
        dirs: Dirs, tmp_path: Path, children: list[subprocess.Popen[str]]) -> None:
    shared = tmp_path / "shared"
    shared.write_text("x")
    resource = Served(name="shared", path=str(shared), what="shared file")
    first = record_in_child(children, tmp_path / "a", "tlc-0000000d", shared)
    first_use = registry.join(resource, "thing")
    second_use = registry.join(resource, "thing")
    entry = registry.shared("thing")
    assert entry is not None and len(entry.owners) == 4  # the child's two uses, and these
    assert entry.owners[2:] == [first_use, second_use]
    killed(first)
    # This process still uses it: cleanup leaves it; it goes with the last use here.
    assert all(e.resource.name != "shared" for e in registry.leftovers())
    assert registry.leave("thing", first_use) is False
    assert shared.exists()
    # Handed over to a kept thing (a path): it lives as long as that path.
    keeper = tmp_path / "keeper"
    keeper.write_text("")
    assert registry.leave("thing", second_use, successor=str(keeper)) is False
    assert shared.exists() and all(e.resource.name != "shared" for e in registry.leftovers())
    keeper.unlink()
    assert [e.resource.name for e in registry.leftovers()] == ["shared", "tlc-0000000d"]
    assert registry.leave("thing", str(keeper)) is True
    assert not shared.exists()
    assert registry.leave("thing", second_use) is False
    # The child's own record is still a leftover; the shared one is gone.
    assert [e.resource.name for e in registry.leftovers()] == ["tlc-0000000d"]


def test_a_record_of_an_unknown_kind_or_too_large_is_left_alone(dirs: Dirs) -> None:
    registry.directory().mkdir(parents=True)
    (registry.directory() / "odd.json").write_text(json.dumps(
        {"kind": "no-such-kind", "module": "os", "owners": [], "kept": False, "created": 0,
         "fields": {}}))
    (registry.directory() / "large.json").write_text(" " * (registry.RECORD_LIMIT + 1))
    assert registry.entries() == [] and registry.leftovers() == []
    assert {p.name for p in registry.directory().glob("*.json")} == {"odd.json", "large.json"}
