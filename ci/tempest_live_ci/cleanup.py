"""Find and remove what killed runs left behind.

Everything a run makes is recorded in the registry before it exists, with
its owner's identity (registry.py): cleanup undoes, newest first, every
record whose owner is gone and that was not kept on purpose (`vm boot`,
--keep-on-failure, `host setup --netns`; --include-kept undoes those too).
What a record is and how it is undone is its kind's, in the module that
makes it: testbeds, candidate repositories and test images, image builds
and their locks, libvirt domains and private libvirtds, guests' records,
memory promises.

Then the sweeps of what no record names (registry.SWEEPS), which find
things by their marks where a state directory and the registry in it went
while its run lived (tests remove theirs) or an older version made them:
namespaces (testbed/netns.py) and the apt proxy's daemons and socats
(testbed/aptproxy.py). Only what is ours and whose owner is gone is
touched; a namespace of another state root is left to that root's cleanup.
Safe to call twice, and while other runs go on.
"""

from __future__ import annotations

import click

from tempest_live_ci import registry
from tempest_live_ci.errors import ExitCode, TLCError
from tempest_live_ci.log import log

# Their sweeps, registered when imported.
from tempest_live_ci.testbed import aptproxy, netns  # noqa: F401
from tempest_live_ci.testbed.config import require_root


def clean_up(*, dry_run: bool = False, include_kept: bool = False) -> list[str]:
    """Remove every leftover; return one line per thing removed (or found, with dry_run).

    A leftover that cannot be removed is logged as an error and named in a
    line; the others are removed all the same.
    """
    lines: list[str] = []
    for leftover in registry.find_leftovers(include_kept):
        if dry_run:
            lines.append(f"{leftover.name}: {leftover.reason}")
            continue
        try:
            removed = leftover.remove()
        except TLCError as e:
            log.error("%s: %s", leftover.name, e.message)
            lines.append(f"{leftover.name}: NOT removed: {e.message}")
            continue
        for what in removed:
            lines.append(f"{leftover.name}: removed {what}")
    return lines


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--include-kept", is_flag=True,
              help="Also remove runs kept on purpose (--keep-on-failure, vm boot).")
def cleanup(dry_run: bool, include_kept: bool) -> int:
    """Remove what killed runs left behind (namespaces, daemons, domains, state)."""

    require_root()
    lines = clean_up(dry_run=dry_run, include_kept=include_kept)
    for line in lines:
        click.echo(line)
    if not lines:
        log.info("nothing to clean up")
    return ExitCode.OK
