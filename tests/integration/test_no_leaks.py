"""The no_leaks fixture's view of the host: the test's own namespaces, links and processes
count, whatever else runs on the machine meanwhile."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tempest_live_ci.testbed.netns import add_marked_netns
from tests.conftest import Dirs, _links, _owned, _processes_using, needs_root

pytestmark = [needs_root]


@pytest.fixture
def namespaces() -> Iterator[list[str]]:
    made: list[str] = []
    yield made
    for name in made:
        subprocess.run(["ip", "netns", "delete", name], check=False, capture_output=True)


def test_a_namespace_counts_when_its_state_is_the_tests(dirs: Dirs, namespaces: list[str]) -> None:
    environment = f"TLC_TEST_LEAKS={secrets.token_hex(8)}"
    ours, foreign = (f"tlc-{secrets.token_hex(4)}" for _ in range(2))
    namespaces += [ours, foreign]
    add_marked_netns(ours, dirs.state / ours)
    # Another checkout's run, made meanwhile: its state is elsewhere, its owner not ours.
    add_marked_netns(foreign, Path("/var/tmp/another-checkout/state") / foreign)
    assert _owned(ours, dirs.top, environment)
    assert not _owned(foreign, dirs.top, environment)
    # A namespace the tool did not make (no mark) is nobody's leak here.
    bare = f"tlcl-{secrets.token_hex(3)}"
    namespaces.append(bare)
    subprocess.run(["ip", "netns", "add", bare], check=True)
    assert not _owned(bare, dirs.top, environment)


def test_a_namespace_counts_when_a_live_process_of_the_test_owns_it(
        dirs: Dirs, namespaces: list[str]) -> None:
    environment = f"TLC_TEST_LEAKS={secrets.token_hex(8)}"
    name = f"tlc-probe-{secrets.token_hex(3)}"
    namespaces.append(name)
    code = ("import sys, time\nfrom tempest_live_ci.testbed.netns import add_marked_netns\n"
            f"add_marked_netns({name!r}, None)\nprint('made', flush=True)\ntime.sleep(60)\n")
    key, value = environment.split("=")
    owner = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                             env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "ci"),
                                  key: value})
    try:
        assert owner.stdout is not None and owner.stdout.readline() == "made\n"
        assert _owned(name, dirs.top, environment)
        assert owner.pid in _processes_using(str(dirs.top), environment)
        assert not _owned(name, dirs.top, f"TLC_TEST_LEAKS={secrets.token_hex(8)}")
    finally:
        owner.kill()
        owner.wait()


def test_a_veth_peer_names_its_namespace(namespaces: list[str]) -> None:
    name = f"tlc-{secrets.token_hex(4)}"
    namespaces.append(name)
    subprocess.run(["ip", "netns", "add", name], check=True)
    host_end = f"tlcl{secrets.token_hex(3)}"
    subprocess.run(["ip", "link", "add", host_end, "type", "veth", "peer", "name", "inside",
                    "netns", name], check=True)
    try:
        assert f" link-netns {name} " in _links()[host_end] + " "
    finally:
        subprocess.run(["ip", "link", "delete", host_end], check=False)
