"""Guest preparation (apt sources, the way to the archive, setup commands) and the install step."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from .experimental import SUITE as EXPERIMENTAL
from .experimental import from_experimental
from .params import Params
from .profiles import get_profile
from .util import StepError, facts, package_versions, part, run, say, write_file

APT_CONF = Path("/etc/apt/apt.conf.d/90tempest-live-ci")
SOURCES = Path("/etc/apt/sources.list.d/tempest-live-ci.sources")
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
# Services stay down while packages are installed: an unconfigured service
# crash-loops, and a postinst that starts one slows the install. The
# configuration steps start each service with systemctl (which policy-rc.d
# does not govern) once it is configured.
POLICY_RC_D_TEXT = "#!/bin/sh\n# tempest-live-ci: no service starts from maintainer scripts\nexit 101\n"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "APT_LISTCHANGES_FRONTEND": "none"}
APT_GET = ["apt-get", "-y", "-q", "-o", "Dpkg::Options::=--force-confdef",
           "-o", "Dpkg::Options::=--force-confold"]


def apt_conf(proxy: str | None, direct: Sequence[str] = (), *,
             check_valid_until: bool = True) -> str:
    lines = [
        "// Written by tempest-live-ci for this run.",
        'APT::Install-Recommends "false";',
        'Acquire::PDiffs "false";',
        'Acquire::Languages "none";',
        'Acquire::Retries "3";',
    ]
    if not check_valid_until:
        # The job's image.check_valid_until: false (a snapshot, a frozen
        # mirror): its Release may be past its Valid-Until, for the sources
        # and for the candidates' upgrade alike.
        lines.append('Acquire::Check-Valid-Until "false";')
    if proxy:
        lines.append(f'Acquire::http::Proxy "{proxy}";')
        lines.extend(f'Acquire::http::Proxy::{host} "DIRECT";' for host in direct or ())
    return "\n".join(lines) + "\n"


def deb822_sources(suite: str, mirror: str, security_mirror: str | None, *,
                   experimental: bool = False) -> str:
    """The job's suite from its mirror (main only), plus security for a stable suite, plus
    experimental on sid when the job asks (NotAutomatic: see deploy/experimental.py)."""
    stanzas = [f"Types: deb\nURIs: {mirror}\nSuites: {suite}"
               + ("" if suite in ("sid", "unstable") else f" {suite}-updates")
               + (f" {EXPERIMENTAL}" if experimental else "")
               + "\nComponents: main\n"]
    if security_mirror and suite not in ("sid", "unstable"):
        stanzas.append(f"Types: deb\nURIs: {security_mirror}\nSuites: {suite}-security\n"
                       "Components: main\n")
    return "# Written by tempest-live-ci for this run.\n" + "\n".join(stanzas)


def _replace_sources(text: str, *, deb822: bool) -> None:
    """Our sources, and no others (the image's point at its build-time suite)."""
    for old in Path("/etc/apt/sources.list.d").glob("*"):
        if old.suffix in (".list", ".sources"):
            old.unlink()
    if deb822:
        write_file("/etc/apt/sources.list", "# See sources.list.d/tempest-live-ci.sources\n")
        write_file(SOURCES, text)
    else:
        write_file("/etc/apt/sources.list", text)


def setup_command(command: str) -> list[str]:
    """The argv of one of the job's guest.setup_commands: after "--", whatever it
    starts with is the shell's command, never one of its options."""
    return ["sh", "-c", "--", command]


def hold_services() -> None:
    write_file(POLICY_RC_D, POLICY_RC_D_TEXT, mode=0o755)


def prepare(p: Params) -> None:
    """Sources, proxy, apt-get update, an upgrade to the job's suite, the setup commands."""
    with part("apt sources"):
        write_file(APT_CONF, apt_conf(p.apt_proxy, p.apt_direct,
                                      check_valid_until=p.check_valid_until))
        if p.sources_list:
            say("sources: the job's guest.sources_list")
            _replace_sources(p.sources_list, deb822=False)
        else:
            _replace_sources(deb822_sources(p.suite, p.mirror, p.security_mirror,
                                            experimental=p.experimental),
                             deb822=True)
        hold_services()
    with part("apt-get update"):
        run([*APT_GET, "update"], env=APT_ENV)
    if p.suite != p.image_suite:
        with part(f"upgrade {p.image_suite} → {p.suite}"):
            run([*APT_GET, "dist-upgrade"], env=APT_ENV)
    for i, command in enumerate(p.setup_commands):
        # The job's own commands, in the guest (never on the host), as given.
        with part(f"setup command {i + 1}"):
            run(setup_command(command))
    facts["os"] = _os_release()


def install(p: Params) -> None:
    """The profile's packages (nothing to do in a preinstalled image but checking)."""
    profile = get_profile(p.profile)
    hold_services()
    packages = list(profile.all_packages)
    with part(f"apt-get install ({len(packages)} packages of profile {profile.name})"):
        run([*APT_GET, "install", *packages], env=APT_ENV)
    if p.experimental:
        with part("the profile's packages from experimental"):
            from_experimental(packages)
    facts["versions"] = package_versions(packages)
    missing = sorted(set(packages) - set(facts["versions"]))
    if missing:
        raise StepError(f"not installed after apt-get install: {', '.join(missing)}")


def _os_release() -> str:
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.partition("=")[2].strip('"')
    return os.uname().release
