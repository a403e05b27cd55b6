"""`cleanup` after processes killed with SIGKILL: they could undo nothing themselves.

Every leftover here is made for real by the project's own code in a child
process, which is then killed: a testbed (named like a run or not), a marked
namespace, a scratch namespace, the apt proxy's socat and daemon, an image
build with a process working in its chroot and a mount in it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tempest_live_ci import proc, registry
from tempest_live_ci.image.livebuild import mounts_under, processes_under
from tempest_live_ci.testbed.config import new_run_id
from tempest_live_ci.testbed.journal import netns_exists
from tests.conftest import TOP, Dirs, needs_root

Tlc = Callable[..., subprocess.CompletedProcess[str]]

pytestmark = [needs_root]

PRELUDE = f"""
import os, sys, time
sys.path.insert(0, {str(TOP / "ci")!r})
"""


UP = "\nprint('up', flush=True)\ntime.sleep(600)\n"


def start(code: str, dirs: Dirs,
          env: dict[str, str] | None = None) -> tuple[subprocess.Popen[str], list[str]]:
    """Run `code` in a child of our own, until it prints "up" (it then waits to be killed).

    Returns the child and the lines it printed before "up".
    """
    child = subprocess.Popen([sys.executable, "-c", PRELUDE + code + UP],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env={**os.environ, **dirs.env(), **(env or {})})
    assert child.stdout is not None
    lines = []
    for line in child.stdout:
        if line.strip() == "up":
            return child, lines
        lines.append(line.strip())
    child.kill()
    raise AssertionError(f"the child did not come up: {child.communicate()[1]}")


def kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()


def netns() -> str:
    return subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout


KILLED_RUN = """
from tempest_live_ci.testbed.config import TestbedConfig
from tempest_live_ci.testbed.lifecycle import create_testbed
create_testbed(TestbedConfig(name={run_id!r}, apt_proxy=False))
"""


def test_cleanup_removes_what_a_killed_run_left(tlc: Tlc, dirs: Dirs, no_leaks: None) -> None:
    run_id = new_run_id()
    owner, _ = start(KILLED_RUN.format(run_id=run_id), dirs)
    try:
        # While its owner lives, a run is not a leftover.
        assert run_id not in tlc("cleanup", "--dry-run").stdout
    finally:
        kill(owner)
    assert run_id in netns()
    pids = [int(p.read_text()) for p in (dirs.state / run_id).glob("*.pid")]
    assert pids
    found = tlc("cleanup", "--dry-run")
    assert f"{run_id}: its run is gone" in found.stdout
    result = tlc("cleanup", check=True)
    assert f"{run_id}: removed network namespace {run_id}" in result.stdout
    assert "(dnsmasq)" in result.stdout
    assert run_id not in netns()
    assert not (dirs.state / run_id).exists()
    for pid in pids:
        assert not proc.pid_alive(pid)
    assert tlc("cleanup", check=True).stderr.strip().endswith("nothing to clean up")


def test_a_testbed_not_named_like_a_run_id(tlc: Tlc, dirs: Dirs, no_leaks: None) -> None:
    """`vm boot --run-id NAME` makes a testbed of any valid name."""
    name = "mybox-" + new_run_id()[4:]
    kill(start(KILLED_RUN.format(run_id=name), dirs)[0])
    assert netns_exists(name)
    result = tlc("cleanup", check=True)
    assert f"{name}: removed network namespace {name}" in result.stdout
    assert not netns_exists(name)
    assert not (dirs.state / name).exists()


def marked_netns(name: str, state: Path | None) -> str:
    """Code making a namespace the way create_netns() does; `name` is a Python expression."""
    where = "None" if state is None else f"Path({str(state)!r})"
    return ("from pathlib import Path\n"
            "from tempest_live_ci.testbed.netns import add_marked_netns\n"
            f"add_marked_netns({name}, {where})\n")


def test_marked_namespaces_of_dead_owners_go_and_kept_testbeds_stay(
        tlc: Tlc, dirs: Dirs, no_leaks: None) -> None:
    # A run killed right after making its namespace, its state directory elsewhere (gone).
    orphan = new_run_id()
    kill(start(marked_netns(repr(orphan), dirs.top / "elsewhere" / orphan), dirs)[0])
    # The scratch namespace of links.kernel_has_dummy(), its process killed.
    probe, _ = start(marked_netns("f'tlc-probe-{os.getpid()}'", None), dirs)
    probe_name = f"tlc-probe-{probe.pid}"
    # A live owner's namespace is left alone, whatever it is called.
    alive, _ = start(marked_netns("f'tlc-probe-{os.getpid()}'", None), dirs)
    alive_name = f"tlc-probe-{alive.pid}"
    kept = new_run_id()
    assert tlc("host", "setup", "--netns", kept, "--no-apt-proxy").returncode == 0
    try:
        assert netns_exists(probe_name)
        kill(probe)
        dry = tlc("cleanup", "--dry-run", check=True)
        assert f"{orphan}: a namespace whose run is gone" in dry.stdout
        assert f"{probe_name}: a namespace whose run is gone" in dry.stdout
        assert netns_exists(orphan) and netns_exists(probe_name)
        result = tlc("cleanup", check=True)
        assert f"{orphan}: removed network namespace {orphan}" in result.stdout
        assert f"{probe_name}: removed network namespace {probe_name}" in result.stdout
        assert not netns_exists(orphan) and not netns_exists(probe_name)
        assert alive_name not in dry.stdout + result.stdout
        assert netns_exists(alive_name)
        assert kept not in result.stdout
        assert "kept on purpose" in result.stderr
        assert netns_exists(kept)
        forced = tlc("cleanup", "--include-kept", check=True)
        assert f"{kept}: removed network namespace {kept}" in forced.stdout
    finally:
        kill(alive)
        for name in (orphan, probe_name, alive_name):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True)
        tlc("host", "teardown", "--netns", kept)


HOLDER = """
from tempest_live_ci.testbed import aptproxy
with aptproxy.start_apt_cacher_ng() as proxy:
    print(proxy.socket, flush=True)
    print('up', flush=True)
    time.sleep(600)
