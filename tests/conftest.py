"""Shared fixtures: the CLI as a subprocess, isolated state directories, leak checks."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "ci"))


@dataclass
class Dirs:
    state: Path
    cache: Path
    results: Path

    def env(self) -> dict[str, str]:
        return {
            "TEMPEST_LIVE_CI_STATE_DIR": str(self.state),
            "TEMPEST_LIVE_CI_CACHE_DIR": str(self.cache),
            "TEMPEST_LIVE_CI_RESULTS_DIR": str(self.results),
        }


@pytest.fixture
def dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Dirs:
    """State, cache and results directories of the test's own, also for in-process code."""
    d = Dirs(tmp_path / "state", tmp_path / "cache", tmp_path / "results")
    for key, value in d.env().items():
        monkeypatch.setenv(key, value)
    return d


@pytest.fixture
def tlc(dirs: Dirs):  # type: ignore[no-untyped-def]
    """Run the tempest-live-ci CLI from this checkout: tlc("host", "status") → CompletedProcess."""

    def call(*args: str, check: bool = False, timeout: float = 600,
             env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, str(TOP / "bin" / "tempest-live-ci"), *args],
            capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **dirs.env(), **(env or {})},
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"tempest-live-ci {' '.join(args)} exited {result.returncode}:\n{result.stderr}"
            )
        return result

    return call


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _descendants() -> set[int]:
    """Processes whose ancestry leads back to this test process."""
    me = os.getpid()
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found = set()
    for pid in parents:
        p = pid
        while p > 1 and p in parents:
            p = parents[p]
            if p == me:
                found.add(pid)
                break
    return found


def _daemons(names: tuple[str, ...]) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                comm = (entry / "comm").read_text().strip()
            except OSError:
                continue
            if comm.startswith(names):
                found.add(int(entry.name))
    return found


DAEMONS = ("dnsmasq", "qemu-system", "libvirtd", "virtlogd", "socat", "apt-cacher-ng", "python3")


@pytest.fixture
def no_leaks() -> Iterator[None]:
    """Assert the test left no network namespace, link or daemon process behind."""
    before_ns, before_links = _netns(), _links()
    before_daemons = _daemons(DAEMONS[:-1])
    yield
    leaked_ns = _netns() - before_ns
    leaked_links = _links() - before_links
    leaked_daemons = _daemons(DAEMONS[:-1]) - before_daemons
    assert not leaked_ns, f"network namespaces left behind: {sorted(leaked_ns)}"
    assert not leaked_links, f"links left behind: {sorted(leaked_links)}"
    assert not leaked_daemons, f"processes left behind: {sorted(leaked_daemons)}"


def is_root() -> bool:
    return os.geteuid() == 0


needs_root = pytest.mark.skipif(not is_root(), reason="needs root")
