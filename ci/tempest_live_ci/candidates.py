"""Candidate packages: what an upload check installs over the archive.

    collect_candidates()   .deb files, .changes files (every .deb they list,
                           checksums checked, the signature checked when a
                           keyring is given) and directories of .debs → Candidates
    build_repository()     the candidates as a flat apt repository, made by
                           apt-ftparchive, ready for the testbed's HTTP server
    profile_for()          the profile whose tests cover the candidates' sources
    parse_source_line()    a `--candidate-source 'deb URL SUITE COMPONENT'`

Everything here runs before the run changes anything on the host: a bad
candidate is a UsageError (exit 20) naming the file and what is wrong.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tempest_live_ci import proc
from tempest_live_ci.errors import UsageError
from tempest_live_ci.log import log

# The guest is amd64: "all" and "amd64" packages install there, nothing else.
ARCHITECTURES = ("all", "amd64")
# Where the testbed's HTTP server serves the repository: http://<host>/candidates/.
REPO_DIR = "candidates"
# The repository's Release fields: the guest pins "release o=ORIGIN,l=LABEL".
ORIGIN = "tempest-live-ci"
LABEL = "candidates"

# Which profile tests an upload of a source package; anything else, or
# sources of several profiles at once, gets the whole cloud ("full").
SOURCE_PROFILES = {
    "keystone": "identity",
    "glance": "image",
    "nova": "compute",
    "placement": "compute",
    "neutron": "network",
    "cinder": "volume",
    "heat": "orchestration",
    "swift": "object",
}
FULL = "full"

_NAME = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")
_VERSION = re.compile(r"^([0-9]+:)?[A-Za-z0-9.+~-]+$")


@dataclass(frozen=True)
class Candidate:
    path: Path
    package: str
    version: str
    architecture: str
    source: str  # the source package it was built from

    @property
    def filename(self) -> str:
        return self.path.name

    def as_json(self) -> dict[str, str]:
        return {"package": self.package, "version": self.version,
                "architecture": self.architecture, "source": self.source,
                "file": self.filename}


def _deb_fields(path: Path, where: str) -> Candidate:
    """The control fields of a .deb, read by dpkg-deb."""
    result = proc.run(["dpkg-deb", "--field", path, "Package", "Version", "Architecture",
                       "Source"], capture=True, check=False)
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["dpkg-deb cannot read it"])[-1]
        raise UsageError(f"{where}: {path.name!r}: not a Debian binary package ({reason})")
    fields: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith((" ", "\t")):
            fields[key.strip()] = value.strip()
    package, version = fields.get("Package", ""), fields.get("Version", "")
    architecture = fields.get("Architecture", "")
    if not _NAME.match(package) or not _VERSION.match(version):
        raise UsageError(f"{where}: {path.name!r}: no valid Package and Version fields")
    if architecture not in ARCHITECTURES:
        raise UsageError(f"{where}: {path.name!r}: architecture {architecture!r} does not "
                         f"install in the guest ({' or '.join(ARCHITECTURES)})")
    # "Source: keystone (2:27.0.0-2)" when the binary's version differs.
    source = fields.get("Source", "").split(" ")[0] or package
    return Candidate(path.resolve(), package, version, architecture, source)


def _digest(path: Path, kind: str) -> str:
    digest = hashlib.sha256() if kind == "sha256" else hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _changes_files(path: Path, where: str, keyring: Path | None) -> list[Path]:
    """The files a .changes lists, each checked against its size and SHA-256."""
    from debian.deb822 import Changes

    text = path.read_bytes()
    signed = text.lstrip().startswith(b"-----BEGIN PGP SIGNED MESSAGE-----")
    if keyring is not None:
        if not signed:
            raise UsageError(f"{where}: {path.name!r}: not signed, and --keyring asks for a "
                             "signature check")
        check = proc.run(["gpgv", "--keyring", keyring.resolve(), path], capture=True,
                         check=False)
        if check.returncode != 0:
            reason = " / ".join(line.removeprefix("gpgv: ") for line
                                in check.stderr.strip().splitlines()[-2:])
            raise UsageError(f"{where}: {path.name!r}: bad signature or unknown key "
                             f"({keyring}): {reason}")
        log.info("%s: signature good (%s)", path.name, keyring)
    elif signed:
        log.warning("%s is signed, but its signature is not checked (no --keyring)", path.name)
    changes = Changes(text.decode("utf-8", errors="replace"))
    # Checksums-Sha256 in every .changes dpkg-genchanges writes; Files (MD5) alone in old ones.
    kind, listed = "sha256", changes.get("Checksums-Sha256") or []
    if not listed:
        kind, listed = "md5sum", changes.get("Files") or []
    if not listed:
        raise UsageError(f"{where}: {path.name!r}: not a .changes file (no Checksums-Sha256 "
                         "or Files field)")
    files = []
    for entry in listed:
        name, size, digest = entry["name"], entry["size"], entry[kind]
        if "/" in name or name in (".", ".."):
            raise UsageError(f"{where}: {path.name!r}: names {name!r}, which is not a file "
                             "beside it")
        member = path.parent / name
        if not member.is_file():
            raise UsageError(f"{where}: {path.name!r}: names {name!r}, which is not beside it")
        if member.stat().st_size != int(size) or _digest(member, kind) != digest:
            raise UsageError(f"{where}: {path.name!r}: {name!r} does not match its size and "
                             f"{'SHA-256' if kind == 'sha256' else 'MD5'} checksum in the "
                             ".changes")
        files.append(member)
    return files


def collect_candidates(sources: Iterable[Path | str], *, option: Callable[[int], str],
                       keyring: Path | None = None) -> tuple[Candidate, ...]:
    """The .debs named by files and directories; `option(i)` names the i-th in errors."""
    found: list[Candidate] = []
    for i, source in enumerate(sources):
        where = option(i)
        path = Path(source)
        if path.is_dir():
            debs = sorted(path.glob("*.deb"))
            if not debs:
                raise UsageError(f"{where}: {path}: a directory without any .deb file")
        elif path.suffix == ".deb":
            if not path.is_file():
                raise UsageError(f"{where}: no such file: {path}")
            debs = [path]
        elif path.suffix == ".changes":
            if not path.is_file():
                raise UsageError(f"{where}: no such file: {path}")
            debs = [f for f in _changes_files(path, where, keyring) if f.suffix == ".deb"]
            if not debs:
                raise UsageError(f"{where}: {path.name!r}: lists no .deb (a source-only upload "
                                 "has nothing to install)")
        elif not path.exists() and not path.suffix:
            raise UsageError(f"{where}: no such file or directory: {path}")
        else:
            raise UsageError(f"{where}: {path.name!r} is not a .deb or .changes file or a "
                             "directory of .debs")
        found.extend(_deb_fields(deb, where) for deb in debs)
    by_name: dict[str, Candidate] = {}
    for candidate in found:
        other = by_name.setdefault(candidate.package, candidate)
        if other is not candidate and other.path != candidate.path:
            raise UsageError(f"candidates: {candidate.package} twice: {other.path} and "
                             f"{candidate.path}")
    return tuple(by_name.values())


def profile_for(candidates: Sequence[Candidate]) -> str:
    """The profile that tests the candidates' sources: one service's, or the whole cloud."""
    profiles = {SOURCE_PROFILES.get(c.source, FULL) for c in candidates}
    return profiles.pop() if len(profiles) == 1 else FULL


def build_repository(candidates: Sequence[Candidate], directory: Path) -> Path:
    """A flat repository of the candidates in `directory` (Packages, Release), by apt-ftparchive.

    Flat ("deb URL ./"): one directory, no dists/ tree. Its Release file
    carries Origin and Label, which the guest's pin names.
    """
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for candidate in candidates:
        shutil.copyfile(candidate.path, directory / candidate.filename)
    packages = proc.run(["apt-ftparchive", "packages", "."], cwd=directory, capture=True,
                        error=UsageError)
    (directory / "Packages").write_text(packages.stdout)
    release = proc.run(["apt-ftparchive",
                        "-o", f"APT::FTPArchive::Release::Origin={ORIGIN}",
                        "-o", f"APT::FTPArchive::Release::Label={LABEL}",
                        "-o", "APT::FTPArchive::Release::Suite=candidates",
                        "-o", "APT::FTPArchive::Release::Architectures=amd64 all",
                        "release", "."], cwd=directory, capture=True, error=UsageError)
    (directory / "Release").write_text(release.stdout)
    directory.chmod(0o755)
    for path in directory.iterdir():
        path.chmod(0o644)
    return directory


def parse_source_line(line: str, where: str, *, apt_proxy: bool) -> str:
    """A `--candidate-source` "deb [trusted=yes] URL SUITE [COMPONENT...]", checked and
    normalized (archives.py: what the apt proxy lets through)."""
    from tempest_live_ci.archives import parse_source

    return parse_source(line, where, apt_proxy=apt_proxy).text()
