"""What the archive offers today for an image's packages: part of the image's cache key.

A preinstalled image is as new as the archive was when it was built. The
versions apt would install now (the packages and everything they pull in) go
into the image's inputs, so an upload makes a new image and an unchanged
archive reuses the old one. apt itself finds them, in a private directory of
indices (the host's apt configuration and state are neither read nor
touched), through the same mirror or proxy the build uses.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from tempest_live_ci import paths, proc
from tempest_live_ci.errors import TestbedError, UsageError
from tempest_live_ci.log import log

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_INST = re.compile(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ")
_MISSING = re.compile(r"^E: (?:Unable to locate package|Package '?)(\S+?)'?(?: has no installation"
                      r" candidate)?$")


def index_dir(suite: str, mirror: str) -> Path:
    key = hashlib.sha256(f"{suite} {mirror}".encode()).hexdigest()[:12]
    return paths.cache_dir() / "apt-index" / f"{suite}-{key}"


def sources(suite: str, mirror: str, security_mirror: str | None) -> str:
    lines = [f"deb [signed-by={KEYRING}] {mirror} {suite} main"]
    if suite != "sid":
        lines.append(f"deb [signed-by={KEYRING}] {mirror} {suite}-updates main")
        if security_mirror:
            lines.append(f"deb [signed-by={KEYRING}] {security_mirror} {suite}-security main")
    return "\n".join(lines) + "\n"


def apt_config(root: Path, proxy: str | None) -> str:
    """An APT_CONFIG of our own: read before the host's, it points every directory at root."""
    settings = {
        "Dir": f"{root}/",
        "Dir::State": f"{root}/state/",
        "Dir::State::status": f"{root}/state/status",
        "Dir::Cache": f"{root}/cache/",
        "Dir::Etc": f"{root}/etc/",
        "Dir::Etc::Parts": f"{root}/etc/apt.conf.d/",
        "Dir::Etc::SourceList": f"{root}/etc/sources.list",
        "Dir::Etc::SourceParts": f"{root}/etc/sources.list.d/",
        "Dir::Etc::Preferences": f"{root}/etc/preferences",
        "Dir::Etc::PreferencesParts": f"{root}/etc/preferences.d/",
        "Dir::Log": f"{root}/log/",
        "APT::Architecture": "amd64",
        "APT::Install-Recommends": "false",
        "APT::Sandbox::User": "root",
        "Acquire::Languages": "none",
        "Acquire::Retries": "3",
        "Acquire::http::Proxy": proxy or "DIRECT",
    }
    text = "".join(f'{key} "{value}";\n' for key, value in settings.items())
    return text + 'APT::Architectures { "amd64"; };\n'


@contextlib.contextmanager
def _index(root: Path) -> Iterator[None]:
    for sub in ("state/lists/partial", "cache/archives/partial", "etc/apt.conf.d",
                "etc/sources.list.d", "etc/preferences.d", "log"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    (root / "state" / "status").touch()
    # Two runs looking at once share the directory one after the other.
    with open(root / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def archive_versions(suite: str, mirror: str, packages: Sequence[str], *,
                     security_mirror: str | None = None,
                     proxy: str | None = None) -> dict[str, str]:
    """Package → version of everything `apt-get install packages` would install today.

    An unknown package is a UsageError (exit 20, before anything boots); an
    archive that cannot be read is a TestbedError.
    """
    mirror = mirror.rstrip("/") + "/"
    root = index_dir(suite, mirror)
    with _index(root):
        (root / "etc" / "sources.list").write_text(sources(suite, mirror, security_mirror))
        config = root / "apt.conf"
        config.write_text(apt_config(root, proxy))
        env = {"APT_CONFIG": str(config), "LC_ALL": "C.UTF-8"}
        update = proc.run(["apt-get", "-q", "update"], env=env, capture=True, check=False,
                          timeout=600)
        if update.returncode != 0 or re.search(r"^(W|E): Failed to fetch", update.stdout
                                               + update.stderr, re.M):
            tail = " / ".join((update.stderr or update.stdout).strip().splitlines()[-3:])
            raise TestbedError(f"reading the {suite} archive at {mirror} failed: {tail}")
        simulated = proc.run(["apt-get", "-s", "-q", "install", *packages], env=env,
                             capture=True, check=False, timeout=300)
    if simulated.returncode != 0:
        errors = [line for line in simulated.stderr.splitlines() if line.startswith("E:")]
        missing = [m.group(1) for line in errors if (m := _MISSING.match(line))]
        if missing:
            raise UsageError(f"image packages: {missing[0]!r} is not in {suite} at {mirror}")
        raise UsageError(f"image packages: apt cannot install them from {suite}: "
                         + " / ".join(errors[-3:] or simulated.stderr.splitlines()[-3:]))
    versions = {m.group(1): m.group(2) for line in simulated.stdout.splitlines()
                if (m := _INST.match(line))}
    log.debug("archive %s %s: %d packages for %s", suite, mirror, len(versions),
              " ".join(packages))
    return dict(sorted(versions.items()))
