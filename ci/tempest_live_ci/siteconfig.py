"""The site's defaults: /etc/tempest-live-ci/config.yaml (TEMPEST_LIVE_CI_CONFIG_DIR).

    results:
      store: /srv/tempest-live-ci/results   # the results store, where runs are written
    image:
      mirror: http://mirror.example/debian  # for jobs that name no image.mirror
      apt_proxy: auto                       # image builds: auto, none or an HTTP proxy URL
      check_valid_until: false              # accept a Release past its Valid-Until
                                            # (a snapshot or a frozen mirror), for every job

Every key is optional and the file too. It is read like a job file, by the
same bounded YAML loader (yamlfile.py: no aliases, no key twice): an
unknown key, a wrong type or a bad value is a UsageError (exit 20) naming
the file, the dotted key and the value, before anything is done on the host.
What wins, first to last: the command line, the environment
(TEMPEST_LIVE_CI_RESULTS_DIR), the job file, this file, the built-in default.

The site's own jobs are beside it, in jobs/ (job.py's find_job).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tempest_live_ci import paths
from tempest_live_ci.errors import UsageError, shown
from tempest_live_ci.image.model import APT_PROXY_AUTO, url_problem
from tempest_live_ci.schema import key_text, section
from tempest_live_ci.yamlfile import read_yaml

CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class SiteResults:
    store: str | None = None


@dataclass(frozen=True)
class SiteImage:
    mirror: str | None = None
    apt_proxy: str | None = None
    # For jobs that do not say image.check_valid_until (None: apt's default, true).
    check_valid_until: bool | None = None


@dataclass(frozen=True)
class SiteConfig:
    results: SiteResults = field(default_factory=SiteResults)
    image: SiteImage = field(default_factory=SiteImage)
    source: str | None = None  # the file it was read from, None when there is none

    @property
    def results_store(self) -> Path | None:
        return Path(self.results.store) if self.results.store else None

    def image_apt_proxy(self) -> str | None:
        """ImageOptions.apt_proxy: "auto" unless the site says otherwise; None for "none"."""
        value = self.image.apt_proxy or APT_PROXY_AUTO
        return None if value == "none" else value


SECTIONS: dict[str, type[Any]] = {"results": SiteResults, "image": SiteImage}


def config_file() -> Path:
    return paths.config_dir() / CONFIG_FILE


def results_dir() -> Path:
    """The results store: TEMPEST_LIVE_CI_RESULTS_DIR, else results.store of this file,
    else /var/lib/tempest-live-ci/results (paths.results_dir)."""
    return paths.results_dir(site_config().results_store)


def site_config() -> SiteConfig:
    """The site's config.yaml, checked; the defaults when there is none."""
    path = config_file()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return SiteConfig()
    except OSError as e:
        raise UsageError(f"{path}: cannot read: {e.strerror}") from None
    # Read once per process, again if the file changes (the tests write it).
    return _load(str(path), stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=4)
def _load(path: str, mtime_ns: int, size: int) -> SiteConfig:
    data = read_yaml(Path(path))
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{path}: the site configuration is a mapping of sections, "
                         f"got {type(data).__name__}")
    for key in data:
        if key not in SECTIONS:
            raise UsageError(f"{path}: {key_text(key)}: unknown key "
                             f"(known: {', '.join(sorted(SECTIONS))})")
    try:
        sections = {key: section(key, cls, data.get(key))
                    for key, cls in SECTIONS.items()}
    except UsageError as e:
        raise UsageError(f"{path}: {e.message}") from None
    config = SiteConfig(source=path, **sections)
    _check(path, config)
    return config


def _check(path: str, config: SiteConfig) -> None:
    store = config.results.store
    if store is not None and not Path(store).is_absolute():
        raise UsageError(f"{path}: results.store: {shown(store)} is not an absolute path")
    mirror = config.image.mirror
    if mirror is not None:
        problem = url_problem(mirror)
        if problem is not None:
            raise UsageError(f"{path}: image.mirror: {shown(mirror)} is not a usable http:// or "
                             f"https:// URL: {problem}")
    proxy = config.image.apt_proxy
    if proxy is not None and proxy not in (APT_PROXY_AUTO, "none"):
        problem = url_problem(proxy)
        if problem is not None:
            raise UsageError(f"{path}: image.apt_proxy: {shown(proxy)} is not auto, none or an "
                             f"http:// URL: {problem}")
