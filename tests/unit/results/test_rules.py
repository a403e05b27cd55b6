"""The rules of the results stage, each on the smallest stream that shows it.

Streams made with python-subunit's StreamResultToBytes (tests/subunitgen.py):
no stestr run, a few milliseconds each.
"""

from __future__ import annotations

from pathlib import Path

from tests.subunitgen import failed, listed, passed, running, skipped, xfail

from tempest_live_ci.errors import ExitCode
from tempest_live_ci.results import process_run
from tempest_live_ci.results.flaky import merge_reruns
from tempest_live_ci.results.stream import read_stream
from tempest_live_ci.results.summary import build_summary

CLASS = "tempest.api.compute.servers.test_servers.ServersTest"
FIXTURE = f"setUpClass ({CLASS})"


def test_an_expected_failure_is_a_test_that_ran(tmp_path: Path) -> None:
    # A known bug that still fails: tested, not "no tests" (exit 8).
    run = merge_reruns(read_stream(xfail(f"{CLASS}.test_known_bug") + skipped(f"{CLASS}.test_b")))
    summary = build_summary(run)
    assert summary["exit_code"] == ExitCode.OK
    assert summary["verdict"] == "PASSED: all tests passed"
    assert summary["counts"]["xfail"] == 1


def test_only_skips_are_no_tests() -> None:
    run = merge_reruns(read_stream(skipped(f"{CLASS}.test_a") + skipped(f"{CLASS}.test_b")))
    assert build_summary(run)["exit_code"] == ExitCode.NO_TESTS


def test_a_class_fixture_passes_a_rerun_only_if_all_its_tests_ran_again() -> None:
    first = read_stream(listed([f"{CLASS}.test_a", f"{CLASS}.test_b"]) + failed(FIXTURE))
    # The re-run ran one of the two tests the fixture had stopped.
    rerun = read_stream(passed(f"{CLASS}.test_a"))
    fixture = merge_reruns(first, [rerun]).statuses()
    assert fixture[FIXTURE] == "error"
    record = next(r for r in merge_reruns(first, [rerun]).records if r.id == FIXTURE)
    assert record.attempts == ("error", "incomplete")


def test_a_class_fixture_whose_tests_all_passed_again_is_flaky() -> None:
    first = read_stream(listed([f"{CLASS}.test_a", f"{CLASS}.test_b"]) + failed(FIXTURE))
    rerun = read_stream(passed(f"{CLASS}.test_a") + passed(f"{CLASS}.test_b"))
    run = merge_reruns(first, [rerun])
    assert run.statuses()[FIXTURE] == "flaky"
    assert run.not_run_explained == (f"{CLASS}.test_a", f"{CLASS}.test_b")


def _rerun_recorder(calls: list[str]):  # type: ignore[no-untyped-def]
    def rerun(load_list: Path) -> bytes:
        calls.append(load_list.read_text())
        return passed(f"{CLASS}.test_a")

    return rerun


def test_nothing_is_rerun_after_the_guest_died(tmp_path: Path) -> None:
    # A test still running when the stream ended: the guest (or its worker) died.
    stream = tmp_path / "tempest.subunit"
    stream.write_bytes(failed(f"{CLASS}.test_a") + running(f"{CLASS}.test_b"))
    calls: list[str] = []
    result = process_run(stream, tmp_path, {}, rerun=_rerun_recorder(calls), rerun_attempts=2)
    assert calls == []
    assert result.exit_code == ExitCode.TESTBED
    assert not list(tmp_path.glob("tempest-rerun-*"))


def test_nothing_is_rerun_after_the_connection_was_lost(tmp_path: Path) -> None:
    stream = tmp_path / "tempest.subunit"
    stream.write_bytes(failed(f"{CLASS}.test_a"))
    calls: list[str] = []
    result = process_run(stream, tmp_path, {}, rerun=_rerun_recorder(calls), rerun_attempts=2,
                         interrupted=True)
    assert calls == []
    assert result.exit_code == ExitCode.TESTBED


def test_a_failure_of_a_finished_run_is_rerun(tmp_path: Path) -> None:
    # The counterpart of the two above: the guard stops only what it should.
    stream = tmp_path / "tempest.subunit"
    stream.write_bytes(failed(f"{CLASS}.test_a"))
    calls: list[str] = []
    result = process_run(stream, tmp_path, {}, rerun=_rerun_recorder(calls), rerun_attempts=2)
    assert calls == [f"{CLASS}.test_a\n"]
    assert result.run.statuses()[f"{CLASS}.test_a"] == "flaky"
