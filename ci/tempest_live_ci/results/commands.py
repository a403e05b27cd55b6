"""`tempest-live-ci results ...`."""

import click


@click.group()
def results() -> None:
    """Summaries, JUnit and HTML reports, comparisons of tempest runs."""
