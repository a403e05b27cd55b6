"""Host memory promised to one run at a time (vm/reservation.py), with real processes.

The runs holding promises here are real processes (a promise is theirs while they
live: registry.py); the
one "guest" is a real process named like libvirt names a guest's qemu
(guest=<run id>,) that really holds memory: qemu itself would need a boot.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from tempest_live_ci import registry
from tempest_live_ci.vm.reservation import MemoryPromise, MemoryTaken, promise_memory, qemu_rss_mib

from ...conftest import TOP, Dirs


def promised() -> dict[str, int]:
    """The recorded promises: run id → MiB."""
    return {e.resource.name: e.resource.memory_mib for e in registry.entries()
            if isinstance(e.resource, MemoryPromise)}

HOLDER = textwrap.dedent("""
    import sys, time
    from tempest_live_ci.vm.reservation import promise_memory
    with promise_memory(sys.argv[1], int(sys.argv[2]), 0, available_mib=int(sys.argv[3])):
        print("held", flush=True)
        time.sleep(600)
""")


@pytest.fixture
def holders(dirs: Dirs) -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()


def hold(holders: list[subprocess.Popen[str]], run_id: str, memory: int,
         available: int = 100_000) -> subprocess.Popen[str]:
    """A process that promises `memory` MiB to `run_id` and keeps it until killed."""
    process = subprocess.Popen(
        [sys.executable, "-c", HOLDER, run_id, str(memory), str(available)],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(TOP / "ci")})
    holders.append(process)
    assert process.stdout is not None and process.stdout.readline() == "held\n"
    return process


def test_a_second_run_counts_what_the_first_was_promised(
        dirs: Dirs, holders: list[subprocess.Popen[str]]) -> None:
    first = hold(holders, "tlc-0000000a", 6000)
    assert promised() == {"tlc-0000000a": 6000}
    with (
        pytest.raises(MemoryTaken) as taken,
        promise_memory("tlc-0000000b", 5000, 0, available_mib=10_000),
    ):
        pass
    assert taken.value.available_mib == 4000
    assert [(p.run_id, p.outstanding_mib) for p in taken.value.promises] == [("tlc-0000000a", 6000)]
    assert promised() == {"tlc-0000000a": 6000}
    # What is left fits; and the promise ends with the block.
    with promise_memory("tlc-0000000b", 4000, 0, available_mib=10_000) as promise:
        assert promise.memory_mib == 4000
        assert promised() == {"tlc-0000000a": 6000, "tlc-0000000b": 4000}
    assert promised() == {"tlc-0000000a": 6000}
    # The reserve the host keeps counts too.
    with (
        pytest.raises(MemoryTaken),
        promise_memory("tlc-0000000b", 4000, 1, available_mib=10_000),
    ):
        pass
    first.send_signal(signal.SIGTERM)
    first.wait()


def test_a_killed_run_promises_nothing_and_its_record_goes(
        dirs: Dirs, holders: list[subprocess.Popen[str]]) -> None:
    first = hold(holders, "tlc-0000000a", 6000)
    first.kill()
    first.wait()
    # SIGKILL: the record stays, its owner is gone.
    assert promised() == {"tlc-0000000a": 6000}
    with promise_memory("tlc-0000000b", 9000, 0, available_mib=10_000):
        assert promised() == {"tlc-0000000b": 9000}


def test_two_runs_checking_at_once_cannot_both_take_the_same_memory(
        dirs: Dirs, holders: list[subprocess.Popen[str]]) -> None:
    """Ten processes ask for 3000 of 10000 MiB at the same moment: exactly three get it."""
    go = Path(dirs.top) / "go"
    script = textwrap.dedent("""
        import os, sys, time
        from tempest_live_ci.vm.reservation import MemoryTaken, promise_memory
        while not os.path.exists(sys.argv[2]):
            time.sleep(0.001)
        try:
            with promise_memory(sys.argv[1], 3000, 0, available_mib=10_000):
                print("got", flush=True)
                time.sleep(600)
        except MemoryTaken:
            print("refused", flush=True)
    """)
    processes = [subprocess.Popen([sys.executable, "-c", script, f"tlc-1000000{i}", str(go)],
                                  stdout=subprocess.PIPE, text=True,
                                  env={**os.environ, "PYTHONPATH": str(TOP / "ci")})
                 for i in range(10)]
    holders.extend(processes)
    go.touch()
    answers = []
    for process in processes:
        assert process.stdout is not None
        answers.append(process.stdout.readline().strip())
    assert sorted(answers) == ["got"] * 3 + ["refused"] * 7


def test_what_a_guest_already_holds_is_not_counted_twice(
        dirs: Dirs, holders: list[subprocess.Popen[str]]) -> None:
    # Named the way libvirt names qemu: -name guest=<domain>,debug-threads=on
    guest = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time; b = bytearray(300 << 20); b[::4096] = b'x' * len(b[::4096]); "
         "print('up', flush=True); time.sleep(600)",
         "-name", "guest=tlc-0000000c,debug-threads=on"],
        stdout=subprocess.PIPE, text=True)
    holders.append(guest)
    assert guest.stdout is not None and guest.stdout.readline() == "up\n"
    rss = qemu_rss_mib("tlc-0000000c")
    assert 300 <= rss < 400
    assert qemu_rss_mib("tlc-0000000d") == 0
    hold(holders, "tlc-0000000c", 1000)
    with (
        pytest.raises(MemoryTaken) as taken,
        promise_memory("tlc-0000000b", 100_000, 0, available_mib=10_000),
    ):
        pass
    (promise,) = taken.value.promises
    assert promise.used_mib == rss and promise.outstanding_mib == 1000 - rss
    assert taken.value.available_mib == 10_000 - (1000 - rss)


@pytest.mark.root  # `run` and `cleanup` check for root first
def test_run_refuses_memory_promised_to_another_run_and_cleanup_removes_a_dead_promise(
        tlc, dirs: Dirs, holders: list[subprocess.Popen[str]], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    available = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                         if line.startswith("MemAvailable:"))) // 1024
    # The other run was promised all but 3 GiB of what is free; this one asks for 4 GiB
    # (and the host keeps its reserve): it would fit without the promise.
    other = hold(holders, "tlc-0000000a", available - 3072, available=10 * available)
    job = tmp_path / "second.yaml"
    job.write_text("name: second\nvm:\n  memory: 4G\n")
    result = tlc("run", str(job), "--output", str(tmp_path / "out"))
    assert result.returncode == 20, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert f"{job}: vm.memory: 4G does not fit" in errors[0]
    assert "tlc-0000000a" in errors[0]
    assert "Preparing the image" not in result.stderr
    assert promised() == {"tlc-0000000a": available - 3072}
    # Killed: cleanup finds the promise of a run that is gone and removes it.
    other.kill()
    other.wait()
    assert "tlc-0000000a: host memory promised to a run that is gone" in \
        tlc("cleanup", "--dry-run").stdout
    result = tlc("cleanup")
    assert result.returncode == 0, result.stderr
    assert f"tlc-0000000a: removed memory promise of {available - 3072} MiB" in result.stdout
    assert promised() == {}
