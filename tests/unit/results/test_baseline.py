"""Baseline and gate on real subunit streams (stestr runs a tempest-like tree, re-runs included).

One tree, four modes: the baseline (one known failure), a regression that
fails again on every re-run, a new failure that passes on re-run (flaky), and
a run with only the known failure. Each run directory is what `run` leaves:
the stream, re-run streams, summary.json, packages.txt.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from conftest import live_run, make_tree
from tempest_live_ci.errors import ExitCode
from tempest_live_ci.job import parse_job
from tempest_live_ci.results import process_run, store_run
from tempest_live_ci.results.baseline import (
    find_baseline,
    judge_run,
    package_changes,
    read_packages,
)
from tempest_live_ci.results.run import load_run
from tempest_live_ci.results.summary import read_summary
from tempest_live_ci.run import RunContext, _judge, write_run_summary

TEST = "tempest.api.identity.v3.test_upload.UploadTest."

UPLOAD = {
    "tempest/api/identity/v3/test_upload.py": """
        import os
        import unittest

        MODE = os.environ.get("UPLOAD_MODE", "base")
        MARKER = os.path.join(os.path.dirname(__file__), "flaked-" + MODE)


        class UploadTest(unittest.TestCase):
            def test_stable(self):
                pass

            def test_known_broken(self):
                self.fail("known bug 1234")

            def test_regressed(self):
                if MODE == "regression":
                    self.fail("keystone returned 500 after the upgrade")

            def test_flaky(self):
                if MODE == "flaky" and not os.path.exists(MARKER):
                    open(MARKER, "w").close()
                    self.fail("timed out waiting for a token")

            if MODE != "base":
                def test_new_in_upload(self):
                    pass
            else:
                def test_gone_in_upload(self):
                    pass
    """,
}

BASE_PACKAGES = {"keystone": "2:27.0.0-1", "python3-keystone": "2:27.0.0-1",
                 "python3-tempest": "1:41.0.0-1", "python3-oslo.db": "16.0.0-1",
                 "python3-routes": "2.5.1-1"}
NEW_PACKAGES = {"keystone": "2:27.0.0-2", "python3-keystone": "2:27.0.0-2",
                "python3-tempest": "1:42.0.0-1", "python3-oslo.db": "15.0.0-3",
                "python3-jwt": "2.10.1-1"}


def dpkg_l(versions: dict[str, str]) -> str:
    """packages.txt as `dpkg -l` writes it."""
    lines = ["Desired=Unknown/Install/Remove/Purge/Hold",
             "| Status=Not/Inst/Conf-files/Unpacked/halF-conf/Half-inst/trig-aWait/Trig-pend",
             "|/ Err?=(none)/Reinst-required (Status,Err: uppercase=bad)",
             "||/ Name            Version      Architecture Description",
             "+++-===============-============-============-=================="]
    lines += [f"ii  {name}:all  {version}  all  {name} package" for name, version
              in versions.items()]
    lines.append("rc  old-config-only  1.0-1  all  removed, configuration left")
    return "\n".join(lines) + "\n"


def run_dir(tmp_path: Path, mode: str, *, packages: dict[str, str], image: str,
            attempts: int = 2, candidates: tuple[str, ...] = ()) -> Path:
    """A finished run of the tree in `mode`, failures re-run `attempts` times like `run` does."""
    tree = make_tree(tmp_path / f"tree-{mode}", UPLOAD)
    env = {"UPLOAD_MODE": mode}
    out = tmp_path / f"run-{mode}"
    out.mkdir()
    (out / "tempest.subunit").write_bytes(live_run(tree, env=env))

    def rerun(load_list: Path) -> bytes:
        return live_run(tree, "--load-list", str(load_list), env=env)

    process_run(out / "tempest.subunit", out, {"job": "upload-check", "run_id": f"r-{mode}"},
                rerun=rerun, rerun_attempts=attempts)
    (out / "packages.txt").write_text(dpkg_l(packages))
    summary = read_summary(out / "summary.json")
    summary.update({"job": "upload-check", "run_id": f"r-{mode}", "image": {"hash": image},
                    "candidates": [{"package": c} for c in candidates]})
    (out / "summary.json").write_text(json.dumps(summary))
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("baseline")
    return {
        "base": run_dir(root, "base", packages=BASE_PACKAGES, image="img-1"),
        "regression": run_dir(root, "regression", packages=NEW_PACKAGES, image="img-2",
                              candidates=("keystone", "python3-keystone")),
        "flaky": run_dir(root, "flaky", packages=NEW_PACKAGES, image="img-1"),
        "known": run_dir(root, "known", packages=BASE_PACKAGES, image="img-1"),
    }


def judge(runs: dict[str, Path], mode: str, gate: str, tmp_path: Path,
          baseline: str = "base") -> tuple[ExitCode, dict[str, Any]]:
    # A copy: judging rewrites summary.json and report.html.
    import shutil

    out = tmp_path / mode
    shutil.copytree(runs[mode], out)
    verdict = judge_run(load_run(out), read_summary(out / "summary.json"), out,
                        baseline=runs[baseline], gate=gate, job="upload-check",
                        candidates={"keystone", "python3-keystone"}, image="img-2")
    return verdict.exit_code, read_summary(out / "summary.json")


def test_a_regression_that_persists_on_rerun_fails_the_gate(runs: dict[str, Path],
                                                            tmp_path: Path) -> None:
    code, summary = judge(runs, "regression", "regressions", tmp_path)
    assert code == ExitCode.TESTS_FAILED == 4
    b = summary["baseline"]
    assert b["regressions"] == [TEST + "test_regressed"]
    assert b["still_failing"] == [TEST + "test_known_broken"]
    assert b["new_tests"] == [TEST + "test_new_in_upload"]
    assert b["removed_tests"] == [TEST + "test_gone_in_upload"]
    assert b["flaky"] == [] and b["run_id"] == "r-base" and b["gate"] == "regressions"
    assert summary["exit_code"] == 4 and summary["verdict"].startswith("REGRESSION: 1 test")
    # It was re-run twice and failed every time.
    failure = next(f for f in summary["failures"] if f["id"] == TEST + "test_regressed")
    assert failure["attempts"] == ["failed", "failed", "failed"]


def test_a_new_failure_that_passes_on_rerun_is_flaky_listed_and_not_fatal(
        runs: dict[str, Path], tmp_path: Path) -> None:
    code, summary = judge(runs, "flaky", "regressions", tmp_path)
    assert code == ExitCode.OK
    assert summary["baseline"]["regressions"] == []
    assert summary["baseline"]["flaky"] == [TEST + "test_flaky"]
    assert summary["flaky"][0]["attempts"] == ["failed", "passed"]
    assert summary["verdict"] == "PASSED: no regression against the baseline (1 known failure)"
    report = (tmp_path / "flaky" / "report.html").read_text()
    assert "Flaky: failed, then passed on re-run (1)" in report


def test_a_failure_in_both_passes_under_regressions_and_fails_under_all(
        runs: dict[str, Path], tmp_path: Path) -> None:
    code, summary = judge(runs, "known", "regressions", tmp_path / "r")
    assert code == ExitCode.OK and summary["baseline"]["still_failing"] == \
        [TEST + "test_known_broken"]
    code, summary = judge(runs, "known", "all", tmp_path / "a")
    assert code == ExitCode.TESTS_FAILED
    assert summary["verdict"] == "FAILED: some tests failed"


def test_what_changed_beside_the_test_diff(runs: dict[str, Path], tmp_path: Path) -> None:
    _, summary = judge(runs, "regression", "regressions", tmp_path)
    changes = summary["changes"]
    assert changes["image"] == {"baseline": "img-1", "run": "img-2", "changed": True}
    assert changes["tempest"] == {"baseline": "1:41.0.0-1", "run": "1:42.0.0-1", "changed": True}
    p = changes["packages"]
    assert p["upgraded"] == [
        {"package": "keystone", "from": "2:27.0.0-1", "to": "2:27.0.0-2", "candidate": True},
        {"package": "python3-keystone", "from": "2:27.0.0-1", "to": "2:27.0.0-2",
         "candidate": True},
        {"package": "python3-tempest", "from": "1:41.0.0-1", "to": "1:42.0.0-1",
         "candidate": False}]
    assert p["downgraded"] == [{"package": "python3-oslo.db", "from": "16.0.0-1",
                                "to": "15.0.0-3", "candidate": False}]
    assert p["added"] == [{"package": "python3-jwt", "version": "2.10.1-1", "candidate": False}]
    assert p["removed"] == [{"package": "python3-routes", "version": "2.5.1-1",
                             "candidate": False}]
    html = (tmp_path / "regression" / "report.html").read_text()
    assert 'id="what-changed"' in html and 'id="package-changes"' in html
    assert html.index('id="baseline"') < html.index('id="failures"')


def test_dpkg_versions_compare_the_debian_way() -> None:
    changes = package_changes({"a": "1:1.0-1", "b": "1.0~rc1-1", "c": "1.0-1"},
                              {"a": "2.0-1", "b": "1.0-1", "c": "1.0-1+b1"})
    # An epoch wins over a bigger upstream version; ~ sorts before the release.
    assert [e["package"] for e in changes["downgraded"]] == ["a"]
    assert [e["package"] for e in changes["upgraded"]] == ["b", "c"]


def test_read_packages_takes_the_installed_ones(runs: dict[str, Path]) -> None:
    assert read_packages(runs["base"]) == BASE_PACKAGES
    assert read_packages(runs["base"] / "nowhere") is None


def test_latest_baseline_skips_runs_with_candidates(runs: dict[str, Path], dirs: Any) -> None:
    assert find_baseline("latest", "upload-check") is None
    base = store_run("upload-check", runs["base"])
    store_run("upload-check", runs["regression"])
    assert find_baseline("latest", "upload-check") == base
    assert find_baseline("latest", "other", "upload-check") == base
    assert find_baseline(str(runs["known"]), "upload-check") == runs["known"]


def test_a_run_without_test_results_is_never_the_baseline(runs: dict[str, Path], streams: Any,
                                                         tmp_path: Path, dirs: Any) -> None:
    """Stored runs that ended without a finished test run, newer than the real baseline."""
    import shutil

    base = store_run("upload-check", runs["base"])
    job = parse_job({"name": "upload-check"}, "j", "j")
    # Interrupted as tempest started: an empty stream, summary.json from `run` alone.
    interrupted = tmp_path / "interrupted"
    interrupted.mkdir()
    (interrupted / "tempest.subunit").write_bytes(b"")
    write_run_summary(RunContext(job, "tlc-int", interrupted, ()), ExitCode.INTERRUPTED,
                      "interrupted")
    # The guest died while tempest ran: a cut stream, exit 16, some tests counted.
    cut = tmp_path / "cut"
    cut.mkdir()
    shutil.copy(streams.cut, cut / "tempest.subunit")
    result = process_run(cut / "tempest.subunit", cut, {"job": "upload-check",
                                                        "run_id": "tlc-cut"})
    assert result.exit_code == ExitCode.TESTBED and result.summary["counts"]["total"] > 0
    # Nothing ran: every test skipped (exit 8).
    skipped = tmp_path / "skipped"
    skipped.mkdir()
    shutil.copy(streams.all_skipped, skipped / "tempest.subunit")
    process_run(skipped / "tempest.subunit", skipped, {"job": "upload-check",
                                                       "run_id": "tlc-skip"})
    for run in (interrupted, cut, skipped):
        stored = store_run("upload-check", run)
        # The newest stored run, but not a baseline.
        assert find_baseline("latest", "upload-check") == base, stored
    from tempest_live_ci.results.store import latest_run, read_index

    assert [e["exit_code"] for e in read_index("upload-check")] == [4, 130, 16, 8]
    assert latest_run("upload-check") == dirs.results / "upload-check" / "tlc-skip"


def test_results_show_reports_the_runs_gated_verdict(runs: dict[str, Path], tmp_path: Path,
                                                    tlc: Any) -> None:
    """`results show` and `results html` rebuild the summary from the stream: a run gated on
    regressions keeps the exit code and verdict it ended with."""
    for mode, expected, verdict in (
            ("known", 0, "PASSED: no regression against the baseline (1 known failure)"),
            ("regression", 4, "REGRESSION: 1 test failing that did not fail in the baseline"),
            ("flaky", 0, "PASSED: no regression against the baseline (1 known failure)")):
        code, judged = judge(runs, mode, "regressions", tmp_path)
        assert code == expected and judged["verdict"].startswith(verdict)
        out = tmp_path / mode
        shown = tlc("results", "show", str(out))
        assert shown.returncode == expected, shown.stdout + shown.stderr
        assert f"{verdict}" in shown.stdout and f"(exit {expected})" in shown.stdout
        assert "the results now say" not in shown.stderr
        summary = read_summary(out / "summary.json")
        assert summary["exit_code"] == expected and summary["verdict"].startswith(verdict)
        assert summary["baseline"]["gate"] == "regressions"
        assert summary["run_verdict"] == "FAILED: some tests failed"
        assert tlc("results", "html", str(out)).returncode == 0
        report = (out / "report.html").read_text()
        assert verdict in report and 'id="baseline"' in report
    # Gated on "all", the stream's own code stands.
    code, _ = judge(runs, "known", "all", tmp_path / "all")
    shown = tlc("results", "show", str(tmp_path / "all" / "known"))
    assert code == shown.returncode == 4


def test_the_run_judges_itself_against_the_stored_baseline(runs: dict[str, Path],
                                                          tmp_path: Path, dirs: Any) -> None:
    """run.py's baseline stage, as `run` calls it after the guest stages."""
    import shutil

    store_run("upload-check", runs["base"])
    job = parse_job({"name": "upload-check",
                     "results": {"baseline": "latest", "gate": "regressions"}}, "j", "j")
    for mode, expected in (("regression", 4), ("flaky", 0), ("known", 0)):
        out = tmp_path / mode
        shutil.copytree(runs[mode], out)
        ctx = RunContext(job, f"tlc-{mode}", out, ())
        ctx.facts["image"] = {"hash": "img-2"}
        code, note = _judge(ctx, ExitCode(read_summary(out / "summary.json")["exit_code"]),
                            None)
        assert code == expected, note
        write_run_summary(ctx, code, note)
        summary = read_summary(out / "summary.json")
        assert summary["exit_code"] == expected and summary["baseline"]["run_id"] == "r-base"
        assert "baseline" in summary["stages"]
    # A run that did not end in test results is not judged: its code stands.
    ctx = RunContext(job, "tlc-x", tmp_path / "regression", ())
    assert _judge(ctx, ExitCode.TESTBED, "broken") == (ExitCode.TESTBED, "broken")
