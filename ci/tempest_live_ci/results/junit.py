"""junit.xml with the junitxml library, one testcase per test (GitLab, Jenkins)."""

from __future__ import annotations

import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import junitxml
import testtools
from testtools.content import text_content

from tempest_live_ci.results.model import (
    ERROR,
    FAILED,
    FLAKY,
    INCOMPLETE,
    PASSED,
    SKIPPED,
    UXSUCCESS,
    XFAIL,
    Run,
    TestRecord,
)

# Every status as the unittest outcome junitxml understands. A flaky test
# passed in the end: CI must not go red for it, the note says what happened.
_OUTCOME = {
    PASSED: "addSuccess",
    FLAKY: "addSuccess",
    FAILED: "addFailure",
    ERROR: "addError",
    INCOMPLETE: "addError",
    SKIPPED: "addSkip",
    XFAIL: "addExpectedFailure",
    UXSUCCESS: "addUnexpectedSuccess",
}


class _JUnitResult(junitxml.JUnitXmlResult):  # type: ignore[misc]
    """junitxml's result, plus a <system-out> note on tests that passed only on re-run."""

    def __init__(self, stream: io.StringIO, notes: Mapping[str, str]) -> None:
        super().__init__(stream)
        self._notes = notes

    def addSuccess(self, test: Any) -> None:
        super().addSuccess(test)
        note = self._notes.get(test.id())
        if note is not None:
            # junitxml closed the element as "/>": reopen it to add the note,
            # escaped by junitxml's own function.
            self._results[-1] = (
                ">\n<system-out>" + junitxml._escape_content(note)
                + "</system-out>\n</testcase>\n"
            )


def _flaky_note(record: TestRecord) -> str:
    lines = [f"FLAKY: attempts {' → '.join(record.attempts)}"]
    if record.details.get("rerun"):
        lines.append(record.details["rerun"])
    if record.failure_text:
        lines.append("First failure:\n" + record.failure_text)
    return "\n".join(lines)


def _placeholder(record: TestRecord) -> testtools.PlaceHolder:
    details = {name: text_content(text) for name, text in record.details.items()}
    if record.status == INCOMPLETE:
        details.setdefault("reason", text_content("the test never finished"))
    return testtools.PlaceHolder(
        record.id,
        outcome=_OUTCOME[record.status],
        details=details,
        tags=set(record.tags),
        timestamps=(record.start, record.end),
    )


def junit_xml(run: Run) -> str:
    notes = {r.id: _flaky_note(r) for r in run.records if r.status == FLAKY}
    out = io.StringIO()
    result = _JUnitResult(out, notes)
    result.startTestRun()
    for record in run.records:
        _placeholder(record).run(result)
    result.stopTestRun()
    return out.getvalue()


def write_junit(run: Run, path: Path) -> Path:
    path.write_text('<?xml version="1.0" encoding="UTF-8"?>\n' + junit_xml(run),
                    encoding="utf-8")
    return path
