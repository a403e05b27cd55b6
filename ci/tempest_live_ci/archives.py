"""The apt archives a job names, and how the guest reaches them through the apt proxy.

A job names apt sources in two places: guest.candidate_sources (with
--candidate-source) and the file guest.sources_list. Every line is checked
here, against a strict grammar, before anything changes on the host:

    deb [trusted=yes] URL SUITE [COMPONENT...]     (deb-src too in sources_list)

Through the apt proxy (testbed.apt_proxy, the default):

- Debian's archive, the Remaps of host-setup/apt-cacher-ng/acng.conf.j2
  (deb.debian.org and ftp.debian.org /debian with every suite there:
  backports, experimental; deb.debian.org and security.debian.org
  /debian-security), goes through the shared apt-cacher-ng; the line is
  left as it is.
- Any other repository URL (a CI artifact repository, another archive) is
  an extra archive: it gets a Remap of its own, `/tlcxHASH ; URL`, in an
  apt-cacher-ng serving the run's set of extra archives and nothing else
  (testbed/aptproxy.py), and the guest's line names that prefix on the
  proxy, http://HOST:3143/tlcxHASH/, instead of the URL.

Both daemons are ForceManaged: a URL the job did not name, on the same
server or any other, is refused.

Only http:// repositories are accepted through the proxy. apt sends an
https:// source to a proxy as a CONNECT tunnel, which apt-cacher-ng can allow
per host but not per path; and turning it into a Remap with an https://
backend would move the TLS check from apt in the guest to apt-cacher-ng on
the host. A job that needs an https:// repository uses a persistent
testbed with {apt_proxy: false, nat: true}, where apt checks it itself.
"""

from __future__ import annotations

import hashlib
import re
import urllib.parse
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tempest_live_ci.errors import UsageError, shown
from tempest_live_ci.inputs import read_regular

# Where the run's extra archives answer on the testbed, beside the apt proxy's 3142.
EXTRA_PORT = 3143
# Debian's archive as the shared apt-cacher-ng remaps it (acng.conf.j2): host → path.
DEBIAN_ARCHIVES = {
    "deb.debian.org": ("/debian", "/debian-security"),
    "ftp.debian.org": ("/debian",),
    "security.debian.org": ("/debian-security",),
}
PROXIED_SCHEMES = ("http",)

# Applied with fullmatch(): with match(), `$` lets a trailing newline through.
_SUITE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/-]*")
_URL_PATH = re.compile(r"[A-Za-z0-9._~/+-]*")
# A host name or IPv4 address, and an optional port: no user, no IPv6 literal.
_NETLOC = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*"
                     r"(:[0-9]{1,5})?")
# guest.sources_list: a file, read within this size.
MAX_SOURCES_LIST = 64 * 1024
# In a source line, between its words: spaces and tabs, no other control character.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f\u2028\u2029]")
TRUSTED = "[trusted=yes]"


@dataclass(frozen=True)
class SourceLine:
    """One apt source in the one-line format."""

    kind: str  # deb or deb-src
    trusted: bool
    url: str
    suite: str
    components: tuple[str, ...]

    def text(self, url: str | None = None) -> str:
        return " ".join([self.kind, *([TRUSTED] if self.trusted else []), url or self.url,
                         self.suite, *self.components])

    @property
    def on_debian_archive(self) -> bool:
        return on_debian_archive(self.url)


@dataclass(frozen=True)
class ExtraArchive:
    """A repository outside Debian's archive, reached through its own Remap of the proxy."""

    backend: str  # the URL the job names, with one trailing slash

    @property
    def name(self) -> str:
        """The Remap's name (also its cache directory) and path prefix on the proxy."""
        return "tlcx" + hashlib.sha256(self.backend.encode()).hexdigest()[:12]


def _backend(url: str) -> str:
    return url.rstrip("/") + "/"


def on_debian_archive(url: str) -> bool:
    """Is `url` served by the shared proxy's Remaps of Debian's archive?"""
    parsed = urllib.parse.urlsplit(url)
    path = "/" + parsed.path.strip("/")
    return parsed.scheme == "http" and parsed.port is None and any(
        path == prefix for prefix in DEBIAN_ARCHIVES.get(parsed.hostname or "", ()))


class _LineError(Exception):
    """What is wrong with a source line, in two forms: quoting the value, and not."""

    def __init__(self, quoted: str, reason: str, hint: str | None = None) -> None:
        super().__init__(quoted)
        self.quoted, self.reason, self.hint = quoted, reason, hint


def parse_source(line: str, where: str, *, apt_proxy: bool,
                 kinds: Sequence[str] = ("deb",)) -> SourceLine:
    """A one-line apt source, checked: a UsageError naming `where` and the value if not."""
    try:
        return _parse_source(line, apt_proxy=apt_proxy, kinds=kinds)
    except _LineError as e:
        raise UsageError(f"{where}: {e.quoted}", hint=e.hint) from None


