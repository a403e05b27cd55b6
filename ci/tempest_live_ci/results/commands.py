"""`tempest-live-ci results ...`."""

from __future__ import annotations

from pathlib import Path

import click

# The actions (subunit, testtools, jinja2) are imported by each command when
# it runs: `--help` and shell completion only need the options.

_SOURCE = click.Path(exists=True, path_type=Path)


@click.group()
def results() -> None:
    """Summaries, JUnit and HTML reports, comparisons of tempest runs."""


@results.command()
@click.argument("source", type=_SOURCE, metavar="DIR_OR_SUBUNIT")
@click.option("-o", "--output-dir", type=click.Path(path_type=Path),
              help="Write summary.json here (default: DIR itself).")
@click.option("--json", "as_json", is_flag=True, help="Print summary.json on stdout.")
def show(source: Path, output_dir: Path | None, as_json: bool) -> int:
    """Summarize a run; exit with the run's code (0 passed, 4 failed, 8 no tests, 16 incomplete)."""
    from tempest_live_ci.results import actions

    return actions.show(source, output_dir=output_dir, as_json=as_json)


@results.command()
@click.argument("source", type=_SOURCE, metavar="DIR_OR_SUBUNIT")
@click.option("-o", "--output", help="File to write, '-' for stdout (default: DIR/junit.xml).")
def junit(source: Path, output: str | None) -> int:
    """Write a JUnit XML report (GitLab, Jenkins)."""
    from tempest_live_ci.results import actions

    return actions.junit(source, output=output)


@results.command()
@click.argument("source", type=_SOURCE, metavar="DIR_OR_SUBUNIT")
@click.option("-o", "--output", help="File to write, '-' for stdout (default: DIR/report.html).")
def html(source: Path, output: str | None) -> int:
    """Write a self-contained HTML report."""
    from tempest_live_ci.results import actions

    return actions.html(source, output=output)


@results.command()
@click.argument("sources", nargs=-1, required=True, type=_SOURCE, metavar="[BASE] NEW")
@click.option("--job", help="Without BASE: compare with this job's latest stored run.")
@click.option("--gate", is_flag=True, help="Exit 4 if NEW has failures BASE did not have.")
@click.option("--json", "as_json", is_flag=True, help="Print the comparison as JSON on stdout.")
def compare(sources: tuple[Path, ...], job: str | None, gate: bool, as_json: bool) -> int:
    """Compare two runs (directories or streams): new failures, fixed, still failing, ..."""
    from tempest_live_ci.results import actions

    return actions.compare(sources, job=job, gate=gate, as_json=as_json)


@results.command()
@click.argument("job")
@click.option("--json", "as_json", is_flag=True, help="Print the index as JSON on stdout.")
def history(job: str, as_json: bool) -> int:
    """List the stored runs of JOB."""
    from tempest_live_ci.results import actions

    return actions.history(job, as_json=as_json)


@results.command()
@click.argument("job")
@click.argument("output_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                metavar="DIR")
def store(job: str, output_dir: Path) -> int:
    """Keep a run directory in the results store as JOB's latest run."""
    from tempest_live_ci.results import actions

    return actions.store(job, output_dir)
