"""tempest.subunit written as it arrives, counted live: real subunit v2 bytes, cut anywhere."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import pytest
import subunit  # type: ignore[import-untyped]

from tempest_live_ci.guest.progress import SubunitSink
from tempest_live_ci.results.stream import read_stream

OUTCOMES = [("tempest.api.identity.v3.test_tokens.T.test_a[id-1,smoke]", "success"),
            ("tempest.api.identity.v3.test_tokens.T.test_b[id-2]", "fail"),
            ("tempest.api.identity.v3.test_users.U.test_c[id-3]", "skip"),
            ("tempest.api.identity.v3.test_users.U.test_d[id-4]", "success")]


def stream_bytes(finished: int) -> bytes:
    """What stestr sends: every test listed, then inprogress/final status per test."""
    out = io.BytesIO()
    writer = subunit.StreamResultToBytes(out)
    for test_id, _ in OUTCOMES:
        writer.status(test_id=test_id, test_status="exists")
    for i, (test_id, status) in enumerate(OUTCOMES):
        writer.status(test_id=test_id, test_status="inprogress")
        if i < finished:
            writer.status(test_id=test_id, test_status=status)
    return out.getvalue()


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_bytes_land_on_disk_as_they_come_and_are_counted(tmp_path: Path, chunk: int,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    data = stream_bytes(finished=len(OUTCOMES))
    path = tmp_path / "tempest.subunit"
    sink = SubunitSink(path, every=0)
    with caplog.at_level(logging.DEBUG, logger="tempest-live-ci"):
        for start in range(0, len(data), chunk):
            sink.write(data[start:start + chunk])
            # Flushed at every write: a reader sees everything written so far.
            assert path.stat().st_size == min(start + chunk, len(data))
        sink.close()
    assert path.read_bytes() == data
    assert dict(sink.counter.counts) == {"passed": 2, "failed": 1, "skipped": 1}
    assert sink.counter.line() == "4 tests done: 2 passed, 1 failed, 1 skipped; 0 running"
    assert any("test_b" in r.getMessage() and r.levelno == logging.WARNING
               for r in caplog.records)


def test_a_stream_cut_mid_run_names_the_test_still_running(tmp_path: Path) -> None:
    data = stream_bytes(finished=2)
    path = tmp_path / "tempest.subunit"
    sink = SubunitSink(path)
    sink.write(data[:-3])  # the guest died in the middle of a packet
    sink.close()
    # Test 2 had started; test 3's start packet is the one cut short.
    assert sink.running == [OUTCOMES[2][0]]
    parsed = read_stream(path)
    statuses = {r.id: r.status for r in parsed.records}
    assert statuses[OUTCOMES[0][0]] == "passed" and statuses[OUTCOMES[1][0]] == "failed"
