"""What a testbed looks like right now, for `host status` and idempotent setup."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tempest_live_ci import paths, proc
from tempest_live_ci.testbed import links
from tempest_live_ci.testbed.journal import (
    Journal,
    describe,
    netns_exists,
    process_matches,
    recorded_pid,
)


@dataclass
class TestbedStatus:
    __test__ = False

    name: str
    healthy: bool
    items: list[tuple[str, bool]] = field(default_factory=list)
    leases: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "healthy": self.healthy,
            "items": [{"what": what, "ok": ok} for what, ok in self.items],
            "leases": self.leases,
        }


def _present(record: dict[str, Any]) -> bool:
    kind = record["kind"]
    netns = record.get("netns")
    if netns is not None and not netns_exists(netns):
        return False
    if kind == "netns":
        return netns_exists(record["name"])
    if kind in ("link", "enslaved"):
        return links.link_exists(record["name"], netns)
    if kind == "pid":
        pid = recorded_pid(record)
        return pid is not None and process_matches(pid, record["marker"])
    if kind == "nft-table":
        # With a real NIC it guards the boot files: a table gone is no detail.
        return proc.run(["nft", "list", "table", record["family"], record["name"]], netns=netns,
                        check=False, capture=True).returncode == 0
    return True


def testbed_status(name: str) -> TestbedStatus | None:
    directory = paths.state_dir() / name
    journal = Journal(directory)
    records = journal.records()
    if not records:
        return None
    status = TestbedStatus(name=name, healthy=True)
    for record in records:
        ok = _present(record)
        status.items.append((describe(record), ok))
        status.healthy &= ok
    leases = directory / "dnsmasq.leases"
    if leases.exists():
        status.leases = [line for line in leases.read_text().splitlines() if line.strip()]
    return status


def list_testbeds(root: Path | None = None) -> list[str]:
    root = root or paths.state_dir()
    if not root.is_dir():
        return []
    return sorted(p.name for p in root.iterdir() if (p / "journal.json").exists())
