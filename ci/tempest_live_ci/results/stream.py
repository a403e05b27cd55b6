"""Read a subunit v2 stream with python-subunit into testtools results.

The stream may have been cut anywhere (the guest died, the SSH connection
dropped): every finished result is kept, tests that started and never ended
are reported as incomplete, a packet cut in half is a stream error.
"""

from __future__ import annotations

import io
from collections.abc import Mapping
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

# Enough of the stray output to explain a crash, not a whole log.
_STRAY_LIMIT = 64 * 1024


def _content_text(content: Any) -> str:
    return b"".join(content.iter_bytes()).decode("utf-8", errors="replace")


class _StreamExtras(testtools.StreamResult):  # type: ignore[misc]
    """What StreamToDict drops: output between packets and parser errors."""

    def __init__(self) -> None:
        super().__init__()
        self.stray: list[bytes] = []
        self.stray_size = 0
        self.parser_errors: list[str] = []

    def status(self, test_id: str | None = None, test_status: str | None = None,
               file_name: str | None = None, file_bytes: bytes | None = None,
               **kwargs: Any) -> None:
        if test_id is None and file_bytes:
            # Keep the tail: the last words before a crash matter most.
            self.stray.append(file_bytes)
            self.stray_size += len(file_bytes)
            while self.stray_size > _STRAY_LIMIT and len(self.stray) > 1:
                self.stray_size -= len(self.stray.pop(0))
        elif test_id == _PARSER_ID and file_name == "Parser Error" and file_bytes:
            self.parser_errors.append(file_bytes.decode("utf-8", errors="replace"))


def _record(test: Mapping[str, Any]) -> TestRecord:
    status = _STATUS[test["status"]]
    if status == FAILED and fixture_target(test["id"]) is not None:
        status = ERROR
    start, end = test["timestamps"]
    details = {name: _content_text(content) for name, content in test["details"].items()}
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
        if test_id == _PARSER_ID:
            return
        if test["status"] == "exists":
            listed[test_id] = None
            return
        record = _record(test)
        previous = results.get(test_id)
        # A test reported twice (two workers, a replayed stream) keeps its
        # worst result: a failure must never be hidden by a later success.
        if previous is None or previous.status in (PASSED, SKIPPED, XFAIL):
            results[test_id] = record

    extras = _StreamExtras()
    target = testtools.CopyStreamResult([testtools.StreamToDict(on_test), extras])
    target.startTestRun()
    try:
        subunit.ByteStreamToStreamResult(source, non_subunit_name="stdout").run(target)
    finally:
        # Flushes tests still in progress as "inprogress".
        target.stopTestRun()

    return StreamData(
        records=tuple(results.values()),
        not_run=tuple(t for t in listed if t not in results),
        stream_errors=tuple(extras.parser_errors),
        stray_output=b"".join(extras.stray).decode("utf-8", errors="replace"),
    )
