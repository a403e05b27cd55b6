"""The apt proxy against the real archive: apt-cacher-ng, socat, a network namespace of our own.

Each test has a cache directory of its own (the `dirs` fixture), hence a
daemon of its own, on 127.0.0.1:3142 or the next free port: another one
already running on the host (another run's, the host's own service) is
neither shared nor disturbed.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tempest_live_ci import proc, registry
from tempest_live_ci.errors import TestbedError
from tempest_live_ci.testbed import aptproxy
from tempest_live_ci.testbed.listen import socket_inodes
from tests.conftest import TOP, Dirs, needs_root

pytestmark = [needs_root, pytest.mark.root]

NS_ADDRESS = "192.168.251.1"
RELEASE = "http://deb.debian.org/debian/dists/bookworm/Release"


@pytest.fixture
def netns() -> Iterator[str]:
    """A namespace with nothing but loopback (and our address on it): no route anywhere."""
    name = f"tlc-acng-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        subprocess.run(["ip", "-n", name, "addr", "add", f"{NS_ADDRESS}/32", "dev", "lo"],
                       check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=True)


Tlc = Callable[..., subprocess.CompletedProcess[str]]


def curl(netns: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", netns, "curl", "-sS", "--max-time", "60", *args],
                          capture_output=True, text=True)


def daemon_pid() -> int | None:
    return proc.read_pidfile(aptproxy.proxy_state_dir() / "apt-cacher-ng.pid")


def socat_pids() -> list[int | None]:
    """The pids of the apt proxy's socats the registry records (this state directory's)."""
    return [e.resource.pid for e in registry.entries()
            if isinstance(e.resource, aptproxy.ProxySocat)]


def test_guest_namespace_reaches_only_the_archive(dirs: Dirs, netns: str,
                                                  no_leaks: None) -> None:
    with aptproxy.start_apt_cacher_ng() as proxy:
        port = aptproxy.daemon_port(aptproxy.proxy_state_dir())
        assert proxy.url == f"http://127.0.0.1:{port}"
        assert proxy.socket.is_socket()
        with aptproxy.forward_into_netns(proxy, netns, NS_ADDRESS):
            via_proxy = f"http://{NS_ADDRESS}:3142"
            release = curl(netns, "-f", "-x", via_proxy, RELEASE)
            assert release.returncode == 0, release.stderr
            assert "Origin: Debian" in release.stdout
            assert "Codename: bookworm" in release.stdout
            # The mirror path live-build uses.
            mirror = curl(netns, "-f", f"{via_proxy}/debian/dists/bookworm/Release")
            assert mirror.returncode == 0, mirror.stderr
            assert mirror.stdout == release.stdout
            security = curl(netns, "-f", "-x", via_proxy,
                            "http://deb.debian.org/debian-security/dists/bookworm-security/Release")
            assert "Label: Debian-Security" in security.stdout, security.stderr
            # Backports and experimental are suites of the same archive: the same Remap.
            for suite, label in (("bookworm-backports", "Debian Backports"),
                                 ("experimental", "Debian")):
                release = curl(netns, "-f", "-x", via_proxy,
                               f"http://deb.debian.org/debian/dists/{suite}/Release")
                assert f"\nLabel: {label}\n" in release.stdout, release.stderr
                assert f"\nSuite: {suite}\n" in release.stdout or \
                    f"\nCodename: {suite}\n" in release.stdout
            # No CONNECT tunnel (apt-cacher-ng's default lets bugs.debian.org:443 through).
            tunnel = curl(netns, "-p", "-x", via_proxy, "https://bugs.debian.org/")
            assert "CONNECT tunnel failed, response 403" in tunnel.stderr
            # ForceManaged: anything but Debian's archive is refused.
            other = curl(netns, "-o", "/dev/null", "-w", "%{http_code}", "-x", via_proxy,
                         "http://pypi.org/simple/")
            assert other.stdout == "403"
            # No maintenance page for a guest to expire or delete the cache with.
            for page in ("acng-report.html", "acng-report.html?doExpire=Start+Expiration"):
                report = curl(netns, "-o", "/dev/null", "-w", "%{http_code}",
                              f"{via_proxy}/{page}")
                assert report.stdout in ("403", "404"), (page, report.stdout)
            # And the namespace has no way out but the proxy.
            direct = curl(netns, "--max-time", "5", RELEASE)
            assert direct.returncode != 0
        # The forwarder is gone with its block.
        after = curl(netns, "--max-time", "5", "-x", via_proxy, RELEASE)
        assert after.returncode != 0
    assert not proxy.socket.exists()
    assert daemon_pid() is None
    assert (dirs.cache / "apt-cacher-ng" / "debrep").is_dir()
    assert not aptproxy.answers_as_apt_cacher_ng(port=port)


HOLDER = """
import os, sys
sys.path.insert(0, sys.argv[1])
if len(sys.argv) > 2:
    os.environ["TEMPEST_LIVE_CI_STATE_DIR"] = sys.argv[2]
