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
import os
import re
import shutil
import stat
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from tempest_live_ci import proc
from tempest_live_ci.archives import parse_source
from tempest_live_ci.errors import UsageError, cut, shown
from tempest_live_ci.inputs import open_regular, read_regular
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import log

if TYPE_CHECKING:
    from debian import deb822
else:
    deb822 = lazy_module("debian.deb822")

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

# Applied with fullmatch(): with match(), `$` lets a trailing newline through.
_NAME = re.compile(r"[a-z0-9][a-z0-9+.-]+")
_VERSION = re.compile(r"([0-9]+:)?[A-Za-z0-9.+~-]+")
# What a .changes entry may name: a file beside it (dpkg-genchanges writes
# PACKAGE_VERSION_ARCH.deb and the like), never a path, never an option.
_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+~-]*")
_SIZE = re.compile(r"[0-9]{1,15}")
_DIGEST = {"sha256": re.compile(r"[0-9a-f]{64}"), "md5sum": re.compile(r"[0-9a-f]{32}")}
# A .changes is a few kilobytes: an upload of dozens of binaries stays far below this.
MAX_CHANGES = 1024 * 1024


@dataclass(frozen=True)
class Candidate:
    path: Path
    package: str
    version: str
    architecture: str
    source: str  # the source package it was built from
    # The SHA-256 of what was checked: the repository gets those bytes or nothing.
    sha256: str = field(default="", compare=False)

    @property
    def filename(self) -> str:
        return self.path.name

    def as_json(self) -> dict[str, str]:
        return {"package": self.package, "version": self.version,
                "architecture": self.architecture, "source": self.source,
                "file": self.filename}


# What this process has read of a file already, by the file's identity: the job's
# own candidates are checked when the job is read and taken again with the
# command line's, and dpkg-deb and gpgv run once per file (a file changed since
# is another identity: read again).
FileIdentity = tuple[str, int, int, int, int, int]
_read_debs: dict[FileIdentity, Candidate] = {}
_good_signatures: set[tuple[str, FileIdentity]] = set()


def _identity(path: Path, st: os.stat_result) -> FileIdentity:
    return (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns,
            st.st_ctime_ns)


def _deb_fields(path: Path, where: str) -> Candidate:
    """The control fields of a .deb, read by dpkg-deb from the file opened and checked here."""
    with open_regular(path, where) as f:
        identity = _identity(path, os.fstat(f.fileno()))
        if identity in _read_debs:
            return _read_debs[identity]
        # dpkg-deb reads the descriptor checked, not the name again.
        result = proc.run(["dpkg-deb", "--field", "/dev/stdin", "Package", "Version",
                           "Architecture", "Source"], stdin=f, capture=True, check=False)
        f.seek(0)
        sha256 = _digest(f, "sha256")
    if result.returncode != 0:
        reason = (result.stderr.strip().splitlines() or ["dpkg-deb cannot read it"])[-1]
        reason = reason.removeprefix("dpkg-deb: error: ").replace("/dev/stdin", path.name)
        raise UsageError(f"{where}: {shown(path.name)}: not a Debian binary package "
                         f"({cut(reason, 120)})")
    fields: dict[str, str] = {}
    for line in result.stdout.splitlines():
        key, sep, value = line.partition(":")
        if sep and not line.startswith((" ", "\t")):
            fields[key.strip()] = value.strip()
    package, version = fields.get("Package", ""), fields.get("Version", "")
    architecture = fields.get("Architecture", "")
    if not _NAME.fullmatch(package) or not _VERSION.fullmatch(version):
        raise UsageError(f"{where}: {shown(path.name)}: no valid Package and Version fields")
    if architecture not in ARCHITECTURES:
        raise UsageError(f"{where}: {shown(path.name)}: architecture {shown(architecture)} does "
                         f"not install in the guest ({' or '.join(ARCHITECTURES)})")
    # "Source: keystone (2:27.0.0-2)" when the binary's version differs.
    source = fields.get("Source", "").split(" ")[0] or package
    if not _NAME.fullmatch(source):
        raise UsageError(f"{where}: {shown(path.name)}: no valid Source field")
    found = _read_debs[identity] = Candidate(path.resolve(), package, version, architecture,
                                             source, sha256)
    return found


def _digest(f: BinaryIO, kind: str, copy: BinaryIO | None = None) -> str:
    """The digest of what is left to read in `f`; copied to `copy` on the way."""
    digest = hashlib.sha256() if kind == "sha256" else hashlib.md5(usedforsecurity=False)
    for block in iter(lambda: f.read(1 << 20), b""):
        digest.update(block)
        if copy is not None:
            copy.write(block)
    return digest.hexdigest()


