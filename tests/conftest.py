"""Shared fixtures: the CLI as a subprocess, isolated state directories, leak checks."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TOP / "ci"))

# No test reads the host's /etc/tempest-live-ci (its jobs, its defaults): those
# that test it make their own (dirs.config).
os.environ["TEMPEST_LIVE_CI_CONFIG_DIR"] = str(TOP / "tests" / "no-site-config")

# The session fixture live_image: the default image, built once and cached (tests/fixtures_image.py).
pytest_plugins = ["tests.fixtures_image"]


@dataclass
class Dirs:
    top: Path
    state: Path
    cache: Path
    results: Path
    config: Path  # the site's configuration (/etc/tempest-live-ci): absent unless a test writes it

    def env(self) -> dict[str, str]:
        return {
            "TEMPEST_LIVE_CI_STATE_DIR": str(self.state),
            "TEMPEST_LIVE_CI_CACHE_DIR": str(self.cache),
            "TEMPEST_LIVE_CI_RESULTS_DIR": str(self.results),
            "TEMPEST_LIVE_CI_CONFIG_DIR": str(self.config),
        }


@pytest.fixture
def dirs(monkeypatch: pytest.MonkeyPatch) -> Iterator[Dirs]:
    """State, cache and results directories of the test's own, also for in-process code.

    Not under pytest's tmp_path: that is private to root (0700), and dnsmasq
    serves TFTP as an unprivileged user.
    """
    top = Path(tempfile.mkdtemp(prefix="tlc-test-", dir="/var/tmp"))
    top.chmod(0o755)
    d = Dirs(top, top / "state", top / "cache", top / "results", top / "config")
    for key, value in d.env().items():
        monkeypatch.setenv(key, value)
    yield d
    shutil.rmtree(top, ignore_errors=True)


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


def pytest_configure(config: pytest.Config) -> None:
    """Children get SIGINT's default action, however the test run was started.

    A shell without job control starts a background command (`.ci/run &`,
    nohup under a CI runner) with SIGINT ignored, and an ignored signal stays
    ignored across exec: the runs that tests interrupt with SIGINT would never
    see it. A handler of our own is reset to the default in every child.
    """
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def _netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _processes_using(marker: str) -> set[int]:
    """Processes whose command line names `marker` (the test's own directories)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if marker in cmdline:
                found.add(int(entry.name))
    return found


@pytest.fixture
def no_leaks(dirs: Dirs) -> Iterator[None]:
    """Assert the test left no network namespace, link or process behind.

    Processes count when their command line names the test's directories:
    every daemon the harness starts carries its state path, and other work on
    the machine is not this test's business.
    """
    before_ns, before_links = _netns(), _links()
    yield
    leaked_ns = _netns() - before_ns
    leaked_links = _links() - before_links
    leaked = _processes_using(str(dirs.top))
    assert not leaked_ns, f"network namespaces left behind: {sorted(leaked_ns)}"
    assert not leaked_links, f"links left behind: {sorted(leaked_links)}"
    assert not leaked, f"processes left behind: {sorted(leaked)}"


def is_root() -> bool:
    return os.geteuid() == 0


# The `root` marker: `-m "not root"` selects what a developer without root (and
# dh_auto_test) runs; a root test run without root is skipped.
needs_root = pytest.mark.root


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("root") is not None and not is_root():
        pytest.skip("needs root")
