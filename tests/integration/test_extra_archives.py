"""Extra archives through the apt proxy, for real and without the Internet.

A network namespace of the test's own holds everything: the testbed's HTTP
server (testbed/http.py) serving two repositories made by apt-ftparchive,
apt-cacher-ng started by testbed/aptproxy.py (from a process running in the
namespace, so the daemon is there too and has no route anywhere), and apt on
a private root. The job names one repository: apt reaches it through its
prefix on the proxy; the other repository on the same server, the named one
by its own URL, a path climbing out of the prefix, Debian's archive and a
CONNECT tunnel are refused, and the server's log shows nothing but the
named repository was ever asked for.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.archives import ExtraArchive, extra_archives, parse_source, through_proxy
from tempest_live_ci.deploy.apt import apt_conf
from tempest_live_ci.image.archive import apt_config
from tempest_live_ci.testbed import aptproxy, http, netns
from tempest_live_ci.testbed.journal import Journal
from tests.conftest import TOP, Dirs, needs_root
from tests.debs import build_deb
from tests.integration.test_aptproxy import socat_pids

pytestmark = [needs_root, pytest.mark.root]

ADDRESS = "192.168.251.1"
NAMED = f"http://{ADDRESS}/ci/job-1/repo/"
OTHER = f"http://{ADDRESS}/ci/job-2/repo/"


@dataclass(frozen=True)
class Served:
    netns: str
    www: Path
    http_log: Path


def flat_repository(directory: Path, package: str, version: str) -> None:
    directory.mkdir(parents=True)
    build_deb(directory, package, version)
    (directory / "Packages").write_text(proc.run(["apt-ftparchive", "packages", "."],
                                                 cwd=directory, capture=True).stdout)
    (directory / "Release").write_text(proc.run(
        ["apt-ftparchive", "-o", "APT::FTPArchive::Release::Origin=ci", "release", "."],
        cwd=directory, capture=True).stdout)


@pytest.fixture
def served(dirs: Dirs, no_leaks: None) -> Iterator[Served]:
    """A namespace with loopback only, the testbed's HTTP server on ADDRESS:80 in it."""
    state = dirs.state / "extra-test"
    state.mkdir(parents=True)
    journal = Journal(state)
    name = "tlct-xarch-" + proc.run(["od", "-An", "-N3", "-tx1", "/dev/urandom"],
                                    capture=True).stdout.replace(" ", "").strip()
    try:
        netns.create_netns(journal, name)
        proc.run(["ip", "-n", name, "link", "set", "lo", "up"])
        proc.run(["ip", "-n", name, "addr", "add", f"{ADDRESS}/32", "dev", "lo"])
        www = dirs.top / "www"
        flat_repository(www / "ci/job-1/repo", "named-tool", "1.0-1")
        flat_repository(www / "ci/job-2/repo", "other-tool", "2.0-1")
        http.start_http_server(journal, name, ADDRESS, 80, www, state)
        yield Served(name, www, state / "http.log")
    finally:
        journal.undo_all()


HOLDER = """
import sys
sys.path.insert(0, sys.argv[1])
from tempest_live_ci.archives import ExtraArchive
from tempest_live_ci.testbed import aptproxy
extra = [ExtraArchive(url) for url in sys.argv[2:]]
with aptproxy.start_apt_cacher_ng(extra) as proxy:
    directory = aptproxy.extra_dir(extra) if extra else aptproxy.proxy_state_dir()
    print(proxy.url, aptproxy.daemon_pid(directory), directory, flush=True)
    sys.stdin.readline()
"""


@dataclass
class Holder:
    """A process in the namespace using the proxy (a run), until told to leave."""

    process: subprocess.Popen[str]
    url: str
    daemon: int
    directory: Path

    def leave(self) -> None:
        self.process.communicate("\n", timeout=60)
        assert self.process.returncode == 0


