"""What the in-guest steps are told: the job, the testbed and the image as params.json.

Pure functions of the job: the tests read them with recorded jobs.
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from tempest_live_ci.archives import EXTRA_PORT, job_sources, sources_list_text, through_proxy
from tempest_live_ci.deploy.profiles import get_profile
from tempest_live_ci.job import Job
from tempest_live_ci.testbed.model import Testbed

LISTS = "lists"  # under the guest's state directory
REGION = "RegionOne"


def guest_files(job: Job) -> dict[str, bytes]:
    """The job's files the guest needs, by their name under its state directory."""
    files = {}
    for key, value in (("include", job.tempest.include_list), ("exclude", job.tempest.exclude_list)):
        if value is not None:
            files[f"{LISTS}/{key}.list"] = Path(value).read_bytes()
    return files


def extra_proxy_url(testbed: Testbed) -> str:
    """Where the guest reaches the run's extra archives (archives.py): the testbed's side."""
    return f"http://{testbed.host_address}:{EXTRA_PORT}"


def guest_sources(job: Job, testbed: Testbed) -> tuple[str | None, list[str]]:
    """guest.sources_list's text and the candidate sources, as the guest writes them.

    Through the apt proxy, a repository outside Debian's archive is named by
    its prefix on the run's extra proxy (extra_proxy_url) instead of its URL.
    """
    proxied = job.testbed.apt_proxy
    listed, extra = job_sources(job.guest.sources_list, job.guest.candidate_sources,
                                apt_proxy=proxied)
    via = extra_proxy_url(testbed) if proxied else None
    text = sources_list_text(listed, via) if listed else None
    return text, [through_proxy(s, via) if via else s.text() for s in extra]


def guest_params(job: Job, testbed: Testbed, *, guest_state: str,
                 admin_password: str | None = None, image_url: str | None = None,
                 accelerator: str = "tcg") -> dict[str, Any]:
    mirror = job.image.mirror.rstrip("/")
    security = mirror + "-security" if mirror.endswith("/debian") \
        else "http://deb.debian.org/debian-security"
    t = job.tempest
    chosen = t.regex or t.smoke or t.include_list
    profile = get_profile(t.profile)
    sources_list, _ = guest_sources(job, testbed)
    return {
        "profile": t.profile,
        "preinstalled": job.image.preinstall,
        "suite": job.guest.suite or job.image.suite,
        "image_suite": job.image.suite,
        "mirror": mirror,
        "security_mirror": security,
        "check_valid_until": job.image.check_valid_until,
        "experimental": job.guest.experimental,
        # The testbed's way to the archive: its apt proxy, or NAT (no proxy).
        "apt_proxy": testbed.apt_proxy if job.testbed.apt_proxy else None,
        # The testbed's own servers (the candidates' repository, the extra
        # archives' proxy) are reached directly, not through the apt proxy.
        "apt_direct": [str(testbed.host_address)] if job.testbed.apt_proxy else [],
        "sources_list": sources_list,
        "setup_commands": list(job.guest.setup_commands),
        "guest_address": str(testbed.guest_address),
        "vcpus": job.vm.vcpus,
        "region": REGION,
        "admin_password": admin_password or secrets.token_urlsafe(18),
        # The services' own: their keystone users, their databases.
        "service_password": secrets.token_urlsafe(18),
        "image_url": image_url,
        # How the host runs the guest: nova uses KVM inside it only when it is kvm.
        "host_accelerator": accelerator,
        "tempest": {
            "regex": t.regex if chosen else profile.default_regex,
            "exclude_regex": t.exclude_regex,
            "smoke": t.smoke if chosen else profile.default_smoke,
            "include_list": f"{guest_state}/{LISTS}/include.list" if t.include_list else None,
            "exclude_list": f"{guest_state}/{LISTS}/exclude.list" if t.exclude_list else None,
            "concurrency": t.concurrency or job.vm.vcpus,
            "conf": dict(t.conf),
        },
    }
