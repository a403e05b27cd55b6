"""tempest.subunit written as it arrives, and a live count of the tests on stderr.

The stream from the guest goes to disk chunk by chunk (flushed each time), so
a guest that dies mid-run leaves a partial stream that still reads. A copy
goes through a pipe to python-subunit's parser in a thread, which counts the
finished tests and reports them while tempest runs.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections import Counter
from pathlib import Path
from typing import IO, Any

import subunit  # type: ignore[import-untyped]
import testtools  # type: ignore[import-untyped]

from tempest_live_ci import files
from tempest_live_ci.log import log

FINAL = {"success": "passed", "fail": "failed", "skip": "skipped", "xfail": "passed",
         "uxsuccess": "failed"}
REPORT_EVERY = 30.0  # seconds between progress lines on the console


class _Counter(testtools.StreamResult):  # type: ignore[misc]
    def __init__(self, every: float) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()
        self.running: set[str] = set()
        self.every = every
        self.reported = time.monotonic()

    def status(self, test_id: str | None = None, test_status: str | None = None,
               **_: Any) -> None:
        if test_id is None or test_status is None:
            return
        if test_status == "inprogress":
            self.running.add(test_id)
            return
        if test_status not in FINAL:
            return
        self.running.discard(test_id)
        outcome = FINAL[test_status]
        self.counts[outcome] += 1
        if outcome == "failed":
            log.warning("tempest: %s %s", test_id, test_status)
        else:
            log.debug("tempest: %s %s", test_id, test_status)
        if time.monotonic() - self.reported >= self.every:
            self.report()

    def line(self) -> str:
        c = self.counts
        return (f"{sum(c.values())} tests done: {c['passed']} passed, {c['failed']} failed, "
                f"{c['skipped']} skipped; {len(self.running)} running")

    def report(self) -> None:
        self.reported = time.monotonic()
        log.info("tempest: %s", self.line())


class SubunitSink(files.Recorded):
    """A writable stream: bytes to `path` (flushed per write) and to a live parser."""

    def __init__(self, path: Path, *, every: float = REPORT_EVERY) -> None:
        # The run's output directory may be one given with --output: what is there
        # already (a link to /etc/passwd named tempest.subunit) is replaced, never written.
        super().__init__(files.create(path))
        self.path = path
        self.bytes = 0
        self.counter = _Counter(every)
        read_fd, write_fd = os.pipe()
        self._pipe: IO[bytes] | None = os.fdopen(write_fd, "wb", buffering=0)
        self._thread = threading.Thread(target=self._parse, args=(os.fdopen(read_fd, "rb"),),
                                        name="subunit-progress", daemon=True)
        self._thread.start()

    def _parse(self, stream: IO[bytes]) -> None:
        with stream:
            try:
                subunit.ByteStreamToStreamResult(stream, non_subunit_name="stdout").run(
                    self.counter)
            except Exception as e:
                log.debug("live subunit parser stopped: %s", e)
            # Keep draining so that writers never block on a full pipe.
            while stream.read(65536):
                pass

    def take(self, data: bytes) -> None:
        self.bytes += len(data)
        if self._pipe is not None:
            try:
                self._pipe.write(data)
            except BrokenPipeError:
                self._pipe = None

    @property
    def running(self) -> list[str]:
        return sorted(self.counter.running)

    def close(self) -> None:
        if self.closed:
            return
        if self._pipe is not None:
            with contextlib.suppress(OSError):
                self._pipe.close()
            self._pipe = None
        self._thread.join(10)
        self.file.close()
        super().close()
