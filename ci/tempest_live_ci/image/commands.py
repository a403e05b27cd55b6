"""`tempest-live-ci image ...` (live-build wrapper)."""

import click


@click.group()
def image() -> None:
    """Build and manage the live images guests boot."""
