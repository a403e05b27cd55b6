"""A run judged against its baseline: the test diff, what changed beside it, the gate.

    find_baseline()   results.baseline: "latest" (the newest stored run of the
                      baseline job that tested no candidates) or a run directory
    what_changed()    package versions (added, removed, upgraded, downgraded,
                      candidates marked), image, tempest: what can explain a regression
    judge_run()       the comparison and the changes into summary.json and
                      report.html; the exit code under results.gate

The gates: "all" fails the run (exit 4) on any failure; "regressions" only
on a test that fails now, did not fail in the baseline, and failed again on
every re-run (a test that passed on a re-run is flaky: listed, not fatal).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tempest_live_ci import files
from tempest_live_ci.errors import ExitCode, UsageError
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import log
from tempest_live_ci.results.compare import Comparison, compare_statuses, statuses_of
from tempest_live_ci.results.html import write_html
from tempest_live_ci.results.model import FAILING, FLAKY, Run
from tempest_live_ci.results.names import HTML, LATEST, SUMMARY
from tempest_live_ci.results.store import latest_run
from tempest_live_ci.results.summary import read_summary, run_fact, write_summary

if TYPE_CHECKING:
    from debian import debian_support
else:
    debian_support = lazy_module("debian.debian_support")

PACKAGES = "packages.txt"
# `dpkg -l` of a whole cloud is some 200 KiB.
_PACKAGES_LIMIT = 16 * 1024 * 1024
# The package whose version is "the tempest version" of a run.
TEMPEST_PACKAGES = ("python3-tempest", "tempest")


@dataclass(frozen=True)
class Judgement:
    exit_code: ExitCode
    verdict: str
    comparison: Comparison
    baseline: dict[str, Any]
    changes: dict[str, Any] | None


def find_baseline(spec: str, job_name: str, baseline_job: str | None = None) -> Path | None:
    """The baseline run directory; None when "latest" finds no stored run."""
    if spec == LATEST:
        return latest_run(baseline_job or job_name, without_candidates=True)
    path = Path(spec)
    if not path.is_dir():
        raise UsageError(f"results.baseline: {spec}: no such run directory")
    return path


def read_packages(run_dir: Path) -> dict[str, str] | None:
    """Installed package → version from a run's packages.txt (`dpkg -l`); None if it has none."""
    path = run_dir / PACKAGES
    if not files.exists(path):
        return None
    versions = {}
    text = files.read_regular(path, limit=_PACKAGES_LIMIT).decode("utf-8", errors="replace")
    for line in text.splitlines():
        fields = line.split()
        # "ii  keystone  2:27.0.0-1  all  OpenStack identity": installed ("i" in the
        # second column), whatever was wanted (held "hi" included).
        if len(fields) >= 3 and len(fields[0]) == 2 and fields[0][1] == "i":
            versions[fields[1].split(":")[0]] = fields[2]
    return versions


def _compare_versions(a: str, b: str) -> int:
    return int(debian_support.version_compare(a, b))


def package_changes(base: Mapping[str, str], new: Mapping[str, str],
                    candidates: Collection[str] = ()) -> dict[str, list[dict[str, Any]]]:
    """Added, removed, upgraded and downgraded packages; candidates marked."""
    changes: dict[str, list[dict[str, Any]]] = {"added": [], "removed": [], "upgraded": [],
                                                "downgraded": []}
    for name in sorted(set(base) | set(new)):
        mark = {"candidate": name in candidates}
        if name not in base:
            changes["added"].append({"package": name, "version": new[name], **mark})
        elif name not in new:
            changes["removed"].append({"package": name, "version": base[name], **mark})
        elif base[name] != new[name]:
            kind = "upgraded" if _compare_versions(new[name], base[name]) > 0 else "downgraded"
            changes[kind].append({"package": name, "from": base[name], "to": new[name], **mark})
    return changes


def _tempest_version(packages: Mapping[str, str] | None) -> str | None:
    for name in TEMPEST_PACKAGES:
        if packages and name in packages:
            return packages[name]
    return None


def _image_hash(summary: Mapping[str, Any]) -> str | None:
    image = summary.get("image")
    if isinstance(image, dict) and isinstance(image.get("hash"), str):
        return str(image["hash"])
    return None


