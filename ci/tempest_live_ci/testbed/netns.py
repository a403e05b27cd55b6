"""Network namespaces: one per isolated run, named after the run id."""

from __future__ import annotations

from tempest_live_ci import proc
from tempest_live_ci.errors import UsageError
from tempest_live_ci.testbed.journal import Journal, netns_exists


def create_netns(journal: Journal, name: str) -> str:
    if netns_exists(name):
        raise UsageError(f"netns: a network namespace named {name!r} already exists")
    proc.run(["ip", "netns", "add", name])
    journal.add("netns", name=name)
    proc.run(["ip", "-n", name, "link", "set", "lo", "up"])
    return name
