"""summary.json, junit.xml and the exit code, from real streams through process_run()."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from tests.conftest import TOP

from conftest import Streams
from tempest_live_ci.errors import ExitCode
from tempest_live_ci.results import print_summary, process_run

METADATA = {
    "job": "smoke-bookworm",
    "run_id": "r1",
    "image": "bookworm-identity-3f2a",
    "versions": {"keystone": "2:23.0.0-1", "python3-tempest": "1:33.0.0-1"},
    "candidates": ["keystone_23.0.0-2_all.deb"],
}


@pytest.mark.parametrize(("name", "code"), [
    ("passing", ExitCode.OK),
    # Live streams list every test first: the tests of a class that skipped
    # itself in setUpClass (or a module in setUpModule) are listed, never run,
    # and that is a skip, not a dead run.
    ("passing_live", ExitCode.OK),
    ("mixed", ExitCode.TESTS_FAILED),
    ("mixed_live", ExitCode.TESTS_FAILED),
    ("all_skipped", ExitCode.NO_TESTS),
    ("all_skipped_live", ExitCode.NO_TESTS),
    ("import_error_stestr", ExitCode.NO_TESTS),
    ("import_error_subunit_run", ExitCode.TESTS_FAILED),
    ("worker_died", ExitCode.TESTBED),
    ("cut", ExitCode.TESTBED),
])
def test_exit_codes(streams: Streams, tmp_path: Path, name: str, code: ExitCode) -> None:
    result = process_run(getattr(streams, name), tmp_path, METADATA)
    assert result.exit_code == code
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["exit_code"] == code
    assert summary["metadata"] == METADATA


def test_summary_json(streams: Streams, tmp_path: Path) -> None:
    result = process_run(streams.mixed, tmp_path, METADATA)
    s = json.loads(result.summary_path.read_text())
    assert s["counts"] == {
        "passed": 3, "failed": 2, "error": 1, "skipped": 5, "xfail": 1, "uxsuccess": 1,
        "flaky": 0, "incomplete": 0, "total": 13, "not_run": 0,
    }
    assert s["complete"] is True
    # Every test of the run, slowest first. The one that sleeps 0.3 s took at
    # least that; how long the others took depends on the machine's load.
    durations = [t["duration"] for t in s["slowest"]]
    assert len(durations) == 13 and durations == sorted(durations, reverse=True)
    slept = {t["id"]: t for t in s["slowest"]}[
        "tempest.api.network.test_ports.PortsTest.test_create_port"]
    assert slept["status"] == "passed" and slept["duration"] >= 0.3
    assert set(s["services"]) == {"tempest.api.compute", "tempest.api.identity",
                                  "tempest.api.network", "tempest.scenario"}
    assert s["services"]["tempest.api.identity"]["total"] == 7
    # ServersTest's two tests, and MigrationsAdminTest's setUpClass.
    assert s["services"]["tempest.api.compute"]["skipped"] == 3
    assert s["services"]["tempest.scenario"]["error"] == 1
    assert s["skip_reasons"][0]["reason"] in ("compute service is not available",
                                              "identity v2 API is disabled")
    reasons = {g["reason"]: g["count"] for g in s["skip_reasons"]}
    assert reasons == {"compute service is not available": 2, "identity v2 API is disabled": 2,
                       "Less than 2 compute nodes, skipping migration test.": 1}
    assert s["duration"] >= 0.3
    failing = {f["id"]: f for f in s["failures"]}
    assert "token mismatch" in failing[
        "tempest.api.identity.v3.test_tokens.TokensV3Test.test_validate_token"]["text"]
    assert len(s["tests"]) == 13


def test_class_skipped_in_setupclass_live(streams: Streams, tmp_path: Path) -> None:
    # tempest's way: setUpClass -> skip_checks() -> raise skipException. The
    # live stream listed the class's test, no result ever names it.
    result = process_run(streams.passing_live, tmp_path, METADATA)
    dvr = "tempest.api.network.admin.test_routers_dvr.RoutersTestDVR"
    assert result.run.statuses()[f"setUpClass ({dvr})"] == "skipped"
    assert result.run.complete
    assert result.run.not_run == ()
    assert result.run.not_run_skipped == (f"{dvr}.test_centralized_router_creation",)
    s = json.loads(result.summary_path.read_text())
    assert s["verdict"] == "PASSED: all tests passed"
    assert s["not_run_after_fixture_skip"] == [f"{dvr}.test_centralized_router_creation"]
    assert s["not_run_after_fixture_failure"] == []
    assert s["incomplete"]["not_run"] == []
    assert {g["reason"]: g["count"] for g in s["skip_reasons"]}["DVR extension is not enabled"] == 1


def test_module_skipped_in_setupmodule_live(streams: Streams, tmp_path: Path) -> None:
    result = process_run(streams.all_skipped_live, tmp_path, {})
    statuses = result.run.statuses()
    assert statuses["setUpModule (tempest.api.orchestration.test_stacks)"] == "skipped"
    assert statuses["setUpClass (tempest.api.object_storage.test_containers.ContainersTest)"] \
        == "skipped"
    assert result.run.not_run == ()
    assert sorted(result.run.not_run_skipped) == [
        "tempest.api.object_storage.test_containers.ContainersTest.test_create_container",
        "tempest.api.object_storage.test_containers.ContainersTest.test_delete_container",
        "tempest.api.orchestration.test_stacks.StacksTest.test_create_stack",
    ]
    assert result.exit_code == ExitCode.NO_TESTS


def test_human_summary(streams: Streams, tmp_path: Path) -> None:
    out = io.StringIO()
    print_summary(process_run(streams.worker_died, tmp_path, {}), out)
    text = out.getvalue()
    assert "INCOMPLETE" in text and "testbed failure" in text and "(exit 16)" in text
    assert "tempest.api.network.test_routers.RoutersTest.test_b_update_router" in text
    out = io.StringIO()
    print_summary(process_run(streams.import_error_stestr, tmp_path, {}), out)
    assert "NO TESTS" in out.getvalue()
    assert "Failed to import test module: tempest.scenario.test_broken" in out.getvalue()


def test_interrupted_is_incomplete_even_if_all_passed(streams: Streams, tmp_path: Path) -> None:
    result = process_run(streams.passing, tmp_path, {}, interrupted=True)
    assert result.exit_code == ExitCode.TESTBED
    assert result.summary["incomplete"]["interrupted"] is True


def _testcases(path: Path) -> dict[str, ET.Element]:
    root = ET.parse(path).getroot()
    assert root.tag == "testsuite"
    cases = {}
    for case in root.iter("testcase"):
        classname = case.get("classname") or ""
        name = case.get("name") or ""
        cases[f"{classname}.{name}" if classname else name] = case
    return cases


def test_junit(streams: Streams, tmp_path: Path) -> None:
    result = process_run(streams.mixed, tmp_path, METADATA)
    root = ET.parse(result.junit_path).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("13", "3", "1")
    cases = _testcases(result.junit_path)
    assert len(cases) == 13
    tokens = "tempest.api.identity.v3.test_tokens.TokensV3Test."
    failure = cases[tokens + "test_validate_token"].find("failure")
    assert failure is not None and "token mismatch" in (failure.text or "")
    # What CI shows first: the exception and its message, from the traceback.
    assert failure.get("type") == "testtools.matchers._impl.MismatchError"
    assert failure.get("message") == "'abc' != 'abd': token mismatch"
    skipped = cases[tokens + "test_token_v2"].find("skipped")
    assert skipped is not None and skipped.text == "identity v2 API is disabled"
    error = cases["setUpClass (tempest.scenario.test_network_basic_ops.TestNetworkBasicOps)"]
    assert "quota exceeded" in (error.findtext("error") or "")
    assert error.find("error").get("type") == "ValueError"  # type: ignore[union-attr]
    assert float(cases["tempest.api.network.test_ports.PortsTest.test_create_port"]
                 .get("time") or 0) >= 0.3


def test_junit_same_testcases_as_subunit2junitxml(streams: Streams, tmp_path: Path) -> None:
    result = process_run(streams.evolving_v2, tmp_path, {})
    with streams.evolving_v2.open("rb") as f:
        reference = subprocess.run(["subunit2junitxml"], stdin=f, capture_output=True,
                                   timeout=60).stdout
    (tmp_path / "ref.xml").write_bytes(reference)
    ours, theirs = _testcases(result.junit_path), _testcases(tmp_path / "ref.xml")
    assert sorted(ours) == sorted(theirs)
    for name, case in ours.items():
        assert [c.tag for c in case] == [c.tag for c in theirs[name]], name


def test_junit_marks_unfinished_test_as_error(streams: Streams, tmp_path: Path) -> None:
    result = process_run(streams.worker_died, tmp_path, {})
    cases = _testcases(result.junit_path)
    error = cases["tempest.api.network.test_routers.RoutersTest.test_b_update_router"]
    assert "stream ended while this test was running" in (error.findtext("error") or "")


def _outcomes(suite: ET.Element) -> dict[str, str]:
    """Each test's outcome in a JUnit file; a test listed twice keeps the worse one."""
    rank = ["passed", "skipped", "failure", "error"]
    found: dict[str, str] = {}
    for case in suite.iter("testcase"):
        classname, name = case.get("classname") or "", case.get("name") or ""
        test_id = f"{classname}.{name}" if classname else name
        kind = next((c.tag for c in case if c.tag in rank), "passed")
        if rank.index(kind) >= rank.index(found.get(test_id, "passed")):
            found[test_id] = kind
    return found