def what_changed(base_dir: Path, new_dir: Path, *, new_image: str | None,
                 candidates: Collection[str] = ()) -> dict[str, Any]:
    """What differs between the baseline's run and this one, besides the tests."""
    base_packages, new_packages = read_packages(base_dir), read_packages(new_dir)
    base_image = _image_hash(read_summary(base_dir / SUMMARY)) if base_dir.is_dir() else None
    result: dict[str, Any] = {
        "image": {"baseline": base_image, "run": new_image,
                  "changed": base_image != new_image},
        "tempest": {"baseline": _tempest_version(base_packages),
                    "run": _tempest_version(new_packages)},
    }
    result["tempest"]["changed"] = result["tempest"]["baseline"] != result["tempest"]["run"]
    if base_packages is None or new_packages is None:
        missing = [str(d / PACKAGES) for d, p in ((base_dir, base_packages),
                                                  (new_dir, new_packages)) if p is None]
        result["packages"] = None
        result["note"] = f"no package list to compare: {', '.join(missing)} missing"
    else:
        result["packages"] = package_changes(base_packages, new_packages, candidates)
    return result


def _gate_code(run_code: ExitCode, gate: str, comparison: Comparison) -> ExitCode:
    if run_code not in (ExitCode.OK, ExitCode.TESTS_FAILED) or gate == "all":
        return run_code
    return ExitCode.TESTS_FAILED if comparison.new_failures else ExitCode.OK


def _verdict(code: ExitCode, gate: str, comparison: Comparison, run_verdict: str) -> str:
    if gate == "all" or code not in (ExitCode.OK, ExitCode.TESTS_FAILED):
        return run_verdict
    return _gated_verdict(len(comparison.new_failures), len(comparison.still_failing))


def _gated_verdict(n: int, known: int) -> str:
    if n:
        return (f"REGRESSION: {n} test{'s' * (n != 1)} failing that did not fail in the "
                "baseline (and failed again on re-run)")
    return "PASSED: no regression against the baseline" + (
        f" ({known} known failure{'s' * (known != 1)})" if known else "")


def gated(summary: Mapping[str, Any], recorded: Mapping[str, Any]) -> dict[str, Any]:
    """A summary rebuilt from the stream (`results show`, `results html`) under the gate the
    run was judged by: its judgement (recorded["baseline"], written by judge_run) is the
    run's own, and a rebuild must not turn it back into the ungated exit code."""
    described = recorded.get("baseline")
    if not isinstance(described, dict) or described.get("gate") != "regressions":
        return dict(summary)
    run_code = ExitCode(summary["exit_code"])
    if run_code not in (ExitCode.OK, ExitCode.TESTS_FAILED):
        return dict(summary)  # the gate judges finished test runs only (_gate_code)
    regressions = described.get("regressions") or []
    code = ExitCode.TESTS_FAILED if regressions else ExitCode.OK
    verdict = _gated_verdict(len(regressions), len(described.get("still_failing") or []))
    return {**summary, "exit_code": int(code), "verdict": verdict,
            "run_verdict": summary["verdict"]}


def judge_run(run: Run, summary: Mapping[str, Any], output_dir: Path, *, baseline: Path | None,
              gate: str, job: str, candidates: Collection[str] = (),
              image: str | None = None) -> Judgement:
    """Compare a finished run with its baseline; rewrite summary.json and report.html."""
    new = run.statuses()
    if baseline is None:
        base: dict[str, str] = {}
        described: dict[str, Any] = {
            "path": None, "gate": gate,
            "note": f"no stored run of {job} without candidates to compare with: every "
                    "failure counts as new"}
        log.warning("no baseline for job %s: every failure counts as new", job)
    else:
        base = statuses_of(baseline)
        base_summary = read_summary(baseline / SUMMARY)
        described = {"path": str(baseline), "gate": gate,
                     "run_id": run_fact(base_summary, "run_id"),
                     "job": run_fact(base_summary, "job"),
                     "start": base_summary.get("start"),
                     "exit_code": base_summary.get("exit_code")}
    comparison = compare_statuses(base, new, base_name=str(baseline or "none"),
                                  new_name=str(output_dir))
    run_code = ExitCode(summary["exit_code"])
    code = _gate_code(run_code, gate, comparison)
    described.update({
        "regressions": list(comparison.new_failures),
        "fixed": list(comparison.fixed),
        "still_failing": list(comparison.still_failing),
        # Every flaky test of this run, new or not: listed, never hidden.
        "flaky": sorted(t for t, s in new.items() if s == FLAKY),
        "new_tests": list(comparison.appeared),
        "removed_tests": list(comparison.disappeared),
        "newly_skipped": list(comparison.newly_skipped),
        "failing": sorted(t for t, s in new.items() if s in FAILING),
    })
    changes = what_changed(baseline, output_dir, new_image=image, candidates=candidates) \
        if baseline is not None else None
    verdict = _verdict(code, gate, comparison, str(summary["verdict"]))
    updated = {**summary, "exit_code": int(code), "verdict": verdict,
               "run_verdict": summary["verdict"], "baseline": described, "changes": changes}
    write_summary(updated, output_dir / SUMMARY)
    write_html(run, updated, output_dir / HTML)
    return Judgement(code, verdict, comparison, described, changes)
