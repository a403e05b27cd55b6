"""Read a subunit v2 stream with python-subunit's parser into one record per test.

The stream may have been cut anywhere (the guest died, the SSH connection
dropped): every finished result is kept, tests that started and never ended
are reported as incomplete, a packet cut in half is a stream error (with
the byte it starts at).

The stream comes from a guest that runs the packages under test: a file
named like a stream is read only if it is a regular file (no link, FIFO or
device) of at most files.STREAM_LIMIT bytes, and the reading stops after
READ_TIME_LIMIT seconds.
"""

from __future__ import annotations

import io
import re
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from tempest_live_ci.errors import UsageError
from tempest_live_ci.files import STREAM_LIMIT, open_regular
from tempest_live_ci.lazy import lazy_module
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

if TYPE_CHECKING:
    import subunit
else:
    subunit = lazy_module("subunit")

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

# A stream of 20,000 tests reads in well under a second; one that takes ten
# minutes is not a stream.
READ_TIME_LIMIT = 600.0

_SIGNATURE = b"\xb3"
_BLOCK = 1024 * 1024


class _Collector:
    """Each test's events gathered into one dict, and what lies outside tests.

    What testtools.StreamToDict does (same keys and rules: events keyed by
    test id and route code, a test ends at its first final status, tests
    still open at the end are flushed with no end time), plus the output
    between packets and the parser's errors, which StreamToDict drops. In one
    pass, without StreamToDict's Content objects: a tempest stream has
    thousands of tests, and `results junit` is to be as fast as
    subunit2junitxml.

    A testtools.StreamResult by its methods (startTestRun, status,
    stopTestRun), all that python-subunit's parser calls: that base class is
    empty, and subclassing it would import testtools (half a second) with
    this module, not when a stream is read (lazy.py).
    """

    def __init__(self, on_test: Callable[[dict[str, Any]], None]) -> None:
        self.on_test = on_test
        self.open: dict[tuple[str, str | None], dict[str, Any]] = {}
        self.stray: list[bytes] = []
        self.stray_size = 0
        self.parser_errors: list[str] = []
        # The stream, and where the packet being parsed starts: what a parser error names.
        self.label = "the stream"
        self.offset = 0

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
                self.parser_errors.append(f"{self.label} at byte {self.offset}: "
                                          f"{file_bytes.decode('utf-8', errors='replace')}")
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

    def startTestRun(self) -> None:
        pass

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


def _packet_length(header: bytes) -> int:
    """The length of the packet whose first 6 bytes are `header` (signature, flags, the
    start of its length): what python-subunit's parser reads for it, at least those 6."""
    if len(header) < 6:
        return len(header)
    first = header[3]
    kind, value = first & 0xC0, first & 0x3F
    if kind == 0x00:
        length = value
    elif kind == 0x40:
        length = value << 8 | header[4]
    elif kind == 0x80:
        length = value << 16 | int.from_bytes(header[4:6], "big")
    else:  # a 4-byte length, which the parser refuses after the header
        return 6
    return max(length, 6)


# Output between packets, up to the next signature byte (0xb3) that starts a
# packet. python-subunit's loop feeds that output to a UTF-8 decoder a byte
# at a time, and a 0xb3 that comes while a character is unfinished is text
# ("ó" is c3 b3): a character (or the start of one, however it ends), or any
# other byte. A character is tried before a lone byte.
_TEXT = re.compile(
    rb"(?:[\xc2-\xdf][\x80-\xbf]"
    rb"|\xe0[\xa0-\xbf][\x80-\xbf]?|[\xe1-\xec\xee\xef][\x80-\xbf]{1,2}|\xed[\x80-\x9f][\x80-\xbf]?"
    rb"|\xf0[\x90-\xbf][\x80-\xbf]{0,2}|[\xf1-\xf3][\x80-\xbf]{1,3}|\xf4[\x80-\x8f][\x80-\xbf]{0,2}"
    rb"|[\xed\xf4]\xb3|[^\xb3])*"
)


def _parse(source: IO[bytes], collector: _Collector, label: str, deadline: float) -> None:
    """Feed `source` to python-subunit's packet parser one packet at a time.

    What lies between packets goes to the collector in blocks (python-subunit's
    own loop reads it a byte at a time: seconds a MiB).
    """
    parser = subunit.ByteStreamToStreamResult(io.BytesIO(), non_subunit_name="stdout")
    collector.label = label
    buffer, offset, pos, eof = b"", 0, 0, False  # offset: where buffer starts in the stream

    def have(n: int) -> bool:
        """At least n bytes from pos in the buffer (fewer at the end of the stream)?"""
        nonlocal buffer, offset, pos, eof
        while len(buffer) - pos < n and not eof:
            block = source.read(max(_BLOCK, n))
            eof = not block
            buffer, offset, pos = buffer[pos:] + block, offset + pos, 0
        return len(buffer) - pos >= n

    while have(1):
        if time.monotonic() > deadline:
            raise UsageError(f"{label}: still not read after {READ_TIME_LIMIT:.0f} s "
                             f"(at byte {offset + pos}): not a stream the results stage reads")
        if buffer[pos] != _SIGNATURE[0]:
            # Output between packets (after a packet, or up to a signature byte
            # that starts one: a packet follows).
            found = buffer.find(_SIGNATURE, pos)
            if found == -1:
                end = len(buffer)
            else:
                # A character holds 4 bytes at most: from 4 bytes before the
                # signature byte on, the output splits into characters as it
                # does from where it began.
                match = _TEXT.match(buffer, max(pos, found - 4))
                end = match.end() if match else found
            if end == len(buffer) and not eof:
                # The last bytes may be a character the next block finishes:
                # it is decided with them, from the byte that starts it.
                starts = [k for k in range(max(pos, end - 3), end)
                          if not 0x80 <= buffer[k] <= 0xBF]
                end = starts[-1] if starts else end
                if end == pos:
                    have(len(buffer) - pos + 1)
                    continue
            collector.status(file_name="stdout", file_bytes=buffer[pos:end])
            pos = end
            continue
        have(6)
        length = _packet_length(buffer[pos:pos + 6])
        have(length)
        packet = buffer[pos:pos + length]
        collector.offset = offset + pos
        parser.source = io.BytesIO(packet)
        parser.run(collector)
        pos += len(packet)


def read_stream(source: bytes | Path | IO[bytes], *, follow: bool = False) -> StreamData:
    """Parse a subunit v2 stream (bytes, a file path or a binary file object).

    A path must name a regular file of at most files.STREAM_LIMIT bytes;
    follow=True accepts a symbolic link to one (a path the user named).
    """
    if isinstance(source, Path):
        with open_regular(source, limit=STREAM_LIMIT, follow=follow) as f:
            return _read(f, source.name)
    if isinstance(source, bytes):
        return _read(io.BytesIO(source), "the stream")
    return _read(source, "the stream")


def _read(source: IO[bytes], label: str) -> StreamData:
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
        _parse(source, collector, label, time.monotonic() + READ_TIME_LIMIT)
    finally:
        # Flushes tests still in progress as "inprogress".
        collector.stopTestRun()

    return StreamData(
        records=tuple(results.values()),
        not_run=tuple(t for t in listed if t not in results),
        stream_errors=tuple(collector.parser_errors),
        stray_output=b"".join(collector.stray).decode("utf-8", errors="replace"),
    )