from tempest_live_ci.testbed import aptproxy
from tempest_live_ci.testbed.listen import socket_inodes
with aptproxy.start_apt_cacher_ng() as proxy:
    print(proxy.socket, flush=True)
    sys.stdin.readline()
"""


def test_concurrent_users_share_one_daemon(dirs: Dirs, tmp_path: Path, no_leaks: None) -> None:
    """Another run, even with a state directory of its own, uses and counts the same daemon
    (the one of their cache directory)."""
    other_state = tmp_path / "other-state"
    with aptproxy.start_apt_cacher_ng() as first:
        pid = daemon_pid()
        assert pid is not None and proc.pid_alive(pid)
        other = subprocess.Popen([sys.executable, "-c", HOLDER, str(TOP / "ci"), str(other_state)],
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert other.stdout is not None
            other_socket = Path(other.stdout.readline().strip())
            assert other_socket.is_socket() and other_socket != first.socket
            assert not (other_state / "apt-cacher-ng" / "apt-cacher-ng.pid").exists()
            assert daemon_pid() == pid
            assert len(aptproxy.users(aptproxy.proxy_state_dir())) == 2
            with aptproxy.start_apt_cacher_ng() as nested:
                assert daemon_pid() == pid
                assert nested.socket != first.socket
        except BaseException:
            other.kill()
            other.wait()
            raise
        # The first user leaves while the other still holds the proxy: it keeps running.
    port = aptproxy.daemon_port(aptproxy.proxy_state_dir())
    assert daemon_pid() == pid and proc.pid_alive(pid)
    assert aptproxy.answers_as_apt_cacher_ng(port=port)
    other.communicate("\n", timeout=30)
    assert other.returncode == 0
    # The last user left: the daemon is stopped.
    assert not proc.pid_alive(pid)
    assert not aptproxy.answers_as_apt_cacher_ng(port=port)
    assert aptproxy.users(aptproxy.proxy_state_dir()) == []
    assert registry.entries() == []  # the shared record went with its last user


def unix_socket_paths(pid: int) -> list[str]:
    """The paths of the unix sockets `pid` has open ("" for an unnamed one)."""
    owned = socket_inodes(pid)
    paths = []
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if int(fields[6]) in owned:
            paths.append(fields[7] if len(fields) > 7 else "")
    return paths


def test_the_daemon_takes_no_unix_socket_of_the_host(dirs: Dirs, no_leaks: None) -> None:
    """apt-cacher-ng's default socket, /run/apt-cacher-ng/socket, is one path for every
    daemon on the host: ours binds none (each concurrent daemon took it over from the
    last, the host's own service's too)."""
    host = Path("/run/apt-cacher-ng/socket")
    before = host.lstat() if host.exists() else None
    with aptproxy.start_apt_cacher_ng():
        pid = daemon_pid()
        assert pid is not None and proc.pid_alive(pid)
        assert socket_inodes(pid), "no sockets: the daemon's fds were not readable"
        assert [path for path in unix_socket_paths(pid) if path] == []
        after = host.lstat() if host.exists() else None
        assert (before and (before.st_ino, before.st_mtime_ns)) == \
            (after and (after.st_ino, after.st_mtime_ns))


def test_dead_users_are_forgotten(tlc: Tlc, dirs: Dirs, no_leaks: None) -> None:
    """A run killed without unwinding must not keep the daemon alive for ever; the socat
    it left (in its own session) is `cleanup`'s."""
    killed = subprocess.Popen([sys.executable, "-c", HOLDER, str(TOP / "ci")],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert killed.stdout is not None
    socket = Path(killed.stdout.readline().strip())
    pid = daemon_pid()
    assert pid is not None
    (socat,) = socat_pids()
    assert socat is not None and proc.pid_alive(socat)
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    with aptproxy.start_apt_cacher_ng():
        assert daemon_pid() == pid
    assert not proc.pid_alive(pid)
    assert proc.pid_alive(socat) and socket.is_socket()
    result = tlc("cleanup", check=True)
    assert f"{socket}: removed process {socat} (socat)" in result.stdout
    assert not proc.pid_alive(socat)
    assert not socket.exists()
    assert registry.entries() == []


FOREIGN_CONF = """CacheDir: {cache}
LogDir: {log}
SupportDir: /usr/lib/apt-cacher-ng
PidFile: {pid}
BindAddress: 127.0.0.1
Port: 3142
"""


def test_a_foreign_apt_cacher_ng_is_named_and_not_used(dirs: Dirs, netns: str,
                                                         tmp_path: Path, no_leaks: None) -> None:
    """In a namespace of our own, "the host's" apt-cacher-ng (no ForceManaged) holds 3142."""
    conf = tmp_path / "foreign"
    for sub in ("cache", "log"):
        (conf / sub).mkdir(parents=True)
    (conf / "acng.conf").write_text(FOREIGN_CONF.format(cache=conf / "cache", log=conf / "log",
                                                        pid=conf / "pid"))
    subprocess.run(["ip", "netns", "exec", netns, "apt-cacher-ng", "-c", str(conf),
                    "ForeGround=0"], check=True, stdin=subprocess.DEVNULL)
    foreign: int | None = None
    try:
        holder = subprocess.Popen(
            ["ip", "netns", "exec", netns, sys.executable, "-c", HOLDER, str(TOP / "ci")],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **dirs.env()})
        try:
            assert holder.stdout is not None
            socket = holder.stdout.readline().strip()
            assert socket, holder.communicate()[1]
            ours = aptproxy.daemon_port(aptproxy.proxy_state_dir())
            assert ours != 3142
            socat = subprocess.run(["ps", "-o", "args=", "-C", "socat"], capture_output=True,
                                   text=True).stdout
            assert f"UNIX-LISTEN:{socket},fork,unlink-early,mode=600 TCP:127.0.0.1:{ours}" in socat
        finally:
            _, stderr = holder.communicate("\n", timeout=30)
        foreign = proc.read_pidfile(conf / "pid")
        warning = [line for line in stderr.splitlines() if "not ours" in line]
        assert len(warning) == 1, stderr
        assert "127.0.0.1:3142" in warning[0] and f"pid {foreign}: apt-cacher-ng" in warning[0]
        assert "not restricted to Debian's archive" in warning[0]
        # The foreign one is still there, untouched.
        assert foreign is not None and proc.pid_alive(foreign)
    finally:
        # It daemonized: the namespace going away does not stop it. Its pid
        # file comes a moment after the command that started it returns.
        for _ in range(50):
            foreign = foreign or proc.read_pidfile(conf / "pid")
            if foreign is not None:
                proc.kill_pid(foreign)
                break
            time.sleep(0.1)


