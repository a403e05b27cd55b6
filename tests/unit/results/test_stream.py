"""Reading real stestr streams: counts agree with python-subunit's subunit-stats."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from conftest import Streams, subunit_stats
from tempest_live_ci.errors import ExitCode
from tempest_live_ci.results.model import (
    ERROR,
    FAILED,
    INCOMPLETE,
    PASSED,
    SKIPPED,
    UXSUCCESS,
    XFAIL,
    service_of,
)
from tempest_live_ci.results.run import load_run
from tempest_live_ci.results.stream import read_stream
from tempest_live_ci.results.summary import exit_code


@pytest.mark.parametrize("name", [
    "passing", "passing_live", "all_skipped", "all_skipped_live", "import_error_stestr",
    "import_error_subunit_run", "worker_died", "evolving_v1", "evolving_v2",
])
def test_counts_agree_with_subunit_stats(streams: Streams, name: str) -> None:
    path = getattr(streams, name)
    stats = subunit_stats(path)
    data = read_stream(path)
    mine = {s: sum(r.status == s for r in data.records)
            for s in (PASSED, FAILED, ERROR, SKIPPED, XFAIL, UXSUCCESS, INCOMPLETE)}
    # subunit-stats counts expected failures and unexpected successes as
    # passed, errors and unfinished tests as failed.
    assert stats == {
        "total": len(data.records),
        "passed": mine[PASSED] + mine[XFAIL] + mine[UXSUCCESS],
        "failed": mine[FAILED] + mine[ERROR] + mine[INCOMPLETE],
        "skipped": mine[SKIPPED],
    }


def test_mixed_run_every_status(streams: Streams) -> None:
    data = read_stream(streams.mixed)
    status = {r.id: r.status for r in data.records}
    tokens = "tempest.api.identity.v3.test_tokens.TokensV3Test."
    assert status[tokens + "test_create_token[smoke]"] == PASSED
    assert status[tokens + "test_validate_token"] == FAILED
    assert status[tokens + "test_token_v2"] == SKIPPED
    assert status[tokens + "test_known_bug"] == XFAIL
    assert status[tokens + "test_bug_fixed"] == UXSUCCESS
    fixture = "setUpClass (tempest.scenario.test_network_basic_ops.TestNetworkBasicOps)"
    assert status[fixture] == ERROR
    records = {r.id: r for r in data.records}
    assert "token mismatch" in records[tokens + "test_validate_token"].failure_text
    assert "quota exceeded" in records[fixture].failure_text
    assert records[tokens + "test_token_v2"].reason == "identity v2 API is disabled"
    assert (records["tempest.api.network.test_ports.PortsTest.test_create_port"].duration
            or 0) >= 0.3


def test_duplicate_fixture_failure_counted_once(streams: Streams) -> None:
    # Two workers each ran the class's setUpClass: subunit-stats counts two
    # failures, the report one failing fixture.
    with streams.mixed.open("rb") as f:
        ids = subprocess.run(["subunit-ls"], stdin=f, capture_output=True, text=True,
                             timeout=60).stdout.splitlines()
    data = read_stream(streams.mixed)
    assert len(ids) == subunit_stats(streams.mixed)["total"]
    assert sorted(set(ids)) == sorted(r.id for r in data.records)


def test_live_stream_lists_tests_hidden_by_fixture_failure(streams: Streams) -> None:
    run = load_run(streams.mixed_live)
    assert run.complete
    assert sorted(run.not_run_explained) == [
        "tempest.scenario.test_network_basic_ops.TestNetworkBasicOps.test_hotplug_nic",
        "tempest.scenario.test_network_basic_ops.TestNetworkBasicOps.test_network_basic_ops",
    ]


def test_worker_died_mid_test(streams: Streams) -> None:
    run = load_run(streams.worker_died)
    assert not run.complete
    routers = "tempest.api.network.test_routers.RoutersTest."
    assert [r.id for r in run.incomplete_tests] == [routers + "test_b_update_router"]
    assert run.not_run == (routers + "test_c_delete_router",)
    assert run.statuses()[routers + "test_a_create_router"] == PASSED


def test_stream_cut_inside_a_packet_keeps_finished_results(streams: Streams) -> None:
    full = read_stream(streams.mixed_live)
    cut = read_stream(streams.cut)
    assert cut.stream_errors and "Short read" in cut.stream_errors[0]
    ports = streams.cut_test
    statuses = {r.id: r.status for r in cut.records}
    assert statuses[ports] == INCOMPLETE
    # Everything that had finished before the cut is there, unchanged.
    finished_before = {r.id: r.status for r in full.records if r.id in statuses and r.id != ports}
    assert finished_before == {k: v for k, v in statuses.items() if k != ports}
    assert len(finished_before) >= 5


@pytest.mark.parametrize("length", [0, 1, 2, 7, 100])
def test_any_prefix_of_a_stream_is_readable(streams: Streams, length: int) -> None:
    data = streams.mixed_live.read_bytes()[:length]
    read_stream(data)  # never raises, whatever the cut


def test_every_cut_point_is_a_testbed_failure(streams: Streams, tmp_path: Path) -> None:
    # Wherever the guest dies, the run is never reported as passed or failed:
    # incomplete (16), or "no test ran" (8) before the first packet.
    data = streams.worker_died.read_bytes()
    codes = set()
    for end in range(0, len(data) + 1, 3):
        run = load_run(_write(tmp_path / "s.subunit", data[:end]))
        code = exit_code(run)
        assert code == (ExitCode.NO_TESTS if end == 0 else ExitCode.TESTBED), end
        codes.add(code)
    assert codes == {ExitCode.NO_TESTS, ExitCode.TESTBED}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_discovery_failure_keeps_runner_output(streams: Streams) -> None:
    data = read_stream(streams.import_error_stestr)
    assert data.records == ()
    assert "tempest.scenario.test_broken" in data.stray_output
    failed_import = read_stream(streams.import_error_subunit_run)
    errors = [r for r in failed_import.records if r.status == ERROR]
    assert [service_of(r.id) for r in errors] == ["tempest.scenario"]
    assert "tempest_no_such_module" in errors[0].failure_text


@pytest.mark.parametrize(("test_id", "service"), [
    ("tempest.api.compute.servers.test_servers.ServersTest.test_x[id-1,smoke]",
     "tempest.api.compute"),
    ("tempest.api.identity.v3.test_tokens.T.test_y", "tempest.api.identity"),
    ("tempest.scenario.test_minimum_basic.TestMinimumBasicScenario.test_z", "tempest.scenario"),
    ("setUpClass (tempest.api.network.test_ports.PortsTest)", "tempest.api.network"),
    ("unittest.loader._FailedTest.tempest.api.volume.test_volumes", "tempest.api.volume"),
    ("keystone_tempest_plugin.tests.api.identity.v3.test_x.T.test", "keystone_tempest_plugin"),
])
def test_service_of(test_id: str, service: str) -> None:
    assert service_of(test_id) == service
