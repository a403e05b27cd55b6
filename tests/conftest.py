"""Shared fixtures: the CLI as a subprocess, isolated state directories, leak checks."""

from __future__ import annotations

import os
import secrets
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


def _links() -> dict[str, str]:
    """The host's links: name → its `ip -o link` line (where a veth's peer is: link-netns)."""
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":")[1].strip().split("@")[0]: line for line in out.splitlines()}


def _processes_using(marker: str, environment: str | None = None) -> set[int]:
    """Processes whose command line names `marker` (the test's own directories), or whose
    environment holds `environment` (what the test started, and their children)."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and int(entry.name) != os.getpid():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if marker in cmdline or (environment is not None and environment.encode() in environ):
                found.add(int(entry.name))
    return found


def _owned(name: str, top: Path, environment: str) -> bool:
    """Whether namespace `name` is the test's: marked by the tool (testbed/netns.py) with
    a state directory under the test's, or owned by a live process of the test's."""
    from tempest_live_ci.testbed.netns import read_mark

    mark = read_mark(name)
    if mark is None:
        return False  # not made by the tool (or gone meanwhile)
    if mark.state_dir is not None and mark.state_dir.is_relative_to(top):
        return True
    pid = mark.owner.split()[0]
    try:
        return environment.encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return False


@pytest.fixture
def no_leaks(dirs: Dirs, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Assert the test left none of its own network namespaces, links or processes behind.

    Other work on the machine (a run from another checkout, another test
    session) makes and removes namespaces, links and processes meanwhile: only
    what this test's runs can make counts. A namespace is the test's when the
    tool marked it with a state directory under the test's directories, or
    its owner is a live process of the test's; a host link when it is a
    persistent testbed's (TestbedConfig's names) or the veth peer of one of
    the test's namespaces; a process when its command line names the test's
    directories (every daemon the harness starts carries its state path) or
    its environment holds the marker this fixture gives every child.
    """
    from tempest_live_ci.testbed.config import TestbedConfig

    environment = f"TLC_TEST_LEAKS={secrets.token_hex(8)}"
    monkeypatch.setenv(*environment.split("="))
    before_ns, before_links = _netns(), set(_links())
    yield
    leaked_ns = {n for n in _netns() - before_ns if _owned(n, dirs.top, environment)}
    testbed = {TestbedConfig.bridge, TestbedConfig.tap, TestbedConfig.nic, TestbedConfig.nic + "p"}
    links = _links()
    leaked_links = {name for name in set(links) - before_links
                    if name in testbed or any(f" link-netns {n} " in f"{links[name]} "
                                              for n in leaked_ns)}
    leaked = _processes_using(str(dirs.top), environment)
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
