"""Re-runs through real `stestr run --load-list`: a test that passes again is flaky."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from conftest import Streams, live_run, stestr
from tempest_live_ci.errors import ExitCode
from tempest_live_ci.results import load_run, process_run

VOLUMES = "tempest.api.volume.test_volumes.VolumesTest."
BOOT = "tempest.scenario.test_volume_boot.VolumeBootTest."
BOOT_FIXTURE = "setUpClass (tempest.scenario.test_volume_boot.VolumeBootTest)"


def stestr_rerun(tree: Path, calls: list[list[str]]) -> Callable[[Path], bytes]:
    """What the orchestrator passes: run the load list, return the new stream."""

    def rerun(load_list: Path) -> bytes:
        calls.append(load_list.read_text().splitlines())
        result = stestr(tree, "run", "--serial", "--subunit", "--load-list", str(load_list))
        return bytes(result.stdout)

    return rerun


def first_run(tree: Path, out: Path, *filters: str) -> Path:
    out.mkdir()
    path = out / "tempest.subunit"
    path.write_bytes(live_run(tree, "--serial", *filters))
    return path


def test_flaky_and_failed(streams: Streams, tmp_path: Path) -> None:
    tree = streams.flaky_tree("both")
    out = tmp_path / "run"
    calls: list[list[str]] = []
    result = process_run(first_run(tree, out, "test_volumes"), out, {"job": "j"},
                         rerun=stestr_rerun(tree, calls), rerun_attempts=2)

    assert calls == [[VOLUMES + "test_attach_volume", VOLUMES + "test_extend_volume"],
                     [VOLUMES + "test_extend_volume"]]
    assert (out / "rerun-1.load-list").read_text() == "".join(f"{t}\n" for t in calls[0])
    assert (out / "tempest-rerun-2.subunit").stat().st_size > 0
    assert result.exit_code == ExitCode.TESTS_FAILED
    records = {r.id: r for r in result.run.records}
    assert records[VOLUMES + "test_attach_volume"].status == "flaky"
    assert records[VOLUMES + "test_attach_volume"].attempts == ("failed", "passed")
    assert records[VOLUMES + "test_extend_volume"].status == "failed"
    assert records[VOLUMES + "test_extend_volume"].attempts == ("failed", "failed", "failed")

    summary = json.loads((out / "summary.json").read_text())
    assert summary["counts"]["flaky"] == 1 and summary["counts"]["failed"] == 1
    assert summary["flaky"] == [{"id": VOLUMES + "test_attach_volume",
                                 "attempts": ["failed", "passed"]}]
    assert summary["reruns"] == 2

    case = next(c for c in ET.parse(out / "junit.xml").getroot().iter("testcase")
                if c.get("name") == "test_attach_volume")
    assert case.find("failure") is None and case.find("error") is None
    assert "FLAKY" in (case.findtext("system-out") or "")
    assert "attaching" in (case.findtext("system-out") or "")
    assert 'class="badge s-flaky"' in (out / "report.html").read_text()

    # The directory holds everything: regenerating gives the same merge.
    again = load_run(out)
    assert again.statuses() == result.run.statuses()


def test_only_flaky_failures_pass_the_run(streams: Streams, tmp_path: Path) -> None:
    tree = streams.flaky_tree("only")
    out = tmp_path / "run"
    calls: list[list[str]] = []
    result = process_run(first_run(tree, out, "test_attach_volume|test_list_volumes"), out, {},
                         rerun=stestr_rerun(tree, calls), rerun_attempts=3)
    assert calls == [[VOLUMES + "test_attach_volume"]]
    assert result.exit_code == ExitCode.OK
    assert result.summary["counts"]["flaky"] == 1


def test_class_fixture_failure_reruns_its_tests(streams: Streams, tmp_path: Path) -> None:
    tree = streams.flaky_tree("fixture")
    out = tmp_path / "run"
    calls: list[list[str]] = []
    result = process_run(first_run(tree, out, "test_volume_boot"), out, {},
                         rerun=stestr_rerun(tree, calls))
    # setUpClass is no test id a runner can load: its listed tests are re-run.
    assert calls == [[BOOT + "test_boot_from_volume", BOOT + "test_snapshot_boot"]]
    assert result.run.statuses()[BOOT_FIXTURE] == "flaky"
    assert result.exit_code == ExitCode.OK


def test_no_rerun_after_the_guest_died(streams: Streams, tmp_path: Path) -> None:
    calls: list[Path] = []

    def rerun(load_list: Path) -> bytes:
        calls.append(load_list)
        return b""

    result = process_run(streams.worker_died, tmp_path, {}, rerun=rerun)
    assert calls == []
    assert result.exit_code == ExitCode.TESTBED