HOLD_PORT = """
import socket, sys, time
s = socket.socket()
s.bind((sys.argv[1], 3142))
s.listen()
print("ready", flush=True)
time.sleep(600)
"""


def test_a_forward_whose_port_is_taken_fails(dirs: Dirs, netns: str, no_leaks: None) -> None:
    """The namespace's port held by someone else is not our socat listening."""
    holder = subprocess.Popen(["ip", "netns", "exec", netns, sys.executable, "-c", HOLD_PORT,
                               NS_ADDRESS], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        with aptproxy.start_apt_cacher_ng() as proxy, \
                pytest.raises(TestbedError, match="exited with status"), \
                aptproxy.forward_into_netns(proxy, netns, NS_ADDRESS):
            pass
    finally:
        holder.kill()
        holder.wait()


def test_a_registry_deleted_under_a_user_stops_its_daemon(dirs: Dirs, no_leaks: None,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """Two state directories share one cache, so one daemon; the starter's directory goes
    (a test's teardown) while the other still uses it: leaving is no error, and the
    daemon nobody can count users of any more is stopped, not leaked."""
    first_state, second_state = dirs.top / "state-a", dirs.top / "state-b"
    first, second = contextlib.ExitStack(), contextlib.ExitStack()
    monkeypatch.setenv("TEMPEST_LIVE_CI_STATE_DIR", str(first_state))
    first.enter_context(aptproxy.start_apt_cacher_ng())
    monkeypatch.setenv("TEMPEST_LIVE_CI_STATE_DIR", str(second_state))
    with second:
        second.enter_context(aptproxy.start_apt_cacher_ng())
        daemon = proc.read_pidfile(first_state / "apt-cacher-ng" / "apt-cacher-ng.pid")
        assert daemon is not None and proc.pid_alive(daemon)
        first.close()
        assert proc.pid_alive(daemon)  # the second user still has it
        shutil.rmtree(first_state)
    assert not proc.pid_alive(daemon)


KEPT_RUN = """
import sys
sys.path.insert(0, sys.argv[1])
from tempest_live_ci.testbed.config import TestbedConfig
from tempest_live_ci.testbed.lifecycle import keep_testbed, start_testbed
with start_testbed(TestbedConfig(name=sys.argv[2])) as testbed:
    # What boot_vm does when a run with --keep-on-failure fails: keep the testbed.
    keep_testbed(testbed)
    print(testbed.apt_proxy, flush=True)
    raise RuntimeError("the run failed")
"""


@pytest.mark.parametrize("removal", [("vm", "destroy", "--run-id"), ("cleanup", "--include-kept")])
def test_a_kept_testbed_keeps_its_apt_proxy_until_it_is_removed(
        tlc: Tlc, dirs: Dirs, no_leaks: None, removal: tuple[str, ...]) -> None:
    """A failed run whose guest is kept ends; its guest's apt proxy (the socats, the
    daemon and its user count) lives on until `vm destroy` or `cleanup --include-kept`."""
    from tempest_live_ci.testbed.config import new_run_id
    from tempest_live_ci.testbed.journal import Journal, netns_exists, recorded_pid
    from tests.integration.testbed.test_vm_destroy import keep_a_guest

    run_id = new_run_id()
    run = subprocess.run([sys.executable, "-c", KEPT_RUN, str(TOP / "ci"), run_id],
                         capture_output=True, text=True, timeout=120,
                         env={**os.environ, **dirs.env()})
    try:
        assert run.returncode == 1 and "the run failed" in run.stderr, run.stderr
        proxy_url = run.stdout.strip()
        assert proxy_url == "http://192.168.100.1:3142"
        daemon = daemon_pid()
        assert daemon is not None and proc.pid_alive(daemon)
        state = dirs.state / run_id
        socats = {r["name"]: recorded_pid(r) for r in Journal(state).records()
                  if r["kind"] == "pid" and r["name"].startswith("socat")}
        assert sorted(socats) == ["socat (apt proxy socket)", "socat (apt proxy)"]
        assert all(pid is not None and proc.pid_alive(pid) for pid in socats.values())
        # The run's own records of them went: the testbed's journal has them now, and its
        # use of the daemon lives as long as that journal.
        assert socat_pids() == []
        assert aptproxy.users(aptproxy.proxy_state_dir()) == [str(state / "journal.json")]

        # The guest's side of it works after its run is gone.
        release = curl(run_id, "-f", "-x", proxy_url, RELEASE)
        assert release.returncode == 0, release.stderr
        assert "Origin: Debian" in release.stdout
        # A plain cleanup leaves a kept testbed's proxy alone.
        cleaned = tlc("cleanup", check=True)
        assert "apt-cacher-ng" not in cleaned.stdout and "socat" not in cleaned.stdout
        assert proc.pid_alive(daemon)
        assert curl(run_id, "-f", "-x", proxy_url, RELEASE).returncode == 0

        if removal[0] == "vm":
            keep_a_guest(loaded_testbed(run_id), dirs)
            removed = tlc(*removal, run_id)
        else:
            removed = tlc(*removal)
        assert removed.returncode == 0, removed.stderr
        assert not netns_exists(run_id)
        assert not state.exists()
        for pid in socats.values():
            assert pid is not None and not proc.pid_alive(pid)
        # The last user is gone: the daemon with it.
        assert not proc.pid_alive(daemon)
        assert aptproxy.users(aptproxy.proxy_state_dir()) == []
        assert not [e for e in registry.entries()
                    if isinstance(e.resource, aptproxy.ProxyDaemon | aptproxy.ProxySocat)]
        assert not list(aptproxy.proxy_state_dir().glob("*.sock"))
    finally:
        tlc("cleanup", "--include-kept")


def loaded_testbed(run_id: str) -> Any:
    from tempest_live_ci.testbed.lifecycle import load_testbed

    return load_testbed(run_id)[1]
