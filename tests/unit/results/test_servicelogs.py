"""What the services said while a test failed: from a real stored run's guest-logs/ into
report.html and junit.xml (checked against a strict JUnit schema), and re-runs as
Surefire's flakyFailure/rerunFailure from real `stestr run --load-list` re-runs."""

from __future__ import annotations

import io
import os
import re
import shutil
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import lxml.etree
import pytest
from test_flaky import VOLUMES, first_run, stestr_rerun

from conftest import Streams
from tempest_live_ci.results import actions, process_run
from tempest_live_ci.results.run import load_run
from tempest_live_ci.results.servicelogs import (
    MARGIN,
    MONOTONIC_MARGIN,
    excerpts,
    read_guest_logs,
)

DATA = Path(__file__).resolve().parents[2] / "data"
RUN = DATA / "smoke-image-sid"
SCHEMA = DATA / "junit-strict.xsd"
FIRST_FAILURE = ("tempest.api.image.v2.admin.test_images.MultiStoresImagesTest."
                 "test_delete_image_from_specific_store[id-1ecec683-41d4-4470-a0df-54969ec74514]")
_OSLO = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+) ")
_UWSGI = re.compile(r"\[\w{3} (\w{3}) +(\d+) (\d\d:\d\d:\d\d) (\d{4})\]")


def _moment(line: str) -> datetime:
    match = _OSLO.match(line)
    if match:
        return datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC)
    match = _UWSGI.search(line)
    assert match, line
    return datetime.strptime(" ".join(match.groups()), "%b %d %H:%M:%S %Y").replace(tzinfo=UTC)


def validate(path: Path) -> None:
    schema = lxml.etree.XMLSchema(lxml.etree.parse(str(SCHEMA)))
    document = lxml.etree.parse(str(path))
    assert schema.validate(document), schema.error_log


def test_each_failure_gets_the_lines_of_its_own_time() -> None:
    run = load_run(RUN)
    found = excerpts(run.records, RUN)
    failed = [r for r in run.records if r.status == "failed"]
    assert set(found) == {r.id for r in failed}
    every = [line for source in read_guest_logs(RUN).sources
             if not source.name.startswith("journal") for line in source.lines]
    for record in failed:
        assert record.start is not None and record.end is not None
        low, high = record.start - timedelta(seconds=MARGIN), record.end + timedelta(seconds=MARGIN)
        sources = dict(found[record.id].sources)
        assert "keystone/keystone.log" in sources
        shown = [line for lines in sources.values() for line in lines if not line.startswith("[…")]
        assert shown and all(low <= _moment(line) <= high for line in shown)
        # Every line of that time is there, up to the cut of a long excerpt.
        wanted = [line for line in every if low <= _moment(line) <= high]
        assert len(shown) == len(wanted) or any(
            line.startswith("[… ") for lines in sources.values() for line in lines)
    first = dict(found[FIRST_FAILURE].sources)["glance/glance-api.log"]
    # The glance request that was polled while the test waited, a traceback's frames
    # kept with the line they belong to.
    assert any("GET /v2/images/abddea3e-dff2-43f8-aed1-afaff2fa8ac0" in line for line in first)
    assert first[100].startswith("[… ") and len(first) == 201


def test_a_monotonic_journal_is_put_on_the_guests_clock() -> None:
    mariadb = next(s for s in read_guest_logs(RUN).sources if s.name == "journal: mariadbd")
    # mariadbd writes its own wall-clock stamp into the message: the guessed boot
    # time puts the line a few seconds after it, within the wider margin.
    for moment, line in zip(mariadb.times, mariadb.lines, strict=True):
        said = re.search(r"(\d{4}-\d\d-\d\d) +(\d{1,2}:\d\d:\d\d) ", line.split("]: ", 1)[1])
        if said:
            wall = datetime.strptime(" ".join(said.groups()), "%Y-%m-%d %H:%M:%S")
            late = moment - wall.replace(tzinfo=UTC).timestamp()
            assert 0 <= late < MONOTONIC_MARGIN - MARGIN, (late, line)
            break
    else:
        pytest.fail("no mariadbd line with a stamp of its own")


