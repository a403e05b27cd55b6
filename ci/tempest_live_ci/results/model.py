"""What a tempest run produced, test by test, independent of any output format."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

# Statuses after reading a stream (and merging re-runs). subunit v2 has no
# "error": a failure outside any test (setUpClass, setUpModule, a module that
# does not import) is an error here, a failure inside a test is "failed".
PASSED = "passed"
FAILED = "failed"
ERROR = "error"
SKIPPED = "skipped"
XFAIL = "xfail"
UXSUCCESS = "uxsuccess"
FLAKY = "flaky"
INCOMPLETE = "incomplete"

STATUSES = (PASSED, FAILED, ERROR, SKIPPED, XFAIL, UXSUCCESS, FLAKY, INCOMPLETE)
FAILING = frozenset({FAILED, ERROR, UXSUCCESS, INCOMPLETE})

# Ids of failures that happen outside a test: unittest names class and module
# fixtures "setUpClass (pkg.module.Class)"; a module that fails to import
# becomes a test of unittest.loader._FailedTest.
_FIXTURE_ID = re.compile(
    r"(setUpClass|tearDownClass|setUpModule|tearDownModule) \((?P<target>.+)\)"
)
_IMPORT_FAILURE_PREFIX = "unittest.loader._FailedTest."


def fixture_target(test_id: str) -> str | None:
    """The class or module a fixture failure belongs to, or None for an ordinary test id."""
    match = _FIXTURE_ID.fullmatch(test_id)
    if match:
        return match.group("target")
    if test_id.startswith(_IMPORT_FAILURE_PREFIX):
        return test_id[len(_IMPORT_FAILURE_PREFIX):]
    return None


def strip_attributes(test_id: str) -> str:
    """tempest.x.Test.test_y[id-...,smoke] → tempest.x.Test.test_y."""
    return test_id.split("[", 1)[0]


def service_of(test_id: str) -> str:
    """The tempest module a test belongs to: tempest.api.compute, tempest.scenario, ...

    Plugins (keystone_tempest_plugin.tests.api.identity...) are grouped by
    their top-level package.
    """
    name = strip_attributes(fixture_target(test_id) or test_id)
    parts = name.split(".")
    if parts[0] == "tempest" and len(parts) > 2:
        if parts[1] == "api" and len(parts) > 3:
            return ".".join(parts[:3])
        return ".".join(parts[:2])
    return parts[0]


@dataclass(frozen=True)
class TestRecord:
    """One test's final result."""

    __test__ = False  # not a pytest class

    id: str
    status: str
    start: datetime | None = None
    end: datetime | None = None
    tags: tuple[str, ...] = ()
    # Attachments as text: "traceback", "reason" (skips), "pythonlogging", ...
    details: Mapping[str, str] = field(default_factory=dict)
    # Statuses of every attempt, first run first, when the test was re-run.
    attempts: tuple[str, ...] = ()
    # The re-runs' own results of this test (or of the fixture's tests), one per re-run
    # attempt it took part in: what junit.xml's flakyFailure and rerunFailure carry.
    reruns: tuple[TestRecord, ...] = ()

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return max(0.0, (self.end - self.start).total_seconds())

    @property
    def service(self) -> str:
        return service_of(self.id)

    @property
    def is_fixture(self) -> bool:
        return fixture_target(self.id) is not None

    @property
    def reason(self) -> str:
        return self.details.get("reason", "").strip()

    @property
    def failure_text(self) -> str:
        """Traceback first, then the other attachments a failure carries."""
        parts = []
        if "traceback" in self.details:
            parts.append(self.details["traceback"].rstrip())
        for name, text in self.details.items():
            if name not in ("traceback", "reason") and text.strip():
                parts.append(f"--- {name} ---\n{text.rstrip()}")
        return "\n\n".join(parts)


@dataclass(frozen=True)
class StreamData:
    """Everything read from one subunit stream."""

    records: tuple[TestRecord, ...]
    # Tests the runner listed ("exists") that never reported a result.
    not_run: tuple[str, ...] = ()
    # Parser errors: the stream was cut inside a packet or is corrupt.
    stream_errors: tuple[str, ...] = ()
    # Bytes between packets (tempest or stestr printing outside subunit).
    stray_output: str = ""


@dataclass(frozen=True)
class Run:
    """A run's results after merging re-runs: what every output format is made from."""

    records: tuple[TestRecord, ...]
    not_run: tuple[str, ...] = ()
    # Listed tests that never ran because their class or module fixture failed.
    not_run_explained: tuple[str, ...] = ()
    # Listed tests that never ran because their class or module skipped itself
    # in setUpClass/setUpModule (how tempest skips a class): skipped, not lost.
    not_run_skipped: tuple[str, ...] = ()
    stream_errors: tuple[str, ...] = ()
    stray_output: str = ""
    # The caller knows the stream stopped early (SSH connection lost, guest died).
    interrupted: bool = False
    reruns: int = 0

    @property
    def incomplete_tests(self) -> tuple[TestRecord, ...]:
        return tuple(r for r in self.records if r.status == INCOMPLETE)

    @property
    def complete(self) -> bool:
        return not (self.interrupted or self.stream_errors or self.incomplete_tests
                    or self.not_run)

    def by_status(self, status: str) -> list[TestRecord]:
        return [r for r in self.records if r.status == status]

    def statuses(self) -> dict[str, str]:
        return {r.id: r.status for r in self.records}