"""


def test_the_apt_proxy_of_a_killed_run(tlc: Tlc, dirs: Dirs, no_leaks: None) -> None:
    """Its socat (own session) and the daemon no live run uses: both recorded, both stopped."""
    from tempest_live_ci.testbed import aptproxy
    from tests.integration.test_aptproxy import socat_pids

    holder, lines = start(HOLDER, dirs)
    socket = Path(lines[0])
    own = aptproxy.proxy_state_dir()
    daemon = aptproxy.daemon_pid(own)
    (socat,) = socat_pids()
    kill(holder)
    assert daemon is not None and proc.pid_alive(daemon)
    assert socat is not None and proc.pid_alive(socat)
    assert socket.is_socket()
    dry = tlc("cleanup", "--dry-run", check=True)
    assert f"{socket}: the apt proxy's socat (UNIX-LISTEN:{socket},): its run is gone" \
        in dry.stdout, dry.stdout
    assert f"apt-cacher-ng ({own}): no run uses it any more" in dry.stdout, dry.stdout
    assert proc.pid_alive(daemon) and proc.pid_alive(socat)
    result = tlc("cleanup", check=True)
    assert f"removed process {socat} (socat)" in result.stdout
    assert f"removed process {daemon} (apt-cacher-ng)" in result.stdout
    assert not proc.pid_alive(daemon) and not proc.pid_alive(socat)
    assert not socket.exists()
    assert registry.entries() == []


@pytest.mark.parametrize("where", ["state directory", "short directory"])
def test_the_apt_proxy_of_a_run_whose_state_directory_was_removed(
        tlc: Tlc, dirs: Dirs, no_leaks: None, where: str) -> None:
    """The state directory removed while its run was live (a test's fixture did), then the
    run killed: no pid file, registry or journal is left. The cleanup of any state directory
    finds the socat and the daemon by their command lines; not while the run lives.

    With a deep state directory the socket is in a short directory of its own (sun_path is
    108 bytes), which names the state directory it belongs to."""
    import shutil

    state = dirs.state if where == "state directory" else dirs.top / ("deep-" * 20) / "state"
    holder, lines = start(HOLDER, dirs, {"TEMPEST_LIVE_CI_STATE_DIR": str(state)})
    socket = Path(lines[0])
    own = state / "apt-cacher-ng"
    daemon = proc.read_pidfile(own / "apt-cacher-ng.pid") or 0
    socat = next(e.resource.pid for e in registry.entries(registry.directory(state))
                 if getattr(e.resource, "socket", None) == str(socket)) or 0
    # The host's cleanup, say: another state directory.
    other = {"TEMPEST_LIVE_CI_STATE_DIR": str(dirs.top / "other-state")}
    try:
        assert daemon and socat
        assert socket.parent.name.startswith("tlc-acng-") is (where == "short directory")
        assert socket.name.startswith(f"acng-{holder.pid}-")
        shutil.rmtree(state)
        live = tlc("cleanup", "--dry-run", env=other, check=True)
        assert str(socket) not in live.stdout and f"pid {daemon}" not in live.stdout, live.stdout
        kill(holder)
        assert proc.pid_alive(daemon) and proc.pid_alive(socat)
        dry = tlc("cleanup", "--dry-run", env=other, check=True)
        assert f"socat (pid {socat}, {socket}): the apt proxy's socat of process {holder.pid}, " \
            f"which is gone with its state directory {own}" in dry.stdout, dry.stdout
        assert f"apt-cacher-ng (pid {daemon}, {own}): its state directory is gone, and no " \
            "live run uses it" in dry.stdout, dry.stdout
        result = tlc("cleanup", env=other, check=True)
        assert f"removed process {socat} (socat)" in result.stdout, result.stdout
        assert f"removed process {daemon} (apt-cacher-ng)" in result.stdout, result.stdout
        assert not proc.pid_alive(socat) and not proc.pid_alive(daemon)
        assert not socket.exists() and not socket.parent.exists()
        assert tlc("cleanup", env=other, check=True).stderr.strip().endswith("nothing to clean up")
    finally:
        kill(holder)
        for pid in (socat, daemon):
            if pid:
                proc.kill_pid(pid, grace=1)
        if socket.parent.name.startswith("tlc-acng-"):
            shutil.rmtree(socket.parent, ignore_errors=True)


@pytest.mark.parametrize("lost", ["state directory", "registry", "pid file"])
def test_an_apt_cacher_ng_no_registry_names(tlc: Tlc, dirs: Dirs, no_leaks: None,
                                            lost: str) -> None:
    """A killed run's daemon whose state directory, records or pid file went: nothing
    would ever stop it but cleanup, which finds it by its command line."""
    import shutil

    from tempest_live_ci.testbed import aptproxy
    from tests.integration.test_aptproxy import socat_pids

    holder, _ = start(HOLDER, dirs)
    own = aptproxy.proxy_state_dir()
    daemon = aptproxy.daemon_pid(own)
    kill(holder)
    assert daemon is not None and proc.pid_alive(daemon)
    try:
        if lost == "pid file":
            (own / "apt-cacher-ng.pid").unlink()
            why = "no run uses it any more"
            line = f"apt-cacher-ng ({own}): {why}"
        else:
            for socat in socat_pids():
                assert socat is not None and proc.kill_pid(socat)
            shutil.rmtree(dirs.state if lost == "state directory" else registry.directory())
            why = ("its state directory is gone, and no live run uses it"
                   if lost == "state directory" else "no record of its users is left")
            line = f"apt-cacher-ng (pid {daemon}, {own}): {why}"
        dry = tlc("cleanup", "--dry-run", check=True)
        assert line in dry.stdout, dry.stdout
        result = tlc("cleanup", check=True)
        assert f"removed process {daemon} (apt-cacher-ng)" in result.stdout
        assert not proc.pid_alive(daemon)
    finally:
        proc.kill_pid(daemon, grace=1)


KILLED_BUILD = """
from pathlib import Path
from tempest_live_ci import proc, registry
from tempest_live_ci.image.livebuild import BuildDirectory, _build_lock, _work_directory
from tempest_live_ci.image.model import images_dir
store = images_dir()
store.mkdir(parents=True)
digest = "00112233445566aa"
# Another build's lock, and the image it is replacing (as _publish() does) when killed.
old = store / ".old-0123456789abcdef-999999999"
(store / "0123456789abcdef").mkdir()
with _build_lock(store, "fedcba9876543210"), _build_lock(store, digest), \\
        registry.holding(BuildDirectory(name=str(old), replaced=True)), \\
        _work_directory(store, digest) as work:
    (store / "0123456789abcdef").rename(old)
    chroot = work / "lb" / "chroot"
    (chroot / "proc").mkdir(parents=True)
    proc.run(["mount", "-t", "tmpfs", "tlc-test-chroot", str(chroot / "proc")])
    # As live-build runs: in its own session (proc.spawn), working in the chroot.
    with proc.spawn(["sleep", "600"], cwd=chroot) as lb:
        print(work, lb.pid, flush=True)
        print('up', flush=True)
        time.sleep(600)
"""


@pytest.fixture
def build_leftovers(dirs: Dirs) -> Iterator[tuple[Path, int]]:
    child, lines = start(KILLED_BUILD, dirs)
    path, pid_text = lines[0].split()
    work, pid = Path(path), int(pid_text)
    kill(child)
    try:
        yield work, pid
    finally:
        for point in mounts_under(dirs.cache):
            subprocess.run(["umount", "-l", str(point)], check=False)
        proc.kill_pid(pid, grace=1)


def test_an_image_build_whose_builder_was_killed(tlc: Tlc, dirs: Dirs, no_leaks: None,
                                                 build_leftovers: tuple[Path, int]) -> None:
    work, lb = build_leftovers
    store = work.parent
    assert proc.pid_alive(lb) and processes_under(work) == [lb]
    assert mounts_under(work) == [work / "lb" / "chroot" / "proc"]
    dry = tlc("cleanup", "--dry-run", check=True)
    assert f"{work}: an image build whose builder is gone" in dry.stdout
    assert f"{store / '.old-0123456789abcdef-999999999'}: an image replaced" in dry.stdout
    assert f"{store / '.lock-fedcba9876543210'}: a build lock nobody holds" in dry.stdout
    result = tlc("cleanup", check=True)
    assert f"{work}: removed directory {work}" in result.stdout
    # The process working in it and the chroot's mount first (else no rmtree).
    assert not proc.pid_alive(lb)
    assert not mounts_under(store)
    assert sorted(p.name for p in store.iterdir()) == []
    assert tlc("cleanup", check=True).stderr.strip().endswith("nothing to clean up")


def test_a_running_build_is_left_alone(tlc: Tlc, dirs: Dirs, no_leaks: None) -> None:
    child, lines = start(KILLED_BUILD, dirs)
    try:
        work = Path(lines[0].split()[0])
        result = tlc("cleanup", "--dry-run", check=True)
        assert str(work) not in result.stdout
        assert ".lock-00112233445566aa" not in result.stdout
    finally:
        kill(child)
        for point in mounts_under(dirs.cache):
            subprocess.run(["umount", "-l", str(point)], check=False)
        for pid in processes_under(dirs.cache):
            proc.kill_pid(pid, grace=1)


WAITING_BUILDER = """
from tempest_live_ci.image.livebuild import _build_lock
from tempest_live_ci.image.model import images_dir
with _build_lock(images_dir(), "00112233445566bb"):
    print("building", flush=True)
    time.sleep(600)
"""


def test_a_build_lock_removed_while_a_builder_waited_for_it(tlc: Tlc, dirs: Dirs,
                                                            no_leaks: None) -> None:
    """cleanup removes a build lock nobody holds. A builder that opened that file just
    before then locks a file that is gone: cleanup (and the next builder) would take its
    build for one whose builder is gone. Made deterministic here: the test holds the lock
    while the builder waits for it, removes the file as cleanup does, then lets go."""
    import fcntl

    from tempest_live_ci.image.model import images_dir

    store = images_dir()
    store.mkdir(parents=True)
    lock = store / ".lock-00112233445566bb"
    build = store / ".build-00112233445566bb-x"
    build.mkdir()
    with open(lock, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        child = subprocess.Popen([sys.executable, "-c", PRELUDE + WAITING_BUILDER],
                                 stdout=subprocess.PIPE, text=True,
                                 env={**os.environ, **dirs.env()})
        try:
            # Until the kernel lists it as waiting for the lock.
            assert proc.wait_until(lambda: any(
                "->" in line and f" {child.pid} " in line
                for line in Path("/proc/locks").read_text().splitlines()), 30)
            lock.unlink()
        except BaseException:
            kill(child)
            raise
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "building"
        dry = tlc("cleanup", "--dry-run", check=True)
        assert str(build) not in dry.stdout and str(lock) not in dry.stdout, dry.stdout
        assert lock.exists()
    finally:
        kill(child)


def test_domains_of_dead_owners_are_undone_kept_ones_only_when_asked(
        dirs: Dirs, tmp_path: Path) -> None:
    """Through the real libvirt API (its in-process test driver, shared by the connections
    of this process): domains started by start_domain(), their owner then gone (its
    identity in the record replaced by one no process has, as a killed run's)."""
    libvirt = pytest.importorskip("libvirt")
    import json

    from tempest_live_ci.vm.domain import DomainSpec, Keep, render_domain_xml, start_domain

    def xml(name: str) -> str:
        spec = DomainSpec(name=name, run_id=name, state_dir=tmp_path, domain_type="test",
                          memory_mib=512, vcpus=1, tap="tap0", mac="52:54:00:7e:57:02",
                          nic_model="virtio", boot="network", console_log=tmp_path / "c.log")
        return render_domain_xml(spec).replace("<emulator>", "<!-- ").replace("</emulator>",
                                                                              " -->")

    def owner_gone(name: str) -> None:
        (entry,) = [e for e in registry.entries() if e.resource.name == name]
        data = json.loads(entry.path.read_text())
        data["owners"] = ["999999999 1"]  # no such process
        entry.path.write_text(json.dumps(data))

    conn = libvirt.open("test:///default")
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(start_domain(conn, xml("tlc-0000dead")))
            stack.enter_context(start_domain(conn, xml("tlc-00a11ve0")))
            # Kept as `vm boot` and --keep-on-failure keep it.
            with start_domain(conn, xml("tlc-000kept0"), keep=Keep(keep=True)):
                pass
            owner_gone("tlc-0000dead")
            owner_gone("tlc-000kept0")
            assert [e.resource.name for e in registry.leftovers()] == ["tlc-0000dead"]
            found = {e.resource.name: e.kept for e in registry.leftovers(include_kept=True)}
            assert found == {"tlc-0000dead": False, "tlc-000kept0": True}
            (dead,) = registry.leftovers()
            assert registry.undo_leftover(dead) == ["domain tlc-0000dead"]
            running = {d.name() for d in conn.listAllDomains()}
            # libvirt's own default domain is nobody's record: never touched.
            assert running == {"test", "tlc-00a11ve0", "tlc-000kept0"}
            (kept,) = registry.leftovers(include_kept=True)
            assert registry.undo_leftover(kept, include_kept=True) == ["domain tlc-000kept0"]
            assert registry.undo_leftover(kept, include_kept=True) == []
        # The live owner's ends with its block, its record with it.
        assert {d.name() for d in conn.listAllDomains()} == {"test"}
        assert registry.entries() == []
    finally:
        conn.close()


def test_host_setup_killed_halfway_through(tlc: Tlc, dirs: Dirs, tmp_path: Path,
                                           no_leaks: None) -> None:
    """`host setup --netns NAME` through the CLI, SIGKILLed right after its tap exists (an
    `ip` wrapper hangs there): cleanup finds the half-made testbed and removes all of it."""
    from tests.integration.testbed.test_journal import WRAPPER

    name = new_run_id()
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    flag = tmp_path / "made"
    (wrappers / "ip").write_text(WRAPPER.format(python=sys.executable,
                                                trigger=["tuntap", "add", "tempesttap"],
                                                exclude=[], flag=str(flag)))
    (wrappers / "ip").chmod(0o755)
    tool = subprocess.Popen(
        [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "host", "setup", "--netns", name,
         "--no-apt-proxy"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, **dirs.env(), "PATH": f"{wrappers}:{os.environ['PATH']}"})
    try:
        for _ in range(600):
            if (flag.exists() and flag.read_text()) or tool.poll() is not None:
                break
            time.sleep(0.05)
        assert flag.exists() and flag.read_text()
    finally:
        tool.send_signal(signal.SIGKILL)
        tool.wait()
        if flag.exists() and flag.read_text():
            proc.kill_pid(int(flag.read_text()), grace=1)
    assert netns_exists(name)
    tap = subprocess.run(["ip", "-n", name, "link", "show", "tempesttap"], capture_output=True)
    assert tap.returncode == 0
    assert f"{name}: its run is gone" in tlc("cleanup", "--dry-run", check=True).stdout
    result = tlc("cleanup", check=True)
    assert f"{name}: removed network namespace {name}" in result.stdout
    assert not netns_exists(name)
    assert not (dirs.state / name).exists()
    assert tlc("cleanup", check=True).stderr.strip().endswith("nothing to clean up")