@pytest.mark.parametrize("name", ["mixed", "mixed_live", "passing_live", "all_skipped_live",
                                  "import_error_subunit_run", "worker_died", "cut",
                                  "evolving_v1", "evolving_v2"])
def test_junit_counts_as_subunit2junitxml(streams: Streams, name: str) -> None:
    # The same tests, passes, skips and failures + errors as python-subunit's
    # own filter, for live and recorded streams, cut or whole. Two differences:
    # what fails outside any test (setUpClass, a module that does not import)
    # or never finished is an error here and a failure there (subunit v2 has
    # no "error"); a test two workers both report (a class fixture without
    # tempest's group_regex) is one testcase here, with the worse result.
    stream = getattr(streams, name)
    ours = tlc_junit(stream)
    with stream.open("rb") as f:
        theirs = ET.fromstring(subprocess.run(["subunit2junitxml"], stdin=f, capture_output=True,
                                              timeout=60).stdout)
    mine, reference = _outcomes(ours), _outcomes(theirs)
    # A packet cut in half: python-subunit's pseudo-test (a failure), an error
    # testcase here that names the stream and the byte the packet starts at
    # (summary.json says the run is incomplete, exit 16).
    corrupt = {t: k for t, k in mine.items() if t.startswith("subunit.parser.")}
    for test_id in corrupt:
        del mine[test_id]
    if reference.pop("subunit.parser", None) is not None:
        assert name == "cut"
        assert list(corrupt.values()) == ["error"]
        assert re.fullmatch(r"subunit\.parser\.cut\.subunit at byte [0-9]+", next(iter(corrupt)))
    else:
        assert not corrupt
    assert sorted(mine) == sorted(reference)
    for test_id, kind in mine.items():
        expected = reference[test_id]
        if kind == "error":
            assert expected == "failure", test_id
            assert test_id.startswith(("setUpClass (", "setUpModule (", "unittest.loader.")) \
                or "stream ended while this test was running" in _failure_text(ours, test_id), test_id
        else:
            assert kind == expected, test_id
    counts = {k: list(mine.values()).count(k) for k in ("failure", "error", "skipped")}
    assert (ours.get("tests"), ours.get("failures"), ours.get("errors"), ours.get("skipped")) == (
        str(len(mine) + len(corrupt)), str(counts["failure"]),
        str(counts["error"] + len(corrupt)), str(counts["skipped"]))
    if len(list(theirs.iter("testcase"))) == len(reference):
        # No test reported twice: the suite's own counts agree.
        assert ours.get("tests") == theirs.get("tests")
        assert int(ours.get("failures") or 0) + int(ours.get("errors") or 0) == \
            int(theirs.get("failures") or 0) + int(theirs.get("errors") or 0)


def _failure_text(suite: ET.Element, test_id: str) -> str:
    for case in suite.iter("testcase"):
        classname, name = case.get("classname") or "", case.get("name") or ""
        if (f"{classname}.{name}" if classname else name) == test_id:
            return "".join(case.itertext()) + " ".join(
                c.get("message") or "" for c in case)
    return ""


def tlc_junit(stream: Path) -> ET.Element:
    """`tempest-live-ci results junit STREAM` (stdout), parsed."""
    result = subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), "results",
                             "junit", str(stream)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('<?xml version="1.0" encoding="UTF-8"?>\n')
    return ET.fromstring(result.stdout.encode())
