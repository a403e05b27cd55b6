"""`tempest-live-ci doctor`."""

import click


@click.command()
def doctor() -> None:
    """Check that this host can run jobs."""