def _parse_source(line: str, *, apt_proxy: bool, kinds: Sequence[str]) -> SourceLine:
    if not isinstance(line, str) or _CONTROL.search(line):
        raise _LineError(f"{shown(line)} is not one line of text", "not one line of text")
    words = line.split()
    trusted = len(words) >= 2 and words[1] == TRUSTED
    if trusted:
        words = [words[0], *words[2:]]
    shape = f"'{' or '.join(kinds)} URL SUITE [COMPONENT...]'"
    if len(words) < 3 or words[0] not in kinds:
        raise _LineError(f"{shown(line)} is not {shape}", f"not {shape}")
    url, suite, components = words[1], words[2], tuple(words[3:])
    bad_url = _LineError(f"{shown(url)} is not a plain http:// or https:// URL",
                         "the URL is not a plain http:// or https:// URL")
    try:
        parsed = urllib.parse.urlsplit(url)
        parsed.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError:
        raise bad_url from None
    if parsed.scheme not in ("http", "https") or not _NETLOC.fullmatch(parsed.netloc) \
            or not _URL_PATH.fullmatch(parsed.path) or ".." in parsed.path.split("/") \
            or "//" in parsed.path or parsed.query or parsed.fragment \
            or url.endswith(("?", "#")):
        raise bad_url
    if not (suite == "./" or _SUITE.fullmatch(suite)) or ".." in suite.split("/") \
            or not all(_SUITE.fullmatch(c) and ".." not in c.split("/") for c in components):
        raise _LineError(f"{shown(line)}: suite and components are names",
                         "suite and components are names")
    if suite.endswith("/") and components:
        raise _LineError(f"{shown(line)}: a flat repository (SUITE ending in /) has no "
                         "components", "a flat repository (SUITE ending in /) has no components")
    if apt_proxy and parsed.scheme not in PROXIED_SCHEMES:
        reason = ("the apt proxy passes http:// repositories only (an https:// one would be a "
                  "tunnel it cannot restrict)")
        raise _LineError(f"{shown(url)}: {reason}", reason,
                         hint="the http:// URL of the same repository, or testbed: "
                              "{mode: persistent, apt_proxy: false, nat: true}")
    return SourceLine(words[0], trusted, url, suite, components)


def parse_sources_list(path: Path, key: str, *, apt_proxy: bool) -> list[SourceLine]:
    """guest.sources_list: one-line sources, blank lines and # comments.

    A line that is no apt source is named by its number and what is wrong
    with it, never quoted: the file may be anything (guest.sources_list:
    /etc/shadow), and an error message is no way to read it.
    """
    data = read_regular(path, key, limit=MAX_SOURCES_LIST)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UsageError(f"{key}: {path}: not UTF-8 text: {e.reason} at byte {e.start}") from None
    found = []
    for number, raw in enumerate(text.split("\n"), 1):
        raw = raw.removesuffix("\r")  # a file with CRLF line ends
        line = raw.split("#", 1)[0].strip(" \t") if not raw.lstrip().startswith("#") else ""
        if line:
            try:
                found.append(_parse_source(line, apt_proxy=apt_proxy, kinds=("deb", "deb-src")))
            except _LineError as e:
                raise UsageError(f"{key}: {path} line {number}: {e.reason}", hint=e.hint) from None
    if not found:
        raise UsageError(f"{key}: {path}: names no apt source")
    return found


def extra_archives(lines: Iterable[SourceLine]) -> tuple[ExtraArchive, ...]:
    """The repositories outside Debian's archive that the lines name, each once, sorted."""
    return tuple(ExtraArchive(b) for b in sorted({_backend(s.url) for s in lines
                                                  if not s.on_debian_archive}))


def through_proxy(line: SourceLine, extra_proxy: str) -> str:
    """The line the guest gets: an extra archive's URL becomes its prefix on the proxy."""
    if line.on_debian_archive:
        return line.text()
    return line.text(f"{extra_proxy.rstrip('/')}/{ExtraArchive(_backend(line.url)).name}/")


def sources_list_text(lines: Iterable[SourceLine], extra_proxy: str | None) -> str:
    """guest.sources_list as the guest writes it (extra archives through the proxy)."""
    return "# guest.sources_list, written by tempest-live-ci for this run.\n" + "".join(
        f"{through_proxy(s, extra_proxy) if extra_proxy else s.text()}\n" for s in lines)


def job_sources(sources_list: str | None, candidate_sources: Iterable[str], *,
                apt_proxy: bool) -> tuple[list[SourceLine], list[SourceLine]]:
    """The lines of a job's guest.sources_list and guest.candidate_sources (checked on load)."""
    listed = parse_sources_list(Path(sources_list), "guest.sources_list", apt_proxy=apt_proxy) \
        if sources_list else []
    extra = [parse_source(line, f"guest.candidate_sources[{i}]", apt_proxy=apt_proxy)
             for i, line in enumerate(candidate_sources)]
    return listed, extra
