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

Beyond junitxml: the suite is named after the job; a test that was re-run
carries its other attempts as Maven Surefire does (Jenkins reads them),
flakyFailure/flakyError when it passed in the end, rerunFailure/rerunError
when it did not, each with its stackTrace; a failure's system-out is what the
guest's services logged while it ran (servicelogs).
"""

from __future__ import annotations

import dataclasses
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

from tempest_live_ci import files
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

DECLARATION = '<?xml version="1.0" encoding="UTF-8"?>\n'
# The suite's name when no job is known (a bare stream).
DEFAULT_NAME = "tempest"
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


def _kind(status: str) -> str:
    return "failure" if status in (FAILED, UXSUCCESS, FLAKY) else "error"


def _problem(case: ET.Element, tag: str, record: TestRecord) -> ET.Element:
    """A <failure>, <error> or re-run element for a result that did not pass."""
    error_type, message = _exception(record)
    if record.status == UXSUCCESS:
        error_type = error_type or "unittest.case._UnexpectedSuccess"
    return ET.SubElement(case, tag, type=_text(error_type or record.status),
                         message=_text(message))


def _reruns(case: ET.Element, record: TestRecord) -> None:
    """Each failed attempt after the first as rerunFailure/rerunError (the test failed in
    the end) or, with the first, as flakyFailure/flakyError (it passed on a re-run): the
    elements of Maven Surefire's report format, which Jenkins reads."""
    prefix = "flaky" if record.status == FLAKY else "rerun"
    attempts = [r for r in record.reruns if r.status not in (PASSED, SKIPPED, XFAIL)]
    if record.status == FLAKY:
        attempts.insert(0, dataclasses.replace(record, status=record.attempts[0]
                                               if record.attempts else FAILED))
    # The schema's order: every *Failure before any *Error.
    for attempt in sorted(attempts, key=lambda a: _kind(a.status) != "failure"):
        tag = prefix + ("Failure" if _kind(attempt.status) == "failure" else "Error")
        element = _problem(case, tag, attempt)
        ET.SubElement(element, "stackTrace").text = _text(attempt.failure_text
                                                          or attempt.reason)


def _testcase(suite: ET.Element, record: TestRecord, logs: str | None) -> str | None:
    """Add the record's <testcase>; returns what it counts as (failure, error, skipped) or None.

    `logs`: what the services logged meanwhile, the testcase's system-out.
    """
    classname, name = _split_id(record.id)
    case = ET.SubElement(suite, "testcase", classname=_text(classname), name=_text(name),
                         time=f"{record.duration or 0.0:.3f}")
    status = record.status
    if status in (FAILED, ERROR, INCOMPLETE, UXSUCCESS):
        kind = _kind(status)
        _problem(case, kind, record).text = _text(record.failure_text or record.reason)
        _reruns(case, record)
        if logs:
            ET.SubElement(case, "system-out").text = _text(logs)
        return kind
    if status == SKIPPED:
        ET.SubElement(case, "skipped", message=_text(record.reason)).text = _text(record.reason)
        return "skipped"
    if status == FLAKY:
        # Passed in the end: CI must not go red for it; the note says what happened.
        _reruns(case, record)
        note = _flaky_note(record) + (f"\n\n{logs}" if logs else "")
        ET.SubElement(case, "system-out").text = _text(note)
    # passed, flaky and xfail (a known bug that still fails) pass.
    return None


def junit_xml(run: Run, *, name: str = "", logs: Mapping[str, str] | None = None) -> str:
    """The <testsuite> document (without the XML declaration).

    `name`: the suite's, the job's name; `logs`: what the services logged during each
    failure, by test id (servicelogs.excerpts), written to its testcase's system-out.
    """
    suite = ET.Element("testsuite")
    counts = {"failure": 0, "error": 0, "skipped": 0}
    logs = logs or {}
    for record in run.records:
        kind = _testcase(suite, record, logs.get(record.id))
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
        "name": _text(name) or DEFAULT_NAME,
        "tests": str(len(run.records) + len(run.stream_errors)),
        "time": f"{elapsed:.3f}",
        "skipped": str(counts["skipped"]),
    }
    ET.indent(suite, space="")
    return ET.tostring(suite, encoding="unicode") + "\n"


def junit_document(run: Run, *, name: str = "", logs: Mapping[str, str] | None = None) -> str:
    return DECLARATION + junit_xml(run, name=name, logs=logs)


def write_junit(run: Run, path: Path, *, name: str = "",
                logs: Mapping[str, str] | None = None) -> Path:
    return files.write_text(path, junit_document(run, name=name, logs=logs))
