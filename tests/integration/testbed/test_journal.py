"""The journal with real namespaces, links, daemons and nftables.

- Teardown is best effort: an undo that fails is reported, everything else is
  still undone.
- Intent is recorded first: a tool killed in the middle of creating something
  leaves nothing that teardown cannot find. The kill is made deterministic by
  a wrapper of the real command (ip, nft, sysctl) that does its job, says so
  and then hangs, so the tool is killed right after the object exists.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.testbed.config import TestbedConfig, new_run_id
from tempest_live_ci.testbed.journal import Journal, UndoError, netns_exists
from tempest_live_ci.testbed.lifecycle import create_testbed, start_testbed, teardown_testbed
from tests.conftest import TOP, Dirs, needs_root
from tests.integration.testbed.clients import sh, snapshot, tlc_in

pytestmark = [needs_root]

NO_SUCH_KEY = "net.ipv4.tlc_no_such_key"


def test_a_failing_undo_does_not_stop_the_others(dirs: Dirs, no_leaks: None) -> None:
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    tb = create_testbed(config)
    journal = Journal(tb.state_dir)
    pids = [proc.read_pidfile(p) for p in tb.state_dir.glob("*.pid")]
    assert len(pids) == 2 and all(pids)
    # Newest first: these are undone before everything else.
    journal.add("sysctl", key=NO_SUCH_KEY, old="0", netns=tb.netns)  # fails
    journal.add("nft-table", family="inet", name="tlc_never_made", netns=tb.netns)  # not there
    # A link someone already removed.
    sh("ip", "-n", str(tb.netns), "link", "delete", tb.tap)
    with pytest.raises(UndoError) as error:
        teardown_testbed(config.name)
    assert f"1 of 8 parts of testbed {config.name} could not be removed" in error.value.message
    assert NO_SUCH_KEY in error.value.message
    # The rest is gone: daemons, links, the namespace.
    assert not netns_exists(str(tb.netns))
    for pid in pids:
        assert pid is not None and not proc.pid_alive(pid)
    # What failed stays in the journal (and its directory with it) for a later try.
    left = journal.records()
    assert [r["kind"] for r in left] == ["sysctl"]
    # Its namespace is gone now: a second teardown skips it and finishes.
    teardown_testbed(config.name)
    assert not tb.state_dir.exists()


def test_a_teardown_failure_does_not_hide_the_error_that_caused_it(
        dirs: Dirs, no_leaks: None) -> None:
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    with pytest.raises(RuntimeError, match="the real problem"), start_testbed(config) as tb:
        Journal(tb.state_dir).add("sysctl", key=NO_SUCH_KEY, old="0", netns=tb.netns)
        raise RuntimeError("the real problem")
    assert not netns_exists(config.name)
    sh("rm", "-rf", str(dirs.state / config.name))


# The wrapper: does what the real command does, then (if it made the object
# the test is after) writes its pid to the flag file and hangs.
WRAPPER = """#!{python}
import os, shutil, subprocess, sys, time
here = os.path.dirname(os.path.abspath(__file__))
path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != here)
real = shutil.which(os.path.basename(__file__), path=path + ":/usr/sbin:/sbin")
code = subprocess.call([real, *sys.argv[1:]])
if code == 0 and all(word in sys.argv[1:] for word in {trigger!r}) \\
        and not any(word in sys.argv[1:] for word in {exclude!r}):
    with open({flag!r}, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(600)
sys.exit(code)
"""


@pytest.mark.parametrize("command, trigger, args", [
    ("ip", ["link", "add", "tempestbr"], []),
    ("ip", ["tuntap", "add", "tempesttap"], []),
    ("ip", ["link", "add", "tempestnic0"], []),
    ("nft", ["-f"], ["--nat"]),  # the ruleset itself, not its check (nft -c)
    ("sysctl", ["-w"], ["--nat"]),
], ids=["bridge", "tap", "nic", "nft-table", "sysctl"])
def test_killed_right_after_creating_something_teardown_still_finds_it(
        fake_host: str, dirs: Dirs, tmp_path: Path, command: str, trigger: list[str],
        args: list[str]) -> None:
    before = snapshot(fake_host)
    wrappers = tmp_path / "bin"
    wrappers.mkdir()
    flag = tmp_path / "made"
    (wrappers / command).write_text(WRAPPER.format(python=sys.executable, trigger=trigger,
                                                   exclude=["-c"], flag=str(flag)))
    (wrappers / command).chmod(0o755)
    env = {**os.environ, **dirs.env(), "PATH": f"{wrappers}:{os.environ['PATH']}"}
    # The tool's own `ip` is the wrapper; this one must not be (the tool is its child).
    ip = proc.which("ip")
    assert ip is not None
    tool = subprocess.Popen(
        [ip, "netns", "exec", fake_host, sys.executable, str(TOP / "bin" / "tempest-live-ci"),
         "host", "setup", "--no-apt-proxy", *args],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        for _ in range(600):
            if (flag.exists() and flag.read_text()) or tool.poll() is not None:
                break
            time.sleep(0.05)
        assert flag.exists(), tool.stderr.read() if tool.stderr else ""
    finally:
        tool.send_signal(signal.SIGKILL)
        tool.wait()
        if flag.exists() and flag.read_text():
            proc.kill_pid(int(flag.read_text()), grace=1)
    assert snapshot(fake_host) != before, "the wrapper should have made something"
    down = tlc_in(fake_host, dirs, "host", "teardown")
    assert down.returncode == 0, down.stderr
    assert snapshot(fake_host) == before
    assert not (dirs.state / "tempest").exists()