def test_an_iso_journal_is_grouped_by_who_wrote_it(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(RUN, run_dir)
    record = next(r for r in load_run(RUN).records if r.id == FIRST_FAILURE)
    assert record.start is not None and record.end is not None
    inside = record.start + timedelta(seconds=30)
    before = record.start - timedelta(seconds=MARGIN + 1)
    (run_dir / "guest-logs/var/log/tempest-live-ci/journal.txt").write_text(
        f"{before.isoformat()} debian glance-api[700]: too early\n"
        f"{inside.isoformat()} debian glance-api[700]: ERROR glance.store: store full\n"
        "  a continuation line\n"
        f"{inside.isoformat()} debian kernel: Out of memory: Killed process 708\n")
    sources = dict(excerpts(load_run(run_dir).records, run_dir)[FIRST_FAILURE].sources)
    assert sources["journal: glance-api"] == (
        f"{inside.isoformat()} debian glance-api[700]: ERROR glance.store: store full\n"
        "  a continuation line",)
    assert sources["journal: kernel"] == (
        f"{inside.isoformat()} debian kernel: Out of memory: Killed process 708",)


def test_junit_and_report_carry_the_services_lines(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    shutil.copytree(RUN, run_dir)
    actions.junit(run_dir, out=io.StringIO())
    actions.html(run_dir, out=io.StringIO())
    validate(run_dir / "junit.xml")
    suite = ET.parse(run_dir / "junit.xml").getroot()
    assert suite.get("name") == "smoke-image-sid"
    cases = {f"{c.get('classname')}.{c.get('name')}": c for c in suite.iter("testcase")}
    failed = cases[FIRST_FAILURE]
    assert failed.find("failure") is not None
    out = failed.findtext("system-out") or ""
    assert "=== keystone/keystone.log ===" in out and "=== glance/glance-api.log ===" in out
    assert "GET /v2/images/abddea3e-dff2-43f8-aed1-afaff2fa8ac0" in out
    # A test that passed says nothing.
    assert all(c.find("system-out") is None for c in cases.values() if not len(c))

    html = (run_dir / "report.html").read_text()
    block = html.split("tempest.api.image.v2.admin.test_images.MultiStoresImagesTest."
                       "test_delete_image_from_specific_store", 2)[2].split('<div class="failure', 1)[0]
    assert block.index("<pre>") < block.index('<details class="logs">')
    assert "<h4>glance/glance-api.log</h4>" in block
    assert "GET /v2/images/abddea3e-dff2-43f8-aed1-afaff2fa8ac0" in block


def test_bare_stream_junit_is_named_and_valid(tmp_path: Path) -> None:
    out = tmp_path / "junit.xml"
    actions.junit(RUN / "tempest.subunit", output=str(out))
    validate(out)
    suite = ET.parse(out).getroot()
    assert suite.get("name") == "tempest"
    assert all(c.find("system-out") is None for c in suite.iter("testcase"))


def test_reruns_are_surefire_flaky_and_rerun_failures(streams: Streams, tmp_path: Path) -> None:
    tree = streams.flaky_tree("junit")
    out = tmp_path / "run"
    calls: list[list[str]] = []
    process_run(first_run(tree, out, "test_volumes"), out, {"job": "nightly-sid-volume"},
                rerun=stestr_rerun(tree, calls), rerun_attempts=2)
    validate(out / "junit.xml")
    suite = ET.parse(out / "junit.xml").getroot()
    assert suite.get("name") == "nightly-sid-volume"
    cases = {c.get("name"): c for c in suite.iter("testcase")}

    flaky = cases["test_attach_volume"]
    assert [child.tag for child in flaky] == ["flakyFailure", "system-out"]
    first = flaky.find("flakyFailure")
    assert first is not None and first.get("type") == "AssertionError"
    assert "volume stuck in 'attaching'" in (first.findtext("stackTrace") or "")

    failed = cases["test_extend_volume"]
    assert [child.tag for child in failed] == ["failure", "rerunFailure", "rerunFailure"]
    for again in failed.findall("rerunFailure"):
        assert again.get("message") == "extend is broken"
        assert "extend is broken" in (again.findtext("stackTrace") or "")
    assert [child.tag for child in cases["test_list_volumes"]] == []
    assert calls == [[VOLUMES + "test_attach_volume", VOLUMES + "test_extend_volume"],
                     [VOLUMES + "test_extend_volume"]]


def test_run_writes_the_reports_again_once_the_logs_are_home(tmp_path: Path) -> None:
    # What `run` does after the guest's logs arrived (run.py, _refresh_reports).
    run_dir = tmp_path / "run"
    shutil.copytree(RUN, run_dir)
    (run_dir / "junit.xml").write_text("<testsuite/>")
    (run_dir / "report.html").write_text("from the results stage")
    actions.refresh_reports(run_dir)
    validate(run_dir / "junit.xml")
    suite = ET.parse(run_dir / "junit.xml").getroot()
    assert sum(1 for c in suite.iter("testcase") if c.find("system-out") is not None) == 4
    html = (run_dir / "report.html").read_text()
    assert html.count('<details class="logs">') == 4 and 'id="timeline"' in html


def test_links_in_guest_logs_bring_no_host_file_in(tmp_path: Path) -> None:
    # A guest that links var/ to another tree (the host's /) must not bring that tree's
    # logs into the report; a FIFO where a log should be is passed over.
    run_dir = tmp_path / "run"
    shutil.copytree(RUN, run_dir)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run_dir / "guest-logs" / "var", elsewhere)
    (run_dir / "guest-logs" / "var").symlink_to(elsewhere)
    assert not read_guest_logs(run_dir)
    (run_dir / "guest-logs" / "var").unlink()
    shutil.move(elsewhere, run_dir / "guest-logs" / "var")
    glance = run_dir / "guest-logs/var/log/glance/glance-api.log"
    glance.unlink()
    os.mkfifo(glance)
    names = [s.name for s in read_guest_logs(run_dir).sources]
    assert "keystone/keystone.log" in names and "glance/glance-api.log" not in names
