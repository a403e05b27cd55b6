"""`tempest-live-ci vm ...`."""

import click


@click.group()
def vm() -> None:
    """Boot the live image in a VM, reach it over SSH, destroy it."""
