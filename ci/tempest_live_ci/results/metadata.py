"""What the report says of the run besides its tests: summary.json's "metadata".

Made of what the in-guest steps learned (their times, the versions they
found, the guest's memory peak, nova's driver) and the candidates the guest
really installed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol


class StepFacts(Protocol):
    """A step's result as the guest reported it (guest/steps.py: StepResult)."""

    seconds: float
    parts: dict[str, float]
    facts: dict[str, Any]


def run_metadata(job: str, run_id: str, profile: str, steps: Mapping[str, StepFacts],
                 candidates: Sequence[Mapping[str, Any]] | None = None) -> dict[str, Any]:
    results = list(steps.values())
    versions: dict[str, str] = {}
    for r in results:
        versions.update(r.facts.get("versions", {}))
        versions.update(r.facts.get("tempest", {}))
    data: dict[str, Any] = {
        "job": job, "run_id": run_id, "profile": profile,
        "steps": {name: {"seconds": r.seconds, "parts": r.parts,
                         **({"memory_peak_mib": r.facts["memory_peak_mib"]}
                            if "memory_peak_mib" in r.facts else {})}
                  for name, r in steps.items()},
        "versions": versions}
    peaks = [int(r.facts["memory_peak_mib"]) for r in results if "memory_peak_mib" in r.facts]
    if peaks:
        # The most RAM the guest used in any step (the squashfs it runs from included).
        data["guest_memory_peak_mib"] = max(peaks)
    drivers = [r.facts["virt_driver"] for r in results if "virt_driver" in r.facts]
    if drivers:
        # nova's: libvirt (nested KVM) or fake (nothing boots; tempest.conf says so too).
        data["virt_driver"] = drivers[-1]
    if any("experimental" in r.facts for r in results):
        # guest.experimental: what came from experimental (every version that changed).
        data["experimental"] = {name: changed for r in results
                                for name, changed in r.facts.get("experimental", {}).items()}
    scaled = {key: value for r in results for key, value in r.facts.get("scaled_timeouts",
                                                                        {}).items()}
    if scaled:
        # tempest.conf's build timeouts, scaled for an accelerator slower than KVM.
        data["scaled_timeouts"] = scaled
    excluded = {regex: reason for r in results
                for regex, reason in r.facts.get("excluded_by_setup", {}).items()}
    if excluded:
        # Tests the guest's setup left out (scenario tests under the fake driver), with why.
        data["excluded_by_setup"] = excluded
    discovered = [r.facts["discovered"] for r in results if "discovered" in r.facts]
    if discovered:
        # Where stestr looked for tests (tempest.discover): "all", or one package's directory.
        data["discovered"] = discovered[-1]
    if candidates is not None:
        # The versions the guest really installed, in the report's Run section.
        data["candidates"] = {c["package"]: c.get("installed") or f"{c['version']} (not installed)"
                              for c in candidates}
    return data
