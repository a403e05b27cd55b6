"""The apt sources a job names: the grammar, Debian's archive or an extra archive, rewriting."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from tempest_live_ci.archives import (
    ExtraArchive,
    extra_archives,
    on_debian_archive,
    parse_source,
    parse_sources_list,
    through_proxy,
)
from tempest_live_ci.deploy.apt import apt_conf
from tempest_live_ci.errors import UsageError
from tempest_live_ci.job import load_job


@pytest.mark.parametrize("url, debian", [
    ("http://deb.debian.org/debian", True),
    ("http://deb.debian.org/debian/", True),
    ("http://ftp.debian.org/debian", True),
    ("http://deb.debian.org/debian-security/", True),
    ("http://security.debian.org/debian-security", True),
    # Not what the shared daemon's Remaps cover: extra archives of their own.
    ("http://deb.debian.org/debian-debug", False),
    ("http://deb.debian.org/debian/pool", False),
    ("http://ftp.debian.org/debian-security", False),
    ("http://deb.debian.org:8080/debian", False),
    ("http://deb.debian.org.example.org/debian", False),
    ("http://ci.example.org/debian", False),
])
def test_what_the_shared_proxy_serves(url: str, debian: bool) -> None:
    assert on_debian_archive(url) is debian


def test_extra_archives_are_each_repository_once() -> None:
    lines = [parse_source(text, "x", apt_proxy=True) for text in (
        "deb http://deb.debian.org/debian trixie-backports main",
        "deb http://ci.example.org/r sid main",
        "deb http://ci.example.org/r/ sid contrib",
        "deb http://ci.example.org/s ./")]
    assert extra_archives(lines) == (ExtraArchive("http://ci.example.org/r/"),
                                     ExtraArchive("http://ci.example.org/s/"))
    name = ExtraArchive("http://ci.example.org/r/").name
    assert name.startswith("tlcx") and name.isalnum() and len(name) == 16
    assert through_proxy(lines[1], "http://10.0.0.1:3143") == \
        f"deb http://10.0.0.1:3143/{name}/ sid main"
    assert through_proxy(lines[0], "http://10.0.0.1:3143") == lines[0].text()


@pytest.mark.parametrize("text, message", [
    ("deb http://ci.example.org/r sid main\ndeb http://x/$(reboot) sid main\n",
     "line 2: the URL is not a plain http:// or https:// URL"),
    ("deb https://ci.example.org/r sid main\n",
     "line 1: the apt proxy passes http:// repositories only"),
    ("Types: deb\nURIs: http://deb.debian.org/debian\n",
     "line 1: not 'deb or deb-src URL SUITE [COMPONENT...]'"),
    ("# nothing\n\n", "names no apt source"),
    ("deb http://ci.example.org/r sid main`id`\n", "suite and components are names"),
    ("deb http://ci.example.org/r sid main\rdeb http://x/ sid main\n", "line 1: not one line"),
])
def test_a_bad_sources_list_names_the_key_the_file_and_the_line(
        tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "sources.list"
    path.write_text(text)
    with pytest.raises(UsageError) as e:
        parse_sources_list(path, "guest.sources_list", apt_proxy=True)
    assert e.value.message.startswith(f"guest.sources_list: {path}")
    assert message in e.value.message and "\n" not in e.value.message


def test_a_job_with_a_bad_sources_list_is_refused_on_load(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://ci.example.org/r;id sid main\n")
    (tmp_path / "j.yaml").write_text("guest: {sources_list: sources.list}\n")
    with pytest.raises(UsageError) as e:
        load_job(tmp_path / "j.yaml")
    assert e.value.message == (
        f"{tmp_path / 'j.yaml'}: guest.sources_list: {tmp_path / 'sources.list'} line 1: "
        "the URL is not a plain http:// or https:// URL")


SHADOW = ("root:$y$j9T$PWzTqMbUQ1Ql6tRSl2vwL/$4c5JmJoB2ZWtsqkgqGBXYZ.sjNyHq0Zb1H0Pe1Wb2j6:19700"
          ":0:99999:7:::\ndaemon:*:19700:0:99999:7:::\n")


@pytest.mark.parametrize("line", [
    SHADOW,
    "deb http://secret-token-4c5JmJoB@ci.example.org/r sid main\n",
    "deb http://ci.example.org/4c5JmJoB2ZWtsqkgq;x sid main\n",
    "deb http://ci.example.org/r 4c5JmJoB2ZWtsqkgq`x` main\n",
])
def test_a_file_that_is_no_sources_list_is_never_quoted(tmp_path: Path, line: str) -> None:
    # guest.sources_list: /etc/shadow, or a file of its kind: the error says
    # where and why, and nothing of what the file holds.
    secret = tmp_path / "shadow"
    secret.write_text(line)
    secret.chmod(0o640)
    with pytest.raises(UsageError) as e:
        parse_sources_list(secret, "guest.sources_list", apt_proxy=True)
    prefix = f"guest.sources_list: {secret} line 1: "
    assert e.value.message.startswith(prefix)
    reason = e.value.message.removeprefix(prefix)
    assert "4c5JmJoB" not in reason and "root" not in reason, reason


@pytest.mark.parametrize("make, message", [
    (lambda p: os.mkfifo(p), "a FIFO, not a regular file"),
    (lambda p: p.symlink_to("/etc/shadow"),
     "a symbolic link, not a regular file (name the file itself)"),
    (lambda p: p.mkdir(), "a directory, not a regular file"),
    (lambda p: p.write_bytes(b"deb http://ci.example.org/r sid main\n" * 4096),
     "larger than 64 KiB"),
])
def test_a_sources_list_is_a_small_regular_file(tmp_path: Path,
                                                make: Callable[[Path], object],
                                                message: str) -> None:
    path = tmp_path / "sources.list"
    make(path)
    with pytest.raises(UsageError) as e:
        parse_sources_list(path, "guest.sources_list", apt_proxy=True)
    assert e.value.message == f"guest.sources_list: {path}: {message}"


def test_the_guest_reaches_the_testbed_directly() -> None:
    text = apt_conf("http://192.168.100.1:3142", ["192.168.100.1"])
    assert 'Acquire::http::Proxy "http://192.168.100.1:3142";\n' in text
    assert 'Acquire::http::Proxy::192.168.100.1 "DIRECT";\n' in text
    assert "DIRECT" not in apt_conf(None, ["192.168.100.1"])


def test_the_guest_accepts_an_expired_release_only_when_the_job_does() -> None:
    assert "Check-Valid-Until" not in apt_conf("http://192.168.100.1:3142", ["192.168.100.1"])
    text = apt_conf("http://192.168.100.1:3142", ["192.168.100.1"], check_valid_until=False)
    assert 'Acquire::Check-Valid-Until "false";\n' in text


def test_guest_params_carry_the_jobs_valid_until_choice() -> None:
    from tempest_live_ci.guest.plan import guest_params
    from tempest_live_ci.job import parse_job
    from tests.unit.deploy.test_plan import network

    for said, sent in ((None, True), (False, False)):
        image = {"suite": "sid"} if said is None else {"suite": "sid", "check_valid_until": said}
        job = parse_job({"image": image}, "x.yaml", "x")
        assert guest_params(job, network(job), guest_state="/s").check_valid_until is sent


def test_apts_expired_release_becomes_one_line_naming_archive_date_and_setting() -> None:
    import datetime

    from tempest_live_ci.image.archive import expired_problem

    apt = ("E: Release file for http://127.0.0.1:3142/debian/dists/sid/InRelease is expired "
           "(invalid since 25d 11h 41min 20s). Updates for this repository will not be applied.")
    now = datetime.datetime(2026, 12, 1, 19, 49, 21, tzinfo=datetime.UTC)
    message = expired_problem(f"Hit:1 x\n{apt}\n", "sid", "http://deb.debian.org/debian", now)
    assert message is not None and "\n" not in message
    assert message.startswith("the sid archive at http://deb.debian.org/debian: its Release "
                              "file expired on 2026-11-06 08:08 UTC (Valid-Until, 25d 11h 41min "
                              "20s ago); for a snapshot or a frozen mirror, set "
                              "image.check_valid_until: false in the job or in "), message
    assert message.endswith("config.yaml")
    assert expired_problem("E: Failed to fetch http://x/InRelease 404", "sid", "x", now) is None


def test_experimental_is_on_sid_only_and_reaches_the_guest() -> None:
    from tempest_live_ci.deploy.apt import deb822_sources
    from tempest_live_ci.errors import UsageError
    from tempest_live_ci.guest.plan import guest_params
    from tempest_live_ci.job import parse_job
    from tests.unit.deploy.test_plan import network

    job = parse_job({"image": {"suite": "sid"}, "guest": {"experimental": True}}, "x.yaml", "x")
    assert guest_params(job, network(job), guest_state="/s").experimental is True
    with pytest.raises(UsageError, match=r"^x.yaml: guest.experimental: experimental is built "
                                         r"on sid, the job.s suite is trixie"):
        parse_job({"guest": {"experimental": True}}, "x.yaml", "x")
    assert "Suites: sid experimental\n" in deb822_sources("sid", "http://m/debian", None,
                                                          experimental=True)
    assert "experimental" not in deb822_sources("sid", "http://m/debian", None)
