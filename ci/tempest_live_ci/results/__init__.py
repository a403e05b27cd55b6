"""The results stage: subunit → summary.json, junit.xml, report.html; re-runs; compare; store.

The orchestrator calls process_run() (and print_summary(), store_run()).

The names below are imported on first use (PEP 562): importing a submodule
(results.commands for the command line) does not load subunit, testtools and
jinja2 with them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tempest_live_ci.lazy import package_attributes

if TYPE_CHECKING:
    from tempest_live_ci.results.compare import Comparison, compare_runs
    from tempest_live_ci.results.flaky import rerun_failures, write_load_list
    from tempest_live_ci.results.run import RunResult, load_run, print_summary, process_run
    from tempest_live_ci.results.store import latest_run, store_run

_WHERE = {
    "Comparison": "compare",
    "compare_runs": "compare",
    "rerun_failures": "flaky",
    "write_load_list": "flaky",
    "RunResult": "run",
    "load_run": "run",
    "print_summary": "run",
    "process_run": "run",
    "latest_run": "store",
    "store_run": "store",
}

__all__ = [
    "Comparison",
    "RunResult",
    "compare_runs",
    "latest_run",
    "load_run",
    "print_summary",
    "process_run",
    "rerun_failures",
    "store_run",
    "write_load_list",
]


__getattr__ = package_attributes(__name__, _WHERE)
