"""`tempest-live-ci host ...`."""

import click


@click.group()
def host() -> None:
    """Set up, inspect and tear down the testbed network on this host."""
