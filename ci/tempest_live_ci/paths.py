"""Where things live: data (templates, jobs, live-build config), site configuration,
state, caches, results.

Data comes from the source tree when running from a checkout (so a change is
tested without installing it) and from /usr/share/tempest-live-ci when the
package is installed. The site's own jobs and defaults are in
/etc/tempest-live-ci (siteconfig.py). Each location can be moved with an
environment variable, which the tests use to stay out of the host's
directories.
"""

from __future__ import annotations

import os
from pathlib import Path

INSTALLED_DATA = Path("/usr/share/tempest-live-ci")
SITE_CONFIG = Path("/etc/tempest-live-ci")
RESULTS = Path("/var/lib/tempest-live-ci/results")


def source_tree() -> Path | None:
    """The checkout this code runs from, if it does run from one."""
    top = Path(__file__).resolve().parents[2]
    if (top / "host-setup").is_dir() and (top / "ci" / "tempest_live_ci").is_dir():
        return top
    return None


def data_dir() -> Path:
    override = os.environ.get("TEMPEST_LIVE_CI_DATA_DIR")
    if override:
        return Path(override)
    return source_tree() or INSTALLED_DATA


def host_setup_dir() -> Path:
    return data_dir() / "host-setup"


def live_build_dir() -> Path:
    return data_dir() / "live-build"


def jobs_dir() -> Path:
    """The jobs shipped with the tool."""
    return data_dir() / "jobs"


def config_dir() -> Path:
    """The site's configuration: config.yaml (its defaults) and jobs/ (its own jobs)."""
    return Path(os.environ.get("TEMPEST_LIVE_CI_CONFIG_DIR") or SITE_CONFIG)


def site_jobs_dir() -> Path:
    """The site's jobs; one named like a shipped job replaces it."""
    return config_dir() / "jobs"


def state_dir() -> Path:
    """Runtime state: one directory per run or persistent testbed (pid files, sockets)."""
    return Path(os.environ.get("TEMPEST_LIVE_CI_STATE_DIR", "/run/tempest-live-ci"))


def cache_dir() -> Path:
    """Built images and the apt proxy's cache, kept across runs."""
    return Path(os.environ.get("TEMPEST_LIVE_CI_CACHE_DIR", "/var/cache/tempest-live-ci"))


def results_dir(site_store: Path | None) -> Path:
    """The results store: one directory per run, an index per job.

    TEMPEST_LIVE_CI_RESULTS_DIR, else site_store (results.store of the site's
    config.yaml: siteconfig.results_dir() passes it), else
    /var/lib/tempest-live-ci/results.
    """
    override = os.environ.get("TEMPEST_LIVE_CI_RESULTS_DIR")
    if override:
        return Path(override)
    return site_store or RESULTS
