"""experimental on top of sid, as a maintainer expects, for real and without a guest.

A small archive of the test's own, in dists/ like Debian's: sid has a tool
(two binaries of one source), the library it needs and an unrelated
package; experimental (NotAutomatic: yes and no ButAutomaticUpgrades, as
Debian's Release says) has newer versions of all three, the new tool needing
the new library. It is served by the testbed's HTTP server in a namespace of
the test's own; apt and dpkg work on a private root there. The in-guest code
(deploy/experimental.py) upgrades both binaries of the tool's source and the
library they need to experimental's versions, and leaves the unrelated
package at sid's, although experimental has a newer one too.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tempest_live_ci import proc
from tempest_live_ci.testbed import http, netns
from tempest_live_ci.testbed.journal import Journal
from tests import aptroot
from tests.conftest import TOP, Dirs, needs_root
from tests.debs import build_deb

pytestmark = [needs_root, pytest.mark.root, pytest.mark.usefixtures("no_leaks")]

ADDRESS = "127.0.0.1"
SID = {"tlc-tool": ("1.0-1", "tlc-tool", "tlc-tool-common (= 1.0-1), tlc-lib (>= 1.0)"),
       "tlc-tool-common": ("1.0-1", "tlc-tool", None),
       "tlc-lib": ("1.0-1", "tlc-lib", None),
       "tlc-other": ("1.0-1", "tlc-other", None)}
EXPERIMENTAL = {"tlc-tool": ("2.0-1", "tlc-tool", "tlc-tool-common (= 2.0-1), tlc-lib (>= 2.0)"),
                "tlc-tool-common": ("2.0-1", "tlc-tool", None),
                "tlc-lib": ("2.0-1", "tlc-lib", None),
                "tlc-other": ("2.0-1", "tlc-other", None)}

STEP = """
import json, sys
sys.path.insert(0, sys.argv[1])
from deploy.experimental import from_experimental
print(json.dumps(from_experimental(sys.argv[2:])))
"""


def suite(root: Path, name: str, packages: dict[str, tuple[str, str, str | None]],
          *fields: str) -> None:
    """dists/NAME of the archive at root, its pool files beside sid's, its Release by apt."""
    pool = root / "pool" / name
    pool.mkdir(parents=True)
    for package, (version, source, depends) in packages.items():
        build_deb(pool, package, version, source=source, depends=depends)
    binary = root / "dists" / name / "main" / "binary-amd64"
    binary.mkdir(parents=True)
    (binary / "Packages").write_text(proc.run(["apt-ftparchive", "packages", f"pool/{name}"],
                                              cwd=root, capture=True).stdout)
    options = [f"-oAPT::FTPArchive::Release::{field}" for field in
               ("Origin=Debian", f"Suite={name}", f"Codename={name}", "Components=main",
                "Architectures=amd64")]
    release = proc.run(["apt-ftparchive", *options, "release", "."], cwd=root / "dists" / name,
                       capture=True).stdout
    (root / "dists" / name / "Release").write_text(
        release + "".join(f"{field}\n" for field in fields))


@pytest.fixture
def served(dirs: Dirs, tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Path]]:
    """The archive served in a namespace; apt and dpkg on a private root: (netns, env, target)."""
    state = dirs.state / "experimental-test"
    state.mkdir(parents=True)
    journal = Journal(state)
    name = "tlct-exp-" + secrets.token_hex(3)
    www = dirs.top / "www"
    suite(www / "debian", "sid", SID)
    suite(www / "debian", "experimental", EXPERIMENTAL, "NotAutomatic: yes")
    root, target = tmp_path / "apt", tmp_path / "target"
    env = aptroot.private_apt(root, target)
    # The guest's sources with guest.experimental (deploy/apt.py), the archive unsigned here.
    from tempest_live_ci.deploy.apt import deb822_sources

    sources = deb822_sources("sid", f"http://{ADDRESS}/debian", None, experimental=True)
    assert "Suites: sid experimental\n" in sources
    (root / "etc/sources.list.d/tlc.sources").write_text(sources + "Trusted: yes\n")
    try:
        netns.create_netns(journal, name)
        proc.run(["ip", "-n", name, "link", "set", "lo", "up"])
        http.start_http_server(journal, name, ADDRESS, 80, www, state)
        yield name, env, target
    finally:
        journal.undo_all()


def apt(netns_name: str, env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return proc.run(argv, netns=netns_name, env=env, capture=True, check=False, timeout=300)


def installed(target: Path) -> dict[str, str]:
    versions, package = {}, None
    for line in (target / "var/lib/dpkg/status").read_text().splitlines():
        if line.startswith("Package: "):
            package = line.split()[1]
        elif line.startswith("Version: ") and package:
            versions[package] = line.split()[1]
    return versions


def from_experimental(netns_name: str, env: dict[str, str], *packages: str) -> object:
    result = subprocess.run(
        ["ip", "netns", "exec", netns_name, "env", *(f"{k}={v}" for k, v in env.items()),
         sys.executable, "-c", STEP, str(TOP / "ci" / "tempest_live_ci"), *packages],
        capture_output=True, text=True, timeout=600, env={**os.environ, "PYTHONPATH": ""})
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_sources_under_test_come_from_experimental_and_the_rest_from_sid(
        served: tuple[str, dict[str, str], Path]) -> None:
    netns_name, env, target = served
    assert apt(netns_name, env, "apt-get", "-q", "update").returncode == 0
    # What the image has: sid's, NotAutomatic keeps experimental out of a plain install
    # and out of an upgrade.
    plain = apt(netns_name, env, "apt-get", "-y", "-q", "install", "tlc-tool", "tlc-other")
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert installed(target) == {name: "1.0-1" for name in SID}
    assert apt(netns_name, env, "apt-get", "-y", "-q", "upgrade").returncode == 0
    assert installed(target) == {name: "1.0-1" for name in SID}

    changed = from_experimental(netns_name, env, "tlc-tool")
    # The tool's source (both binaries) and the library its new version needs; not the rest.
    assert changed == {"tlc-lib": {"before": "1.0-1", "installed": "2.0-1"},
                       "tlc-tool": {"before": "1.0-1", "installed": "2.0-1"},
                       "tlc-tool-common": {"before": "1.0-1", "installed": "2.0-1"}}
    assert installed(target) == {"tlc-tool": "2.0-1", "tlc-tool-common": "2.0-1",
                                 "tlc-lib": "2.0-1", "tlc-other": "1.0-1"}
    # Run again, nothing newer is left: nothing changes.
    assert from_experimental(netns_name, env, "tlc-tool") == {}
