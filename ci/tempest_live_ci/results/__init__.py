"""The results stage: subunit → summary.json, junit.xml, report.html; re-runs; compare; store.

The orchestrator calls process_run() (and print_summary(), store_run()).
"""

from tempest_live_ci.results.compare import Comparison, compare_runs
from tempest_live_ci.results.flaky import rerun_failures, write_load_list
from tempest_live_ci.results.run import RunResult, load_run, print_summary, process_run
from tempest_live_ci.results.store import latest_run, store_run

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
