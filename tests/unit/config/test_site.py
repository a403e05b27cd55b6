"""The site's configuration, /etc/tempest-live-ci (TEMPEST_LIVE_CI_CONFIG_DIR here):
its own jobs beside the shipped ones, its defaults, both checked like job files."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tempest_live_ci import paths
from tempest_live_ci.errors import UsageError
from tempest_live_ci.job import image_options, job_files, load_job, parse_job

Tlc = Callable[..., subprocess.CompletedProcess[str]]

TOP = Path(__file__).resolve().parents[3]


def write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def test_site_jobs_are_listed_beside_the_shipped_ones_and_win(tlc: Tlc, dirs: Any) -> None:
    jobs = dirs.config / "jobs"
    write(jobs / "local-keystone.yaml", {"description": "our keystone check"})
    write(jobs / "smoke-trixie.yaml", {"description": "smoke, the site's way",
                                       "tempest": {"exclude_list": "skip.txt"}})
    # Relative paths in a site job name files beside it, as in a shipped one.
    write(jobs / "skip.txt", "tempest.api.identity.admin\n")

    listed = tlc("job", "list")
    assert listed.returncode == 0, listed.stderr
    rows = [line.split(None, 2) for line in listed.stdout.splitlines()]
    by_name: dict[str, list[str]] = {}
    for name, origin, *_ in rows:
        by_name.setdefault(name, []).append(origin.rstrip(","))
    assert by_name["local-keystone"] == ["site"]
    # The site's first, then the shipped one it replaces, marked so.
    assert by_name["smoke-trixie"] == ["site", "shipped"]
    assert any(line.startswith("smoke-trixie") and "shipped, overridden" in line
               for line in listed.stdout.splitlines())
    assert any(r[0] == "nightly-sid" and r[1] == "shipped" for r in rows)
    shipped = {p.stem for p in paths.jobs_dir().glob("*.yaml")}
    assert set(by_name) == shipped | {"local-keystone"}

    # A bare name means the site's job; a path still means that file.
    shown = json.loads(tlc("job", "show", "smoke-trixie", "--json", check=True).stdout)
    assert shown["description"] == "smoke, the site's way"
    assert shown["tempest"]["exclude_list"] == str(jobs / "skip.txt")
    original = json.loads(tlc("job", "show", str(paths.jobs_dir() / "smoke-trixie.yaml"), "--json",
                              check=True).stdout)
    assert original["description"] != "smoke, the site's way"
    # The default job of `run` and `job show` is looked up the same way.
    default = json.loads(tlc("job", "show", "--json", check=True).stdout)
    assert default["description"] == "smoke, the site's way"


def test_job_files_in_process(dirs: Any) -> None:
    write(dirs.config / "jobs" / "nightly-sid.yaml", {"description": "ours"})
    found = {(f.name, f.origin, f.overridden) for f in job_files()}
    assert ("nightly-sid", "site", False) in found
    assert ("nightly-sid", "shipped", True) in found
    assert ("smoke-trixie", "shipped", False) in found
    assert load_job("nightly-sid").description == "ours"
    with pytest.raises(UsageError) as error:
        load_job("no-such-job")
    assert f"neither {dirs.config}/jobs/no-such-job.yaml nor" in error.value.message


def test_a_bad_site_job_fails_job_list_naming_file_and_key(tlc: Tlc, dirs: Any) -> None:
    bad = write(dirs.config / "jobs" / "broken.yaml", {"vm": {"memory": "lots"}})
    result = tlc("job", "list")
    assert result.returncode == 20
    assert f"error: {bad}: vm.memory: 'lots' is not a size" in result.stderr


def test_site_mirror_and_apt_proxy_are_defaults_a_job_can_override(dirs: Any) -> None:
    write(dirs.config / "config.yaml", {"image": {"mirror": "http://mirror.example/debian",
                                                  "apt_proxy": "http://proxy.example:3142"}})
    job = parse_job({"name": "x"}, "x.yaml", "x")
    assert job.image.mirror == "http://mirror.example/debian"
    assert image_options(job).apt_proxy == "http://proxy.example:3142"
    own = parse_job({"image": {"mirror": "http://other.example/debian"}}, "x.yaml", "x")
    assert own.image.mirror == "http://other.example/debian"

    write(dirs.config / "config.yaml", {"image": {"apt_proxy": "none"}})
    job = parse_job({"name": "x"}, "x.yaml", "x")
    assert job.image.mirror == "http://deb.debian.org/debian"
    assert image_options(job).apt_proxy is None
    (dirs.config / "config.yaml").unlink()
    assert image_options(parse_job({}, "x.yaml", "x")).apt_proxy == "auto"


def test_site_check_valid_until_is_a_default_a_job_can_override(dirs: Any) -> None:
    """A site whose mirror is a snapshot says so once; a job may still say otherwise."""
    assert parse_job({}, "x.yaml", "x").image.check_valid_until is True
    write(dirs.config / "config.yaml", {"image": {"check_valid_until": False}})
    job = parse_job({"image": {"suite": "sid"}}, "x.yaml", "x")
    assert job.image.check_valid_until is False
    assert image_options(job).check_valid_until is False
    own = parse_job({"image": {"check-valid-until": True}}, "x.yaml", "x")
    assert own.image.check_valid_until is True
    assert image_options(own).check_valid_until is True
    write(dirs.config / "config.yaml", {"image": {"check_valid_until": "no"}})
    with pytest.raises(UsageError, match=r"image.check_valid_until: expected true or false, "
                                         r"got 'no'"):
        parse_job({}, "x.yaml", "x")


@pytest.mark.parametrize("text, message", [
    ({"imag": {}}, "imag: unknown key (known: image, results)"),
    ({"image": {"mirrors": "http://x/debian"}}, "image.mirrors: unknown key (known: apt-proxy, "
                                                "check-valid-until, mirror)"),
    ({"image": {"mirror": "http://x/debian$(touch${IFS}/tmp/pwned)"}},
     "image.mirror: 'http://x/debian$(touch${IFS}/tmp/pwned)' is not a usable http:// or https:// "
     "URL"),
    ({"image": {"mirror": "ftp://x/debian"}}, "image.mirror: 'ftp://x/debian' is not a usable"),
    ({"image": {"apt_proxy": "sometimes"}}, "image.apt_proxy: 'sometimes' is not auto, none or"),
    ({"image": {"apt_proxy": ["auto"]}}, "image.apt_proxy: expected a string, got ['auto']"),
    ({"results": {"store": "results"}}, "results.store: 'results' is not an absolute path"),
    ({"results": "/srv"}, "results: expected a mapping, got '/srv'"),
    (["image"], "the site configuration is a mapping of sections, got list"),
    ("results:\n  store: [\n", "config.yaml:3: invalid YAML"),
    # The second image section would drop the first's mirror without a word.
    ("image:\n  mirror: http://mirror.example/debian\nimage:\n  apt_proxy: none\n",
     "config.yaml:3: invalid YAML: duplicate key 'image' (first on line 1)"),
    ("image:\n  apt-proxy: none\n  apt_proxy: auto\n",
     "image.apt_proxy: the same key as image.apt-proxy, given twice"),
    ("results: &r {store: /srv}\n", "config.yaml:1: invalid YAML: an anchor (&r)"),
    ("image:\n  mirror: http://deb.debian.org/debian\n\n", None),
])
def test_a_bad_site_config_is_exit_20_naming_file_key_and_value(
        tlc: Tlc, dirs: Any, text: Any, message: str | None) -> None:
    path = write(dirs.config / "config.yaml", text)
    result = tlc("job", "show", "smoke-trixie")
    if message is None:  # the same text without the hostile part: accepted
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 20, result.stderr
    error = result.stderr.splitlines()[0]
    assert error.startswith(f"error: {path}") and message in error, result.stderr
    assert result.stdout == ""
    # Where the site's settings matter, the same one line.
    store = tlc("results", "history", "nightly-sid", env={"TEMPEST_LIVE_CI_RESULTS_DIR": ""})
    assert store.returncode == 20 and store.stderr.splitlines()[0] == error
    build = tlc("image", "build", "--suite", "buster")
    assert build.returncode == 20


def test_an_empty_site_config_is_the_defaults(tlc: Tlc, dirs: Any) -> None:
    write(dirs.config / "config.yaml", "# nothing set\n")
    shown = yaml.safe_load(tlc("job", "show", "smoke-trixie", check=True).stdout)
    assert shown["image"]["mirror"] == "http://deb.debian.org/debian"


def test_the_shipped_config_is_valid_and_sets_nothing(dirs: Any) -> None:
    """The commented config.yaml the package installs is read as it is, and changes nothing."""
    # The source tree's, or the one the package installed (autopkgtest runs a copy of tests/).
    source = TOP / "etc" / "config.yaml"
    example = (source if source.is_file() else Path("/etc/tempest-live-ci/config.yaml")).read_text()
    write(dirs.config / "config.yaml", example)
    assert parse_job({}, "x.yaml", "x").image.mirror == "http://deb.debian.org/debian"
    from tempest_live_ci.siteconfig import SiteConfig, site_config

    assert site_config() == SiteConfig(source=str(dirs.config / "config.yaml"))
    # Uncommented, every key it shows is a valid setting.
    # (Prose is "# text"; a commented setting "#key:" or "#  key:".)
    uncommented = "\n".join(line[1:] if re.match(r"#(\S|  )", line) else line
                            for line in example.splitlines())
    write(dirs.config / "config.yaml", uncommented)
    site = site_config()
    assert site.results.store and site.image.mirror and site.image.apt_proxy
