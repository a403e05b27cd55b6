"""The profile's packages from experimental where it has newer ones: the next release in a freeze.

experimental's Release says NotAutomatic (not ButAutomaticUpgrades): apt
takes nothing from it unless asked, and `-t experimental` would take
everything it has (unrelated libraries too). A maintainer asks for the
packages of the sources under test, `apt-get install PKG/experimental`, and
apt takes from experimental what those versions need and no more (its
"Selected version ... because of ..."): sid for the rest. Which sources are
under test: those of the profile's packages, every binary of them installed
(keystone brings python3-keystone, which it pins to its own version).
"""

from __future__ import annotations

from collections.abc import Sequence

from .candidates import APT_ENV, APT_GET
from .util import facts, run, say

SUITE = "experimental"


def installed() -> dict[str, tuple[str, str]]:
    """Every installed package → (version, source package)."""
    out = run(["dpkg-query", "-W", "-f", "${Package}\t${Version}\t${source:Package}\t"
               "${db:Status-Abbrev}\n"], capture=True).stdout
    found = {}
    for line in out.splitlines():
        fields = line.split("\t")
        if len(fields) == 4 and fields[3].startswith("ii"):
            found[fields[0]] = (fields[1], fields[2])
    return found


def experimental_versions(names: Sequence[str]) -> dict[str, str]:
    """The version experimental has of each package (apt-cache madison), where it has one."""
    if not names:
        return {}
    out = run(["apt-cache", "madison", *names], check=False, capture=True).stdout
    found: dict[str, str] = {}
    for line in out.splitlines():
        fields = [field.strip() for field in line.split("|")]
        # "keystone | 2:31.0.0~rc1-1 | http://deb.debian.org/debian experimental/main amd64 ..."
        if len(fields) == 3 and f" {SUITE}/" in fields[2] and fields[0] not in found:
            found[fields[0]] = fields[1]
    return found


def newer(version: str, than: str) -> bool:
    return run(["dpkg", "--compare-versions", version, "gt", than], check=False).returncode == 0


def from_experimental(packages: Sequence[str]) -> dict[str, dict[str, str]]:
    """Upgrade the packages of the sources of `packages` to experimental's newer versions.

    Returns every package whose version changed → {"before", "installed"},
    those experimental's versions pulled in included; also facts["experimental"].
    """
    before = installed()
    sources = sorted({before[name][1] for name in packages if name in before})
    binaries = sorted(name for name, (_, source) in before.items() if source in sources)
    offered = experimental_versions(binaries)
    chosen = sorted(name for name, version in offered.items()
                    if newer(version, before[name][0]))
    if not chosen:
        say(f"experimental has nothing newer for {', '.join(sources) or 'the profile'}: "
            "sid's packages are tested")
        facts["experimental"] = {}
        return {}
    say(f"from experimental: {', '.join(f'{name} {offered[name]}' for name in chosen)}")
    run([*APT_GET, "install", *(f"{name}/{SUITE}" for name in chosen)], env=APT_ENV)
    after = installed()
    changed = {name: {"before": before.get(name, ("", ""))[0], "installed": version}
               for name, (version, _) in sorted(after.items())
               if before.get(name, ("", ""))[0] != version}
    for name, versions in changed.items():
        say(f"  {name}: {versions['before'] or '(new)'} → {versions['installed']}")
    facts["experimental"] = changed
    return changed