@pytest.fixture
def hold(served: Served, dirs: Dirs) -> Iterator[object]:
    holders: list[subprocess.Popen[str]] = []

    def start(*backends: str) -> Holder:
        process = subprocess.Popen(
            ["ip", "netns", "exec", served.netns, "env", *(f"{k}={v}" for k, v
                                                           in dirs.env().items()),
             sys.executable, "-c", HOLDER, str(TOP / "ci"), *backends],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        holders.append(process)
        assert process.stdout is not None
        url, daemon, directory = process.stdout.readline().split()
        return Holder(process, url, int(daemon), Path(directory))

    yield start
    for process in holders:
        if process.poll() is None:
            process.communicate("\n", timeout=60)


def private_apt(root: Path, proxy: str, sources: str) -> dict[str, str]:
    """apt on a directory of its own, configured like the guest: every URL through the
    proxy, the proxy's own host direct (deploy/apt.py)."""
    for sub in ("state/lists/partial", "cache/archives/partial", "etc/apt.conf.d",
                "etc/sources.list.d", "etc/preferences.d", "log", "download"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "state/status").touch()
    (root / "apt.conf").write_text(apt_config(root, proxy))
    (root / "etc/apt.conf.d/90tempest-live-ci").write_text(apt_conf(proxy, ["127.0.0.1"]))
    (root / "etc/sources.list").write_text(sources)
    return {"APT_CONFIG": str(root / "apt.conf"), "LC_ALL": "C.UTF-8"}


def apt(served: Served, env: dict[str, str], *argv: str,
        cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return proc.run(argv, netns=served.netns, env=env, capture=True, check=False, timeout=120,
                    cwd=cwd)


def status(served: Served, *args: str) -> str:
    """The HTTP status curl gets in the namespace ("000" when there is no answer at all)."""
    return subprocess.run(["ip", "netns", "exec", served.netns, "curl", "-s", "--max-time",
                           "10", "-o", "/dev/null", "-w", "%{http_code}", *args],
                          capture_output=True, text=True).stdout


def test_the_named_repository_is_reachable_and_nothing_else(served: Served, hold: object,
                                                            tmp_path: Path) -> None:
    named = parse_source(f"deb [trusted=yes] {NAMED} ./", "guest.candidate_sources[0]",
                         apt_proxy=True)
    other = parse_source(f"deb [trusted=yes] {OTHER} ./", "x", apt_proxy=True)
    extra = extra_archives([named])
    assert extra == (ExtraArchive(NAMED),)
    holder = hold(NAMED)  # type: ignore[operator]
    assert isinstance(holder, Holder)
    prefix = extra[0].name
    line = through_proxy(named, holder.url)
    assert line == f"deb [trusted=yes] {holder.url}/{prefix}/ ./"

    # apt-get update and download through the proxy: the named repository's package.
    env = private_apt(tmp_path / "apt", holder.url, line + "\n")
    update = apt(served, env, "apt-get", "update")
    assert update.returncode == 0 and "Err:" not in update.stdout, update.stdout + update.stderr
    download = apt(served, env, "apt-get", "download", "named-tool", cwd=tmp_path / "apt/download")
    assert download.returncode == 0, download.stdout + download.stderr
    deb = tmp_path / "apt/download/named-tool_1.0-1_all.deb"
    assert proc.run(["dpkg-deb", "-f", deb, "Package", "Version"], capture=True).stdout == \
        "Package: named-tool\nVersion: 1.0-1\n"

    # The other repository on the same server, named as it is: refused by the proxy.
    refused = private_apt(tmp_path / "refused", holder.url, other.text() + "\n")
    update = apt(served, refused, "apt-get", "update")
    assert "403" in update.stdout + update.stderr, update.stdout + update.stderr
    assert apt(served, refused, "apt-cache", "show", "other-tool").returncode != 0

    via = ["-x", holder.url]
    assert status(served, f"{holder.url}/{prefix}/Release") == "200"
    # Only the prefix: the named URL itself, the other one, a path climbing out of
    # the prefix, Debian's archive, a CONNECT tunnel (the default would let
    # bugs.debian.org:443 through).
    assert status(served, *via, f"{NAMED}Release") == "403"
    assert status(served, *via, f"{OTHER}Release") == "403"
    assert status(served, "--path-as-is",
                  f"{holder.url}/{prefix}/../../job-2/repo/Release") == "403"
    assert status(served, "--path-as-is",
                  f"{holder.url}/{prefix}/%2e%2e/%2e%2e/job-2/repo/Release") == "403"
    assert status(served, f"{holder.url}/ci/job-2/repo/Release") == "403"
    assert status(served, *via, "http://deb.debian.org/debian/dists/sid/Release") == "403"
    connect = subprocess.run(["ip", "netns", "exec", served.netns, "curl", "-sS", "-p",
                              *via, "--max-time", "10", "https://bugs.debian.org/"],
                             capture_output=True, text=True)
    assert "CONNECT tunnel failed, response 403" in connect.stderr
    # What reached the server: the named repository, nothing else.
    asked = [line.split('"')[1].split()[1] for line in served.http_log.read_text().splitlines()
             if '"GET ' in line]
    assert asked and all(path.startswith("/ci/job-1/repo/") for path in asked), asked
    assert "/ci/job-1/repo/./named-tool_1.0-1_all.deb" in asked

    holder.leave()
    assert not proc.pid_alive(holder.daemon)
    assert not holder.directory.exists()


def test_runs_with_extra_archives_do_not_disturb_each_other(served: Served, hold: object,
                                                           dirs: Dirs) -> None:
    start = hold  # type: ignore[assignment]
    debian = start()  # a run without extra archives: the daemon of Debian's archive
    first = start(NAMED)
    same = start(NAMED)
    other = start(OTHER, NAMED)
    assert debian.daemon not in (first.daemon, other.daemon)
    # The same set: one daemon, two users; another set: a daemon of its own.
    assert same.daemon == first.daemon and same.directory == first.directory
    assert other.daemon != first.daemon and other.directory != first.directory
    assert len(aptproxy.users(first.directory)) == 2
    conf = (other.directory / "conf/acng.conf").read_text()
    remaps = sorted(line for line in conf.splitlines() if line.startswith("Remap-"))
    assert remaps == sorted(f"Remap-{a.name}: /{a.name} ; {a.backend}"
                            for a in (ExtraArchive(NAMED), ExtraArchive(OTHER)))
    assert "Remap-debrep" not in conf and "ForceManaged: 1" in conf
    assert f"CacheDir: {other.directory / 'cache'}" in conf
    first.leave()
    assert proc.pid_alive(same.daemon)  # still used
    assert status(served, f"{same.url}/{ExtraArchive(NAMED).name}/Release") == "200"
    same.leave()
    assert not proc.pid_alive(first.daemon) and not first.directory.exists()
    other.leave()
    assert not proc.pid_alive(other.daemon) and not other.directory.exists()
    # Debian's daemon was never restarted, and its cache is not theirs.
    assert proc.pid_alive(debian.daemon)
    assert aptproxy.daemon_pid(aptproxy.proxy_state_dir()) == debian.daemon
    assert len(aptproxy.users(aptproxy.proxy_state_dir())) == 1
    debian.leave()
    assert not proc.pid_alive(debian.daemon)


def test_cleanup_stops_what_a_killed_run_left(served: Served, hold: object, tlc: object) -> None:
    holder = hold(NAMED)  # type: ignore[operator]
    assert isinstance(holder, Holder)
    (socat,) = socat_pids()
    # SIGKILL: `ip netns exec` execs the holder, so this is the run itself.
    holder.process.send_signal(signal.SIGKILL)
    holder.process.wait()
    assert proc.pid_alive(holder.daemon) and holder.directory.is_dir()
    result = tlc("cleanup")  # type: ignore[operator]
    assert result.returncode == 0, result.stderr
    assert f"removed process {holder.daemon} (apt-cacher-ng)" in result.stdout
    assert f"removed process {socat} (socat)" in result.stdout
    assert not proc.pid_alive(holder.daemon)
    assert not holder.directory.exists()
