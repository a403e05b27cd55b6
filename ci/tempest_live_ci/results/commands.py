"""`tempest-live-ci results ...`."""

from __future__ import annotations

import contextlib
import importlib
import json
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import click

from tempest_live_ci import files
from tempest_live_ci.errors import UsageError
from tempest_live_ci.options import Renamed
from tempest_live_ci.results import actions
from tempest_live_ci.results import combine as combined
from tempest_live_ci.results.store import HISTORY, job_dir

# The libraries (subunit, testtools, jinja2, PyYAML) are imported when a
# command uses them (lazy.py): `--help` and shell completion load none.

_SOURCE = click.Path(exists=True, path_type=Path)


def _import_reader() -> None:
    """Import the stream reader's python-subunit (and testtools) in a thread of its own.

    CPython 3.11 keeps a thread's frames in 16 KiB chunks and frees a chunk
    as soon as the call that opened it returns. The ~450 modules subunit and
    testtools bring, imported from deep under click, crossed such a boundary
    over and over: some 3,000 mmap and munmap calls, a tenth of `results
    junit` on a tempest stream. A new thread imports them from an empty stack.
    A failing import fails again below, in this thread, and is reported there.
    """

    def load() -> None:
        with contextlib.suppress(Exception):
            importlib.import_module("subunit")

    loader = threading.Thread(target=load, name="import-subunit", daemon=True)
    loader.start()
    loader.join()


@click.group()
def results() -> None:
    """Summaries, JUnit and HTML reports, comparisons of tempest runs."""


@results.command()
@click.argument("source", type=_SOURCE, metavar="DIR_OR_SUBUNIT")
@click.option("--output", "-o", "--output-dir", "output_dir", cls=Renamed, shown=2, metavar="DIR",
              type=click.Path(path_type=Path),
              help="Output directory: summary.json goes there (default: DIR itself).")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json on stdout.")
def show(source: Path, output_dir: Path | None, as_json: bool) -> int:
    """Summarize a run; exit with the run's code (0 passed, 4 failed, 8 no tests, 16 incomplete)."""
    _import_reader()
    return actions.show(source, output_dir=output_dir, as_json=as_json)


def _report_command(name: str, default: str, about: str) -> None:
    """`results junit` and `results html`: a report of a run directory or a stream."""
    @results.command(name, help=about)
    @click.argument("source", type=_SOURCE, metavar="DIR_OR_SUBUNIT")
    @click.option("--file", "-f", "-o", "--output", "output", cls=Renamed, shown=2,
                  metavar="FILE", help=f"File to write, '-' for stdout (default: DIR/{default}).")
    def report(source: Path, output: str | None) -> int:
        _import_reader()
        write: Callable[..., int] = getattr(actions, name)
        return write(source, output=output)


_report_command("junit", "junit.xml", "Write a JUnit XML report (GitLab, Jenkins).")
_report_command("html", "report.html", "Write a self-contained HTML report.")


@results.command()
@click.argument("sources", nargs=-1, required=True, type=_SOURCE, metavar="[BASE] NEW")
@click.option("--job", help="Without BASE: compare with this job's latest stored run.")
@click.option("--gate", is_flag=True, help="Exit 4 if NEW has failures BASE did not have.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON on stdout.")
def compare(sources: tuple[Path, ...], job: str | None, gate: bool, as_json: bool) -> int:
    """Compare two runs (directories or streams): new failures, fixed, still failing, ..."""
    _import_reader()
    return actions.compare(sources, job=job, gate=gate, as_json=as_json)


@results.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Print the index as JSON on stdout.")
@click.option("--html", metavar="FILE", help="Write an HTML page of the runs ('-' for stdout): "
              "counts, durations, a per-test status grid, the tests that flip.")
@click.option("--html-in-store", is_flag=True,
              help="Write that page as history.html beside the job's runs in the results store.")
@click.option("--last", type=int, default=30, show_default=True, help="How many runs, newest.")
@click.option("--test", "test", metavar="ID", help="Print this test's story over the runs: "
              "failing since, last passed, flake rate, durations.")
def history(job: str, as_json: bool, html: str | None, html_in_store: bool, last: int,
            test: str | None) -> int:
    """List the stored runs of JOB, or show them on an HTML page."""
    if html_in_store:
        if html is not None:
            raise UsageError("--html-in-store: cannot be combined with --html")
        html = str(job_dir(job) / HISTORY)

    return actions.history(job, as_json=as_json, html=html, last=last, test=test)


@results.command()
@click.argument("job")
@click.argument("output_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                metavar="DIR")
def store(job: str, output_dir: Path) -> int:
    """Keep a run directory in the results store as JOB's latest run."""
    return actions.store(job, output_dir)


@results.command()
@click.argument("name")
@click.argument("jobs", nargs=-1, required=True, metavar="JOB...")
@click.option("--reference", metavar="JOB",
              help="A job whose newest stored run is the whole nightly (e.g. from a host with "
                   "KVM): its tests that no shard ran are listed.")
@click.option("--json", "as_json", is_flag=True, help="Print the combined report as JSON.")
@click.option("--html", metavar="FILE", help="Write the report as an HTML page ('-' for stdout).")
@click.option("--html-in-store", is_flag=True,
              help="Write that page as NAME.html in the results store, beside the jobs.")
def combine(name: str, jobs: tuple[str, ...], reference: str | None, as_json: bool,
            html: str | None, html_in_store: bool) -> int:
    """Report the newest stored run of each JOB (the shards of a nightly) as NAME.

    Exit with the worst shard's code; a shard with no stored run, a stale one
    (not of the same night) or one that ended before its tests did is 16.
    """
    if html_in_store and html is not None:
        raise UsageError("--html-in-store: cannot be combined with --html")
    report = combined.combine(name, list(jobs), reference=reference)
    if as_json:
        sys.stdout.write(json.dumps(combined.as_json(report), indent=1) + "\n")
    else:
        sys.stdout.write(combined.render_text(report))
    if html == "-":
        sys.stdout.write(combined.render_html(report))
    elif html is not None:
        files.write_text(Path(html), combined.render_html(report))
    if html_in_store:
        combined.write_html_in_store(report)
    return report.exit_code
