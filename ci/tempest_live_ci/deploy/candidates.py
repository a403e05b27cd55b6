"""The candidates step: the packages under test, installed over the profile's.

The host built a flat repository of the candidate .debs (apt-ftparchive) and
serves it on the testbed's HTTP server; STATE/candidates.json says where and
which packages it holds, and which extra apt sources the job names. This step
adds the repository, pins exactly the candidate packages to it at 1001, and
installs them. When apt refuses (an unmet dependency, a conflict, a version
lower than the one installed), its reason goes into the step's facts as
"candidate_error": the host turns that into exit 12, not a testbed failure.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

from .util import STATE, StepError, facts, package_versions, part, run, say, write_file

PARAMS = STATE / "candidates.json"
# File names in the directories apt reads (apt-config says where: an
# APT_CONFIG of its own moves them, which is how the tests run this step).
SOURCES = "tempest-live-ci-candidates.sources"
EXTRA_SOURCES = "tempest-live-ci-extra.list"
PREFERENCES = "tempest-live-ci-candidates"
APT_CONF = "91tempest-live-ci-candidates"
# The Release fields the host's apt-ftparchive wrote (candidates.py on the host).
ORIGIN = "tempest-live-ci"
LABEL = "candidates"
PRIORITY = 1001

APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none",
           "LC_ALL": "C.UTF-8"}
# No --allow-downgrades: a candidate older than what the guest already has
# from the archive is a stale build, and apt's refusal is the answer the
# maintainer needs (exit 12), not a silent downgrade.
APT_GET = ["apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef",
           "-o", "Dpkg::Options::=--force-confold"]

# What apt says about why it cannot install: the broken dependencies (apt 2:
# "The following packages have unmet dependencies:", apt 3: "Unsatisfied
# dependencies:") and its error lines.
_REASON = re.compile(r"^(E: |Error: | \S+ : |\s+(Pre)?Depends: |\s+(Conflicts|Breaks): )")


def sources(repository: str) -> str:
    # Trusted without a signature: the host built this repository minutes ago
    # from files it checked, serves it on the testbed's private bridge, and
    # already runs anything it likes in this guest as root over SSH (with the
    # image's pinned host key). A key made and checked by the same party
    # would prove nothing more.
    return ("# Written by tempest-live-ci: the packages under test.\n"
            f"Types: deb\nURIs: {repository}\nSuites: ./\nTrusted: yes\n")


def preferences(packages: list[str]) -> str:
    """Exactly the candidate packages, from the candidate repository, whatever its versions."""
    return ("# Written by tempest-live-ci: the candidates win over every other source,\n"
            "# also with a lower version than the archive's.\n"
            f"Package: {' '.join(sorted(packages))}\n"
            f"Pin: release o={ORIGIN},l={LABEL}\nPin-Priority: {PRIORITY}\n")


def apt_dirs() -> dict[str, Path]:
    """Where apt reads sources, preferences and configuration parts."""
    keys = {"sources": "Dir::Etc::SourceParts/d", "preferences": "Dir::Etc::PreferencesParts/d",
            "conf": "Dir::Etc::Parts/d"}
    argv = ["apt-config", "shell"]
    for name, key in keys.items():
        argv += [name.upper(), key]
    out = run(argv, capture=True).stdout
    found = {}
    for line in out.splitlines():
        name, _, value = line.partition("=")
        found[name.lower()] = Path(shlex.split(value)[0])
    missing = set(keys) - set(found)
    if missing:
        raise StepError(f"apt-config does not say where {', '.join(sorted(missing))} live")
    return found


def apt_reason(output: str) -> str:
    """apt's own words for why it refused, or its last lines."""
    lines = [line.rstrip() for line in output.splitlines() if _REASON.match(line)]
    if not lines:
        lines = [line.rstrip() for line in output.splitlines() if line.strip()][-4:]
    return "\n".join(lines) or "apt-get failed without a word"


def _apt(argv: list[str], what: str) -> None:
    """An apt-get run whose refusal is the candidates' fault (exit 12 on the host)."""
    result = run([*APT_GET, *argv], env=APT_ENV, check=False, capture=True)
    for line in result.stdout.splitlines():
        say(line)
    if result.returncode != 0:
        reason = apt_reason(result.stdout)
        facts["candidate_error"] = f"{what}: {reason}"
        raise StepError(f"{what} failed (apt-get status {result.returncode}):\n  "
                        + "\n  ".join(reason.splitlines()))


def install_candidates() -> None:
    """Add the candidate repository (and the job's extra sources), pin, install, record."""
    wanted = json.loads(PARAMS.read_text())
    packages: dict[str, str] = wanted.get("packages", {})
    with part("candidate sources"):
        where = apt_dirs()
        if wanted.get("repository"):
            write_file(where["sources"] / SOURCES, sources(wanted["repository"]))
            write_file(where["preferences"] / PREFERENCES, preferences(list(packages)))
        if wanted.get("sources"):
            write_file(where["sources"] / EXTRA_SOURCES,
                       "# Written by tempest-live-ci: the job's extra sources.\n"
                       + "".join(f"{line}\n" for line in wanted["sources"]))
        if wanted.get("direct_host"):
            # The testbed's own HTTP server, not through the apt proxy (which
            # forwards Debian's archive only).
            write_file(where["conf"] / APT_CONF,
                       f'Acquire::http::Proxy::{wanted["direct_host"]} "DIRECT";\n')
    with part("apt-get update"):
        update = run([*APT_GET, "update"], env=APT_ENV, check=False, capture=True)
        for line in update.stdout.splitlines():
            say(line)
        failed = [line for line in update.stdout.splitlines()
                  if line.startswith(("E:", "W: Failed to fetch", "Err:"))]
        if update.returncode != 0 or failed:
            raise StepError("apt-get update with the candidate sources failed:\n  "
                            + "\n  ".join(failed[-6:] or update.stdout.splitlines()[-6:]))
    before = package_versions(list(packages))
    if wanted.get("sources"):
        with part("upgrade from the extra sources"):
            _apt(["dist-upgrade"], "upgrading from the extra sources")
    if packages:
        with part(f"apt-get install ({len(packages)} candidates)"):
            _apt(["install", *sorted(packages)], "installing the candidates")
    installed = package_versions(list(packages))
    facts["candidates"] = {name: {"wanted": version, "before": before.get(name),
                                  "installed": installed.get(name)}
                           for name, version in sorted(packages.items())}
    wrong = [f"{name} {installed.get(name) or 'not installed'} (candidate {version})"
             for name, version in sorted(packages.items()) if installed.get(name) != version]
    if wrong:
        facts["candidate_error"] = "apt did not install the candidates: " + ", ".join(wrong)
        raise StepError(facts["candidate_error"])
    for name, entry in facts["candidates"].items():
        say(f"candidate {name} {entry['installed']}"
            + (f" (was {entry['before']})" if entry["before"] else " (new)"))
