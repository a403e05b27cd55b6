"""Where things live: data (templates, jobs, live-build config), state, caches.

Data comes from the source tree when running from a checkout (so a change is
tested without installing it) and from /usr/share/tempest-live-ci when the
package is installed. Each location can be moved with an environment variable,
which the tests use to stay out of the host's directories.
"""

from __future__ import annotations

import os
from pathlib import Path

INSTALLED_DATA = Path("/usr/share/tempest-live-ci")


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
    return data_dir() / "jobs"


def state_dir() -> Path:
    """Runtime state: one directory per run or persistent testbed (pid files, sockets)."""
    return Path(os.environ.get("TEMPEST_LIVE_CI_STATE_DIR", "/run/tempest-live-ci"))


def cache_dir() -> Path:
    """Built images and the apt proxy's cache, kept across runs."""
    return Path(os.environ.get("TEMPEST_LIVE_CI_CACHE_DIR", "/var/cache/tempest-live-ci"))


def results_dir() -> Path:
    """The results store: one directory per run, an index per job."""
    return Path(os.environ.get("TEMPEST_LIVE_CI_RESULTS_DIR", "/var/lib/tempest-live-ci/results"))
