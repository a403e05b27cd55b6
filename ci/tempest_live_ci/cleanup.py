"""Find and remove what killed runs left behind.

Everything a run makes is recorded in the registry before it exists
(registry.py): cleanup undoes, newest first, every record none of whose owners
lives and that was not kept on purpose (`vm boot`, --keep-on-failure,
`host setup --netns`; --include-kept undoes those too). Then the sweeps
(registry.SWEEPS) remove what no record names because its state directory went
while its run lived (tests remove theirs): namespaces and the apt proxy's
processes. A namespace of another state root is left to that root's cleanup.
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


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--include-kept", is_flag=True,
              help="Also remove runs kept on purpose (--keep-on-failure, vm boot).")
def cleanup(dry_run: bool, include_kept: bool) -> int:
    """Remove what killed runs left behind (namespaces, daemons, domains, state)."""

    require_root()
    lines: list[str] = []
    for leftover in registry.find_leftovers(include_kept):
        if dry_run:
            lines.append(f"{leftover.name}: {leftover.reason}")
            continue
        try:
            # What cannot be removed is named; the others are removed all the same.
            lines += [f"{leftover.name}: removed {what}" for what in leftover.remove()]
        except TLCError as e:
            log.error("%s: %s", leftover.name, e.message)
            lines.append(f"{leftover.name}: NOT removed: {e.message}")
    for line in lines:
        click.echo(line)
    if not lines:
        log.info("nothing to clean up")
    return ExitCode.OK
