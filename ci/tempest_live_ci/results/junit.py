"""junit.xml, one testcase per test (GitLab, Jenkins), written with xml.etree.

The layout is subunit2junitxml's (python-junitxml): one <testsuite> with the
errors, failures, tests and time attributes, a <testcase classname name time>
per test, <failure>, <error> or <skipped> inside. junitxml's public API is a
unittest TestResult: it cannot attach a note to a test that passed, which a
flaky test needs (<system-out>), and replaying every test through it costs
more than writing the elements here.

Counts, compared with subunit2junitxml on the same stream: the same tests,
and the same failures + errors. A failure outside any test (setUpClass,
setUpModule, an import) and a test that never finished are errors here,
failures there: subunit v2 has no "error", JUnit does. A packet the parser
could not read is an error testcase of its own (classname subunit.parser,
named after the stream and the byte the packet starts at).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

from tempest_live_ci import files
from tempest_live_ci.results.model import (
    ERROR,
    FAILED,
    FLAKY,
    INCOMPLETE,
    SKIPPED,
    UXSUCCESS,
    Run,
    TestRecord,
)

DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
# The testcase of a packet the stream reader could not parse (python-subunit's name).
STREAM_ERROR = "subunit.parser"

# Characters XML 1.0 cannot carry, even escaped (junitxml drops the same).
_NOT_XML = re.compile("[\0-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]+")
_TRACEBACK = "Traceback (most recent call last):"
# The exception line of a Python traceback: "module.Error: message".
_EXCEPTION = re.compile(r"(?P<type>[A-Za-z_][\w.]*)(?::\s*(?P<message>.*))?")


def _text(value: str) -> str:
    return _NOT_XML.sub("", value)


def _split_id(test_id: str) -> tuple[str, str]:
    """classname and name, split as junitxml does (at the last dot before any '(')."""
    end = test_id.rfind(".", 0, test_id.find("("))
    if end == -1:
        return "", test_id
    return test_id[:end], test_id[end + 1:]


def _exception(record: TestRecord) -> tuple[str, str]:
    """The exception type and message of a failure's (last) traceback, if it has one.

    The exception line is the first unindented line after the frames; a
    message of several lines follows it.
    """
    lines = record.details.get("traceback", "").splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(_TRACEBACK)]
    for line in lines[starts[-1] + 1:] if starts else ():
        if line and not line[0].isspace():
            match = _EXCEPTION.fullmatch(line)
            if match is None:
                return "", line
            return match.group("type"), match.group("message") or ""
    return "", record.reason


def _flaky_note(record: TestRecord) -> str:
    lines = [f"FLAKY: attempts {' → '.join(record.attempts)}"]
    if record.details.get("rerun"):
        lines.append(record.details["rerun"])
    if record.failure_text:
        lines.append("First failure:\n" + record.failure_text)
    return "\n".join(lines)


def _seconds(start: datetime | None, end: datetime | None) -> float:
    if start is None or end is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())


def _testcase(suite: ET.Element, record: TestRecord) -> str | None:
    """Add the record's <testcase>; returns what it counts as (failure, error, skipped) or None."""
    classname, name = _split_id(record.id)
    case = ET.SubElement(suite, "testcase", classname=_text(classname), name=_text(name),
                         time=f"{record.duration or 0.0:.3f}")
    status = record.status
    if status in (FAILED, ERROR, INCOMPLETE, UXSUCCESS):
        kind = "failure" if status in (FAILED, UXSUCCESS) else "error"
        error_type, message = _exception(record)
        if status == UXSUCCESS:
            error_type = error_type or "unittest.case._UnexpectedSuccess"
        child = ET.SubElement(case, kind, type=_text(error_type or status),
                              message=_text(message))
        child.text = _text(record.failure_text or record.reason)
        return kind
    if status == SKIPPED:
        ET.SubElement(case, "skipped", message=_text(record.reason)).text = _text(record.reason)
        return "skipped"
    if status == FLAKY:
        # Passed in the end: CI must not go red for it; the note says what happened.
        ET.SubElement(case, "system-out").text = _text(_flaky_note(record))
    # passed, flaky and xfail (a known bug that still fails) pass.
    return None


def junit_xml(run: Run) -> str:
    """The <testsuite> document (without the XML declaration)."""
    suite = ET.Element("testsuite")
    counts = {"failure": 0, "error": 0, "skipped": 0}
    for record in run.records:
        kind = _testcase(suite, record)
        if kind is not None:
            counts[kind] += 1
    for error in run.stream_errors:
        # A packet the parser could not read may have been a failure: the
        # stream's corruption is an error of its own, as `results show` makes
        # it exit 16 (subunit2junitxml counts python-subunit's "subunit.parser"
        # pseudo-test as a failure).
        case = ET.SubElement(suite, "testcase", classname=STREAM_ERROR,
                             name=_text(error.split(": ", 1)[0]), time="0.000")
        ET.SubElement(case, "error", type=STREAM_ERROR,
                      message=_text(error)).text = _text(error)
        counts["error"] += 1
    starts = [r.start for r in run.records if r.start is not None]
    ends = [r.end for r in run.records if r.end is not None]
    elapsed = _seconds(min(starts), max(ends)) if starts and ends else 0.0
    # Attribute order as junitxml writes it, then skipped (Jenkins and GitLab read it).
    suite.attrib = {
        "errors": str(counts["error"]),
        "failures": str(counts["failure"]),
        "name": "",
        "tests": str(len(run.records) + len(run.stream_errors)),
        "time": f"{elapsed:.3f}",
        "skipped": str(counts["skipped"]),
    }
    ET.indent(suite, space="")
    return ET.tostring(suite, encoding="unicode") + "\n"


def junit_document(run: Run) -> str:
    return DECLARATION + junit_xml(run)


def write_junit(run: Run, path: Path) -> Path:
    return files.write_text(path, junit_document(run))
