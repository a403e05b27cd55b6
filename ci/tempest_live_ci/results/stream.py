"""Read a subunit v2 stream with python-subunit's parser into one record per test.

The stream may have been cut anywhere (the guest died, the SSH connection
dropped): every finished result is kept, tests that started and never ended
are reported as incomplete, a packet cut in half is a stream error.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, Any

import subunit
import testtools

from tempest_live_ci.results.model import (
    ERROR,
    FAILED,
    INCOMPLETE,
    PASSED,
    SKIPPED,
    UXSUCCESS,
    XFAIL,
    StreamData,
    TestRecord,
    fixture_target,
)

_STATUS = {
    "success": PASSED,
    "fail": FAILED,
    "skip": SKIPPED,
    "xfail": XFAIL,
    "uxsuccess": UXSUCCESS,
    "inprogress": INCOMPLETE,
    # Only attachments arrived for this test: it started, its end is lost.
    "unknown": INCOMPLETE,
}

# python-subunit reports a packet it cannot parse as a failing pseudo-test.
_PARSER_ID = "subunit.parser"

# Statuses after which more events of the test follow.
_INTERIM = (None, "inprogress")

# Enough of the stray output to explain a crash, not a whole log.
_STRAY_LIMIT = 64 * 1024


class _Collector(testtools.StreamResult):  # type: ignore[misc]
    """Each test's events gathered into one dict, and what lies outside tests.

    What testtools.StreamToDict does (same keys and rules: events keyed by
    test id and route code, a test ends at its first final status, tests
    still open at the end are flushed with no end time), plus the output
    between packets and the parser's errors, which StreamToDict drops. In one
    pass, without StreamToDict's Content objects: a tempest stream has
    thousands of tests, and `results junit` is to be as fast as
    subunit2junitxml.
    """

    def __init__(self, on_test: Callable[[dict[str, Any]], None]) -> None:
        super().__init__()
        self.on_test = on_test
        self.open: dict[tuple[str, str | None], dict[str, Any]] = {}
        self.stray: list[bytes] = []
        self.stray_size = 0
        self.parser_errors: list[str] = []

    def status(self, test_id: str | None = None, test_status: str | None = None,
               test_tags: set[str] | None = None, runnable: bool = True,
               file_name: str | None = None, file_bytes: bytes | None = None,
               eof: bool = False, mime_type: str | None = None, route_code: str | None = None,
               timestamp: datetime | None = None) -> None:
        if test_id is None:
            if file_bytes:
                # Keep the tail: the last words before a crash matter most.
                self.stray.append(file_bytes)
                self.stray_size += len(file_bytes)
                while self.stray_size > _STRAY_LIMIT and len(self.stray) > 1:
                    self.stray_size -= len(self.stray.pop(0))
            return
        if test_id == _PARSER_ID:
            if file_name == "Parser Error" and file_bytes:
                self.parser_errors.append(file_bytes.decode("utf-8", errors="replace"))
            return
        key = (test_id, route_code)
        test = self.open.get(key)
        if test is None:
            test = self.open[key] = {"id": test_id, "status": "unknown", "tags": set(),
                                     "details": {}, "timestamps": (timestamp, None)}
        if test_status is not None:
            test["status"] = test_status
        test["timestamps"] = (test["timestamps"][0], timestamp)
        if file_name is not None and file_bytes:
            test["details"].setdefault(file_name, []).append(file_bytes)
        if test_tags is not None:
            test["tags"] = test_tags
        if test_status not in _INTERIM:
            self.on_test(self.open.pop(key))

    def stopTestRun(self) -> None:
        # Tests still open when the stream ends: they never finished.
        while self.open:
            test = self.open.popitem()[1]
            test["timestamps"] = (test["timestamps"][0], None)
            self.on_test(test)


def _record(test: Mapping[str, Any]) -> TestRecord:
    status = _STATUS[test["status"]]
    if status == FAILED and fixture_target(test["id"]) is not None:
        status = ERROR
    start, end = test["timestamps"]
    details = {name: b"".join(chunks).decode("utf-8", errors="replace")
               for name, chunks in test["details"].items()}
    if status == UXSUCCESS:
        details.setdefault("reason", "marked as an expected failure, but passed")
    if status == INCOMPLETE:
        details.setdefault(
            "reason", "the stream ended while this test was running (worker or guest died)"
        )
    return TestRecord(
        id=test["id"],
        status=status,
        start=start if isinstance(start, datetime) else None,
        end=end if isinstance(end, datetime) else None,
        tags=tuple(sorted(test["tags"] or ())),
        details=details,
    )


def read_stream(source: bytes | Path | IO[bytes]) -> StreamData:
    """Parse a subunit v2 stream (bytes, a file path or a binary file object)."""
    if isinstance(source, Path):
        with source.open("rb") as f:
            return read_stream(f)
    if isinstance(source, bytes):
        source = io.BytesIO(source)

    results: dict[str, TestRecord] = {}
    listed: dict[str, None] = {}

    def on_test(test: dict[str, Any]) -> None:
        test_id = test["id"]
        if test["status"] == "exists":
            listed[test_id] = None
            return
        record = _record(test)
        previous = results.get(test_id)
        # A test reported twice (two workers, a replayed stream) keeps its
        # worst result: a failure must never be hidden by a later success.
        if previous is None or previous.status in (PASSED, SKIPPED, XFAIL):
            results[test_id] = record

    collector = _Collector(on_test)
    collector.startTestRun()
    try:
        subunit.ByteStreamToStreamResult(source, non_subunit_name="stdout").run(collector)
    finally:
        # Flushes tests still in progress as "inprogress".
        collector.stopTestRun()

    return StreamData(
        records=tuple(results.values()),
        not_run=tuple(t for t in listed if t not in results),
        stream_errors=tuple(collector.parser_errors),
        stray_output=b"".join(collector.stray).decode("utf-8", errors="replace"),
    )
