"""What the in-guest steps are told: the job and the machine's network as params.json.

Pure functions of the job (and of the machine's GuestNetwork): the tests
read them with recorded jobs. make_test_image() writes the one file the
job's tests need that the job does not name.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from tempest_live_ci.archives import job_sources, sources_list_text, through_proxy
from tempest_live_ci.deploy.params import Params, TempestParams
from tempest_live_ci.deploy.profiles import get_profile
from tempest_live_ci.inputs import open_regular
from tempest_live_ci.job import Job
from tempest_live_ci.machine import GuestNetwork

LISTS = "lists"  # under the guest's state directory
REGION = "RegionOne"


def guest_files(job: Job) -> dict[str, bytes]:
    """The job's files the guest needs, by their name under its state directory."""
    files = {}
    for key, value in (("include", job.tempest.include_list), ("exclude", job.tempest.exclude_list)):
        if value is not None:
            files[f"{LISTS}/{key}.list"] = Path(value).read_bytes()
    return files


def guest_sources(job: Job, network: GuestNetwork) -> tuple[str | None, list[str]]:
    """guest.sources_list's text and the candidate sources, as the guest writes them.

    Through the apt proxy, a repository outside Debian's archive is named by
    its prefix on the run's extra proxy (network.extra_proxy) instead of its URL.
    """
    via = network.extra_proxy
    listed, extra = job_sources(job.guest.sources_list, job.guest.candidate_sources,
                                apt_proxy=via is not None)
    text = sources_list_text(listed, via) if listed else None
    return text, [through_proxy(s, via) if via else s.text() for s in extra]


def guest_params(job: Job, network: GuestNetwork, *, guest_state: str,
                 admin_password: str | None = None, image_url: str | None = None,
                 accelerator: str = "tcg") -> Params:
    mirror = job.image.mirror.rstrip("/")
    security = mirror + "-security" if mirror.endswith("/debian") \
        else "http://deb.debian.org/debian-security"
    t = job.tempest
    chosen = t.regex or t.smoke or t.include_list
    profile = get_profile(t.profile)
    sources_list, _ = guest_sources(job, network)
    assert job.vm.vcpus is not None  # the profile's default is filled in on load
    return Params(
        profile=t.profile,
        preinstalled=job.image.preinstall,
        suite=job.guest.suite or job.image.suite,
        image_suite=job.image.suite,
        mirror=mirror,
        security_mirror=security,
        check_valid_until=job.image.check_valid_until,
        experimental=job.guest.experimental,
        # The machine's way to the archive: the testbed's apt proxy, or none (NAT, its own).
        apt_proxy=network.apt_proxy,
        # The testbed's own servers (the candidates' repository, the extra
        # archives' proxy) are reached directly, not through the apt proxy.
        apt_direct=network.direct,
        sources_list=sources_list,
        setup_commands=job.guest.setup_commands,
        guest_address=network.address,
        vcpus=job.vm.vcpus,
        region=REGION,
        admin_password=admin_password or secrets.token_urlsafe(18),
        service_password=secrets.token_urlsafe(18),
        image_url=image_url,
        host_accelerator=accelerator,
        tempest=TempestParams(
            regex=t.regex if chosen else profile.default_regex,
            exclude_regex=t.exclude_regex,
            smoke=t.smoke if chosen else profile.default_smoke,
            discover=t.discover,
            include_list=f"{guest_state}/{LISTS}/include.list" if t.include_list else None,
            exclude_list=f"{guest_state}/{LISTS}/exclude.list" if t.exclude_list else None,
            concurrency=t.concurrency or job.vm.vcpus,
            conf=dict(t.conf),
        ),
    )


# The default test image: 1 MiB, raw, its first bytes saying what it is.
TEST_IMAGE_MARKER = b"tempest-live-ci test image: not bootable\n"
TEST_IMAGE_SIZE = 1 << 20
TEST_IMAGE = "tempest-live-ci-test.raw"


def make_test_image(job: Job, directory: Path) -> Path | str | None:
    """The disk image glance gets for tempest: a URL the job gave (passed on), or a file
    in `directory` for the machine to serve; None when the profile needs none.

    The job's file is copied as it was checked; by default a small raw image
    is made (nothing outside Debian's archive is reachable, and Debian has no
    cirros): enough for nova's fake driver, which boots nothing. Readable by
    this user alone: a job's image may be private.
    """
    if not get_profile(job.tempest.profile).needs_image:
        return None
    image = job.tempest.image
    if image is not None and image.startswith(("http://", "https://")):
        return image
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    if image is not None:
        path = directory / Path(image).name
        with open_regular(image, "tempest.image") as source, \
                os.fdopen(os.open(path, flags, 0o600), "wb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
        return path
    path = directory / TEST_IMAGE
    with os.fdopen(os.open(path, flags, 0o600), "wb") as out:
        out.write(TEST_IMAGE_MARKER)
        out.truncate(TEST_IMAGE_SIZE)
    return path
