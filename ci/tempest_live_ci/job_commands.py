"""`tempest-live-ci run`, `job ...`, `cleanup`."""

import click


@click.command()
def run() -> None:
    """Run a job end to end."""


@click.group()
def job() -> None:
    """Validate and list job definitions."""


@click.command()
def cleanup() -> None:
    """Remove what killed runs left behind."""
