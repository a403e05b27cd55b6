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
import datetime
import fcntl
import hashlib
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from tempest_live_ci import paths, proc
from tempest_live_ci.errors import TestbedError, UsageError, shown
from tempest_live_ci.log import log

KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
_INST = re.compile(r"^Inst (\S+) (?:\[\S+\] )?\((\S+) ")
# apt's words for a Release file past its Valid-Until (apt-pkg/acquire-item.cc).
_EXPIRED = re.compile(r"Release file for (\S+) is expired \(invalid since ([^)]+)\)")
_DURATION = re.compile(r"(\d+)(d|h|min|s)\b")
# What accepts such an archive: the job's key, or the same key in the site's config.yaml.
ACCEPT_EXPIRED = "image.check_valid_until: false"
_MISSING = re.compile(r"^E: (?:Unable to locate package|Package '?)(\S+?)'?(?: has no installation"
                      r" candidate)?$")


def index_dir(suite: str, mirror: str) -> Path:
    key = hashlib.sha256(f"{suite} {mirror}".encode()).hexdigest()[:12]
    return paths.cache_dir() / "apt-index" / f"{suite}-{key}"


def sources(suite: str, mirror: str, security_mirror: str | None, keyring: str = KEYRING) -> str:
    lines = [f"deb [signed-by={keyring}] {mirror} {suite} main"]
    if suite != "sid":
        lines.append(f"deb [signed-by={keyring}] {mirror} {suite}-updates main")
        if security_mirror:
            lines.append(f"deb [signed-by={keyring}] {security_mirror} {suite}-security main")
    return "\n".join(lines) + "\n"


def apt_config(root: Path, proxy: str | None, *, check_valid_until: bool = True) -> str:
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
    if not check_valid_until:
        # The job's explicit choice (ACCEPT_EXPIRED): a snapshot or a frozen copy.
        settings["Acquire::Check-Valid-Until"] = "false"
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


def expired_problem(output: str, suite: str, mirror: str,
                    now: datetime.datetime | None = None) -> str | None:
    """The one-line error for apt's "Release file ... is expired", or None if apt said no such thing.

    It names the archive, since when its Release is expired, and the setting
    that accepts it.
    """
    match = _EXPIRED.search(output)
    if match is None:
        return None
    since = match.group(2).strip()
    units = {"d": 86400, "h": 3600, "min": 60, "s": 1}
    seconds = sum(int(n) * units[unit] for n, unit in _DURATION.findall(since))
    now = now or datetime.datetime.now(datetime.UTC)
    # apt counts in seconds from its own clock: the nearest minute is the date it means.
    moment = now - datetime.timedelta(seconds=seconds) + datetime.timedelta(seconds=30)
    expired = moment.strftime("%Y-%m-%d %H:%M UTC")
    return (f"the {suite} archive at {mirror}: its Release file expired on {expired} "
            f"(Valid-Until, {since} ago); for a snapshot or a frozen mirror, set "
            f"{ACCEPT_EXPIRED} in the job or in {paths.config_dir() / 'config.yaml'}")


def archive_versions(suite: str, mirror: str, packages: Sequence[str], *,
                     security_mirror: str | None = None,
                     proxy: str | None = None, check_valid_until: bool = True,
                     keyring: str = KEYRING, shown_mirror: str | None = None) -> dict[str, str]:
    """Package → version of everything `apt-get install packages` would install today.

    An unknown package, or a Release file past its Valid-Until when the job
    did not accept that (check_valid_until), is a UsageError (exit 20, before
    anything boots); an archive that cannot be read is a TestbedError.
    keyring: what the archive is signed with (Debian's; the tests' own archive
    has a key of its own). shown_mirror: the mirror as the job names it, when
    mirror is the apt proxy's way to it.
    """
    mirror = mirror.rstrip("/") + "/"
    root = index_dir(suite, mirror)
    with _index(root):
        (root / "etc" / "sources.list").write_text(sources(suite, mirror, security_mirror,
                                                           keyring))
        config = root / "apt.conf"
        config.write_text(apt_config(root, proxy, check_valid_until=check_valid_until))
        env = {"APT_CONFIG": str(config), "LC_ALL": "C.UTF-8"}
        update = proc.run(["apt-get", "-q", "update"], env=env, capture=True, check=False,
                          timeout=600)
        expired = expired_problem(update.stdout + update.stderr, suite, shown_mirror or mirror)
        if expired is not None:
            raise UsageError(expired)
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
            raise UsageError(f"image packages: {shown(missing[0])} is not in {suite} at {mirror}")
        raise UsageError(f"image packages: apt cannot install them from {suite}: "
                         + " / ".join(errors[-3:] or simulated.stderr.splitlines()[-3:]))
    versions = {m.group(1): m.group(2) for line in simulated.stdout.splitlines()
                if (m := _INST.match(line))}
    log.debug("archive %s %s: %d packages for %s", suite, mirror, len(versions),
              " ".join(packages))
    return dict(sorted(versions.items()))
