"""Compare two runs: new failures, fixed, still failing, newly skipped, appeared, disappeared."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

from tempest_live_ci import files
from tempest_live_ci.errors import ExitCode, UsageError
from tempest_live_ci.results.model import FAILING, FLAKY, PASSED, SKIPPED, XFAIL
from tempest_live_ci.results.names import STREAM, SUMMARY
from tempest_live_ci.results.run import load_run
from tempest_live_ci.results.summary import read_summary
from tempest_live_ci.terminal import printable

_GOOD = frozenset({PASSED, FLAKY, XFAIL})


@dataclass(frozen=True)
class Comparison:
    base: str
    new: str
    # Failing in NEW and not failing in BASE (including tests BASE did not run).
    new_failures: tuple[str, ...]
    fixed: tuple[str, ...]
    still_failing: tuple[str, ...]
    newly_skipped: tuple[str, ...]
    newly_flaky: tuple[str, ...]
    appeared: tuple[str, ...]
    disappeared: tuple[str, ...]

    def to_json(self) -> dict[str, object]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def compare_statuses(base: Mapping[str, str], new: Mapping[str, str], *,
                     base_name: str = "base", new_name: str = "new") -> Comparison:
    def pick(condition: Callable[[str], bool]) -> tuple[str, ...]:
        return tuple(sorted(t for t in new if condition(t)))

    return Comparison(
        base=base_name,
        new=new_name,
        new_failures=pick(lambda t: new[t] in FAILING and base.get(t) not in FAILING),
        fixed=tuple(sorted(t for t in base if base[t] in FAILING and new.get(t) in _GOOD)),
        still_failing=pick(lambda t: new[t] in FAILING and base.get(t) in FAILING),
        newly_skipped=pick(lambda t: new[t] == SKIPPED and t in base and base[t] != SKIPPED),
        newly_flaky=pick(lambda t: new[t] == FLAKY and base.get(t) != FLAKY),
        appeared=pick(lambda t: t not in base),
        disappeared=tuple(sorted(t for t in base if t not in new)),
    )


def statuses_of(source: Path) -> dict[str, str]:
    """Every test's final status in a stream or run directory (streams, else summary.json)."""
    if source.is_dir() and not files.exists(source / STREAM):
        summary = source / SUMMARY
        if not files.exists(summary):
            raise UsageError(f"{source}: neither {STREAM} nor {SUMMARY} in this directory")
        tests = read_summary(summary).get("tests")
        if not isinstance(tests, dict):
            raise UsageError(f"{summary}: no 'tests' table (written by an older version?)")
        return {str(k): str(v) for k, v in tests.items()}
    return load_run(source).statuses()


def compare_runs(base: Path, new: Path) -> Comparison:
    return compare_statuses(statuses_of(base), statuses_of(new),
                            base_name=str(base), new_name=str(new))


def gate_exit_code(comparison: Comparison) -> ExitCode:
    """4 only for new failures: what failed before too is not this change's fault."""
    return ExitCode.TESTS_FAILED if comparison.new_failures else ExitCode.OK


def format_comparison(comparison: Comparison, *, limit: int = 50) -> str:
    lines = [f"base: {printable(comparison.base)}", f"new:  {printable(comparison.new)}"]
    for title, ids in (
        ("new failures", comparison.new_failures),
        ("fixed", comparison.fixed),
        ("still failing", comparison.still_failing),
        ("newly skipped", comparison.newly_skipped),
        ("newly flaky", comparison.newly_flaky),
        ("appeared", comparison.appeared),
        ("disappeared", comparison.disappeared),
    ):
        lines.append(f"{title}: {len(ids)}")
        lines.extend(f"  {printable(t)}" for t in ids[:limit])
        if len(ids) > limit:
            lines.append(f"  ... and {len(ids) - limit} more")
    return "\n".join(lines) + "\n"