def _changes_files(path: Path, where: str, keyring: Path | None) -> list[Path]:
    """The files a .changes lists, each checked against its size and checksum."""
    text = read_regular(path, where, limit=MAX_CHANGES)
    name = shown(path.name)
    signed = text.lstrip().startswith(b"-----BEGIN PGP SIGNED MESSAGE-----")
    if keyring is not None:
        if not signed:
            raise UsageError(f"{where}: {name}: not signed, and --keyring asks for a "
                             "signature check")
        # gpgv checks the bytes read above, the ones parsed below; the keyring
        # was checked with the option or key that names it (job.check_candidates).
        verdict = (hashlib.sha256(text).hexdigest(), _identity(keyring, keyring.stat()))
        if verdict not in _good_signatures:
            check = proc.run(["gpgv", "--keyring", keyring.resolve(), "-"], input=text,
                             capture=True, check=False)
            if check.returncode != 0:
                reason = " / ".join(line.removeprefix("gpgv: ") for line
                                    in check.stderr.strip().splitlines()[-2:])
                raise UsageError(f"{where}: {name}: bad signature or unknown key "
                                 f"({keyring}): {cut(reason, 200)}")
            _good_signatures.add(verdict)
            log.info("%s: signature good (%s)", path.name, keyring)
    elif signed:
        log.warning("%s is signed, but its signature is not checked (no --keyring)", path.name)
    changes = deb822.Changes(text.decode("utf-8", errors="replace"))
    # Checksums-Sha256 in every .changes dpkg-genchanges writes; Files (MD5) alone in old ones.
    kind, listed = "sha256", changes.get("Checksums-Sha256") or []
    if not listed:
        kind, listed = "md5sum", changes.get("Files") or []
    if not listed:
        raise UsageError(f"{where}: {name}: not a .changes file (no Checksums-Sha256 "
                         "or Files field)")
    field_name = "Checksums-Sha256" if kind == "sha256" else "Files"
    files = []
    for number, entry in enumerate(listed, 1):
        member_name, size, digest = entry.get("name"), entry.get("size"), entry.get(kind)
        if member_name is None or size is None or digest is None:
            raise UsageError(f"{where}: {name}: {field_name} entry {number} is not "
                             f"'{kind.upper() if kind == 'md5sum' else 'SHA256'} SIZE "
                             f"{'SECTION PRIORITY ' if kind == 'md5sum' else ''}FILE'")
        if not _FILE_NAME.fullmatch(member_name) or member_name in (".", ".."):
            raise UsageError(f"{where}: {name}: names {shown(member_name)}, which is not a file "
                             "beside it")
        if not _SIZE.fullmatch(size):
            raise UsageError(f"{where}: {name}: {field_name} entry {number}: the size "
                             f"{shown(size)} is not a number")
        if not _DIGEST[kind].fullmatch(digest):
            raise UsageError(f"{where}: {name}: {field_name} entry {number}: {shown(digest)} "
                             f"is not {'a SHA-256' if kind == 'sha256' else 'an MD5'} checksum")
        member = path.parent / member_name
        if not os.path.lexists(member):
            raise UsageError(f"{where}: {name}: names {shown(member_name)}, which is not "
                             "beside it")
        with open_regular(member, where) as f:
            matches = os.fstat(f.fileno()).st_size == int(size) and _digest(f, kind) == digest
        if not matches:
            raise UsageError(f"{where}: {name}: {shown(member_name)} does not match its size and "
                             f"{'SHA-256' if kind == 'sha256' else 'MD5'} checksum in the "
                             ".changes")
        files.append(member)
    return files


def collect_candidates(sources: Iterable[Path | str], *, option: Callable[[int], str],
                       keyring: Path | None = None) -> tuple[Candidate, ...]:
    """The .debs named by files and directories; `option(i)` names the i-th in errors.

    What is named and what a directory or a .changes holds must be regular
    files, or directories for what is named: no symbolic link, FIFO or device.
    """
    found: list[Candidate] = []
    for i, source in enumerate(sources):
        where = option(i)
        path = Path(source)
        try:
            mode: int | None = os.lstat(path).st_mode
        except FileNotFoundError:
            mode = None
        except OSError as e:
            raise UsageError(f"{where}: {path}: cannot be read: {e.strerror}") from None
        if mode is not None and stat.S_ISLNK(mode):
            raise UsageError(f"{where}: {path}: a symbolic link, not a file or a directory "
                             "(name the file itself)")
        if mode is not None and stat.S_ISDIR(mode):
            debs = sorted(path.glob("*.deb"))
            if not debs:
                raise UsageError(f"{where}: {path}: a directory without any .deb file")
        elif path.suffix == ".deb":
            if mode is None:
                raise UsageError(f"{where}: no such file: {path}")
            debs = [path]
        elif path.suffix == ".changes":
            if mode is None:
                raise UsageError(f"{where}: no such file: {path}")
            debs = [f for f in _changes_files(path, where, keyring) if f.suffix == ".deb"]
            if not debs:
                raise UsageError(f"{where}: {shown(path.name)}: lists no .deb (a source-only "
                                 "upload has nothing to install)")
        elif mode is None and not path.suffix:
            raise UsageError(f"{where}: no such file or directory: {path}")
        else:
            raise UsageError(f"{where}: {shown(path.name)} is not a .deb or .changes file or a "
                             "directory of .debs")
        found.extend(_deb_fields(deb, where) for deb in debs)
    return distinct(found)


def distinct(found: Iterable[Candidate]) -> tuple[Candidate, ...]:
    """The candidates, each file once; two packages of one name, or two files of one
    name (one file name in the flat repository), are refused."""
    by_name: dict[str, Candidate] = {}
    by_file: dict[str, Candidate] = {}
    for candidate in found:
        other = by_name.setdefault(candidate.package, candidate)
        if other is not candidate and other.path != candidate.path:
            raise UsageError(f"candidates: {candidate.package} twice: {other.path} and "
                             f"{candidate.path}")
        other = by_file.setdefault(candidate.filename, candidate)
        if other is not candidate and other.path != candidate.path:
            raise UsageError(f"candidates: two files named {candidate.filename}: {other.path} "
                             f"and {candidate.path}")
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
    candidates = distinct(candidates)
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    for candidate in candidates:
        # The bytes checked, or nothing: a file replaced since is refused.
        with open_regular(candidate.path, "candidates") as f, \
                open(directory / candidate.filename, "xb") as copy:
            sha256 = _digest(f, "sha256", copy)
        if candidate.sha256 and sha256 != candidate.sha256:
            raise UsageError(f"candidates: {candidate.path} changed since it was checked")
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
    return parse_source(line, where, apt_proxy=apt_proxy).text()
