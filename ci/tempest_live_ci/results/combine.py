"""`results combine NAME JOB...`: the newest stored run of each job, as one report.

A nightly too long for one machine's night is split into shards, each a
job of its own (one profile, that profile's tests) with its own stored runs,
baseline and history; run one after another on one host, or at the same
time on several that share the results store. This puts the shards of one
night side by side: each shard's verdict, counts and time, the totals, and
what the shards leave out, said rather than hidden:

- a shard with no stored run, or whose newest run ended before its tests
  did (the combined verdict is then incomplete);
- a shard whose newest run is older than the night of the others (stale);
- each shard's selection (its profile's services, its regex, smoke only,
  its exclude list), the tests not run after a class was skipped;
- with --reference JOB (a stored run of the whole nightly, e.g. from a
  host with KVM): every test of that run that no shard ran.

The exit code is the worst shard's: 0 only if every shard passed.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tempest_live_ci import files
from tempest_live_ci.deploy.profiles import PROFILES
from tempest_live_ci.errors import ExitCode, UsageError
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.results.names import SUMMARY
from tempest_live_ci.results.store import job_dir, latest_run, valid_name
from tempest_live_ci.results.summary import read_summary
from tempest_live_ci.yamlfile import bounded_loader

if TYPE_CHECKING:
    import yaml
else:
    yaml = lazy_module("yaml")

JOB_FILE = "job.yaml"
JOB_LIMIT = 1024 * 1024
# A shard started this long before the newest one is not of the same night.
STALE_AFTER = timedelta(hours=20)
# The tests of the reference run that no shard ran, listed in full up to this many.
LISTED = 200
_FINISHED = (ExitCode.OK, ExitCode.TESTS_FAILED)


@dataclass(frozen=True)
class Shard:
    job: str
    run_dir: Path | None
    summary: Mapping[str, Any]
    selection: Mapping[str, Any]
    stale: bool = False

    @property
    def exit_code(self) -> int:
        code = self.summary.get("exit_code")
        return code if isinstance(code, int) else ExitCode.TESTBED

    @property
    def finished(self) -> bool:
        return self.run_dir is not None and self.exit_code in _FINISHED

    @property
    def counts(self) -> Mapping[str, int]:
        counts = self.summary.get("counts")
        return counts if isinstance(counts, dict) else {}

    @property
    def tests(self) -> Mapping[str, str]:
        tests = self.summary.get("tests")
        return tests if isinstance(tests, dict) else {}

    @property
    def tests_chosen(self) -> tuple[str | None, bool]:
        """The regex and smoke flag the run went by: the job's, or (when the job
        chose no tests) its profile's, as the guest's plan has it."""
        selected = self.selection
        if selected.get("regex") or selected.get("smoke") or selected.get("include_list"):
            return selected.get("regex"), bool(selected.get("smoke"))
        name = selected.get("profile")
        profile = PROFILES.get(name) if isinstance(name, str) else None
        if profile is None:
            return None, False
        return profile.default_regex, profile.default_smoke

    @property
    def start(self) -> datetime | None:
        return _date(self.summary.get("start"))

    @property
    def duration(self) -> float | None:
        stages = self.summary.get("stages")
        total = stages.get("total") if isinstance(stages, dict) else None
        return float(total) if isinstance(total, int | float) else None


@dataclass(frozen=True)
class Combined:
    name: str
    shards: list[Shard]
    reference: Shard | None = None
    # Tests of the reference run no shard ran, sorted.
    left_out: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        codes = [s.exit_code if s.run_dir is not None else ExitCode.TESTBED
                 for s in self.shards]
        if any(s.stale for s in self.shards):
            codes.append(ExitCode.TESTBED)
        return max(codes, default=ExitCode.NO_TESTS)

    @property
    def totals(self) -> dict[str, int]:
        totals: dict[str, int] = {}
        for shard in self.shards:
            for key, value in shard.counts.items():
                if isinstance(value, int):
                    totals[key] = totals.get(key, 0) + value
        return totals

    @property
    def duration(self) -> float:
        return sum(s.duration or 0.0 for s in self.shards)


def _date(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        return None


def _selection(run_dir: Path, summary: Mapping[str, Any]) -> dict[str, Any]:
    """What the run selected: its profile, regex, smoke, exclude list (from its job.yaml)."""
    metadata = summary.get("metadata")
    profile = metadata.get("profile") if isinstance(metadata, dict) else None
    selected: dict[str, Any] = {"profile": profile if isinstance(profile, str) else None}
    path = run_dir / JOB_FILE
    if not files.exists(path):
        return selected
    loader = bounded_loader()(files.read_regular(path, limit=JOB_LIMIT).decode("utf-8", "replace"))
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as e:
        raise UsageError(f"{path}: not the job a run stores: {files.quoted(str(e))}") from e
    finally:
        loader.dispose()
    tempest = data.get("tempest") if isinstance(data, dict) else None
    if isinstance(tempest, dict):
        for key in ("regex", "smoke", "exclude_regex", "include_list", "exclude_list"):
            value = tempest.get(key)
            if isinstance(value, str | bool) or value is None:
                selected[key] = value
    return selected


def load_shard(job: str) -> Shard:
    if not valid_name(job):
        raise UsageError(f"{files.quoted(job)} is not a valid job name")
    run_dir = latest_run(job)
    if run_dir is None:
        return Shard(job, None, {}, {})
    summary = read_summary(run_dir / SUMMARY)
    return Shard(job, run_dir, summary, _selection(run_dir, summary))


def combine(name: str, jobs: Sequence[str], *, reference: str | None = None) -> Combined:
    """The newest stored run of each job in `jobs`, as the shards of `name`."""
    if not valid_name(name):
        raise UsageError(f"{files.quoted(name)} is not a valid name for the combined report")
    if len(set(jobs)) != len(jobs):
        twice = sorted({j for j in jobs if jobs.count(j) > 1})
        raise UsageError(f"job {files.quoted(twice[0])} is named twice")
    shards = [load_shard(job) for job in jobs]
    starts = [s.start for s in shards if s.start is not None]
    if starts:
        newest = max(starts)
        shards = [Shard(s.job, s.run_dir, s.summary, s.selection,
                        stale=s.start is not None and newest - s.start > STALE_AFTER)
                  for s in shards]
    if reference is None:
        return Combined(name, shards)
    whole = load_shard(reference)
    ran = set().union(*(s.tests.keys() for s in shards))
    left = sorted(set(whole.tests) - ran)
    return Combined(name, shards, whole, left)


def _minutes(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{secs:02d}s"


def _scope(shard: Shard) -> str:
    selected = shard.selection
    if not selected:
        return "-"
    regex, smoke = shard.tests_chosen
    words = [f"profile {selected.get('profile') or '?'}",
             f"regex {regex}" if regex else "all of tempest"]
    if smoke:
        words.append("smoke only")
    if selected.get("exclude_regex"):
        words.append(f"minus {selected['exclude_regex']}")
    if selected.get("exclude_list"):
        words.append(f"minus {Path(str(selected['exclude_list'])).name}")
    if selected.get("include_list"):
        words.append(f"only {Path(str(selected['include_list'])).name}")
    return ", ".join(words)


def _state(shard: Shard) -> str:
    if shard.run_dir is None:
        return "no stored run"
    state = f"exit {shard.exit_code}"
    if not shard.finished:
        state += " (ended before its tests did)"
    if shard.stale:
        state += " (stale: not of this night)"
    return state


def _verdict(combined: Combined) -> str:
    code = combined.exit_code
    if code == ExitCode.OK:
        return "PASSED: every shard passed"
    if code == ExitCode.TESTS_FAILED:
        return "FAILED: tests failed in a shard"
    return "INCOMPLETE: a shard is missing, stale or ended before its tests did"


def render_text(combined: Combined) -> str:
    lines = [f"{combined.name}: {_verdict(combined)} (exit {combined.exit_code})", ""]
    header = f"{'shard':<28} {'run':<14} {'state':<14} {'pass':>5} {'fail':>5} {'err':>4} " \
             f"{'skip':>5} {'notrun':>6} {'time':>7}  selection"
    lines.append(header)
    for shard in combined.shards:
        c = shard.counts
        lines.append(
            f"{shard.job:<28} {(shard.run_dir.name if shard.run_dir else '-'):<14} "
            f"{_state(shard):<14} {c.get('passed', 0):>5} {c.get('failed', 0):>5} "
            f"{c.get('error', 0):>4} {c.get('skipped', 0):>5} {c.get('not_run', 0):>6} "
            f"{_minutes(shard.duration):>7}  {_scope(shard)}")
    t = combined.totals
    lines.append(f"{'total':<28} {'':<14} {'':<14} {t.get('passed', 0):>5} "
                 f"{t.get('failed', 0):>5} {t.get('error', 0):>4} {t.get('skipped', 0):>5} "
                 f"{t.get('not_run', 0):>6} {_minutes(combined.duration):>7}  "
                 "one after another")
    lines.append("")
    lines.extend(_left_out_lines(combined))
    return "\n".join(lines) + "\n"


def _left_out_lines(combined: Combined) -> list[str]:
    lines = ["Left out:"]
    missing = [s.job for s in combined.shards if s.run_dir is None]
    if missing:
        lines.append(f"  shards with no stored run: {', '.join(missing)}")
    unfinished = [s.job for s in combined.shards if s.run_dir is not None and not s.finished]
    if unfinished:
        lines.append(f"  shards whose tests did not finish: {', '.join(unfinished)}")
    stale = [s.job for s in combined.shards if s.stale]
    if stale:
        lines.append(f"  shards not of this night: {', '.join(stale)}")
    smoke = [s.job for s in combined.shards if s.tests_chosen[1]]
    if smoke:
        lines.append(f"  smoke tests only in: {', '.join(smoke)}")
    not_run = combined.totals.get("not_run", 0)
    if not_run:
        lines.append(f"  {not_run} tests not run after their class was skipped")
    if combined.reference is None:
        lines.append("  tests that need services of two shards at once (e.g. a server booted "
                     "from a volume): no --reference run to count them")
    elif combined.reference.run_dir is None:
        lines.append(f"  reference {combined.reference.job}: no stored run")
    else:
        lines.append(f"  {len(combined.left_out)} tests of {combined.reference.job} "
                     f"{combined.reference.run_dir.name} that no shard ran")
        lines.extend(f"    {test}" for test in combined.left_out[:LISTED])
        if len(combined.left_out) > LISTED:
            lines.append(f"    ... and {len(combined.left_out) - LISTED} more")
    if len(lines) == 1:
        lines.append("  nothing")
    return lines


def render_html(combined: Combined) -> str:
    """A page of the shards, standalone (no script, nothing fetched)."""
    e = html.escape
    rows = []
    for shard in combined.shards:
        c = shard.counts
        run = shard.run_dir.name if shard.run_dir else "-"
        link = f'<a href="{e(shard.job)}/{e(run)}/report.html">{e(run)}</a>' \
            if shard.run_dir else "-"
        bad = shard.run_dir is None or not shard.finished or shard.stale \
            or shard.exit_code != ExitCode.OK
        rows.append(
            f"<tr{' class=bad' if bad else ''}><td>{e(shard.job)}</td><td>{link}</td>"
            f"<td>{e(_state(shard))}</td>"
            + "".join(f"<td class=n>{int(c.get(k, 0))}</td>"
                      for k in ("passed", "failed", "error", "skipped", "not_run"))
            + f"<td class=n>{e(_minutes(shard.duration))}</td><td>{e(_scope(shard))}</td></tr>")
    t = combined.totals
    rows.append("<tr class=total><td>total</td><td></td><td></td>"
                + "".join(f"<td class=n>{int(t.get(k, 0))}</td>"
                          for k in ("passed", "failed", "error", "skipped", "not_run"))
                + f"<td class=n>{e(_minutes(combined.duration))}</td>"
                  "<td>one after another</td></tr>")
    left = "".join(f"<li>{e(line.strip())}</li>" for line in _left_out_lines(combined)[1:])
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{e(combined.name)}: {e(_verdict(combined))}</title>
<style>
body {{ font: 14px/1.4 sans-serif; margin: 1.5em; }}
table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 2px 8px; text-align: left; }}
td.n {{ text-align: right; font-variant-numeric: tabular-nums; }}
tr.bad td {{ background: #fde8e8; }}
tr.total td {{ font-weight: bold; }}
</style></head><body>
<h1>{e(combined.name)}</h1>
<p><b>{e(_verdict(combined))}</b> (exit {combined.exit_code}), {len(combined.shards)} shards</p>
<table>
<tr><th>shard</th><th>run</th><th>state</th><th>passed</th><th>failed</th><th>error</th>
<th>skipped</th><th>not run</th><th>time</th><th>selection</th></tr>
{chr(10).join(rows)}
</table>
<h2>Left out</h2>
<ul>{left}</ul>
</body></html>
"""


def write_html_in_store(combined: Combined) -> Path:
    """The page as RESULTS/NAME.html beside the jobs' directories (its links are relative)."""
    return files.write_text(job_dir(combined.name).parent / f"{combined.name}.html",
                            render_html(combined))


def as_json(combined: Combined) -> dict[str, Any]:
    return {
        "name": combined.name,
        "exit_code": combined.exit_code,
        "verdict": _verdict(combined),
        "totals": combined.totals,
        "duration": combined.duration,
        "shards": [{"job": s.job, "run_id": s.run_dir.name if s.run_dir else None,
                    "exit_code": s.exit_code if s.run_dir else None, "finished": s.finished,
                    "stale": s.stale, "counts": dict(s.counts), "duration": s.duration,
                    "selection": dict(s.selection)} for s in combined.shards],
        "reference": None if combined.reference is None else {
            "job": combined.reference.job,
            "run_id": combined.reference.run_dir.name if combined.reference.run_dir else None,
            "left_out": combined.left_out},
    }
