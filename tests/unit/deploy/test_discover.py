"""tempest.discover: where stestr looks for tests, checked against the real stestr.

The package tree is a small one of the test's own, in the layout of
dist-packages (a top package, subpackages, test modules), since tempest itself
is not installed on the host; stestr, subunit and unittest's discovery are the
real ones the guest runs.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tempest_live_ci.deploy.tempest import (
    GROUP_REGEX,
    discovery_package,
    discovery_paths,
    stestr_conf,
)
from tempest_live_ci.errors import UsageError
from tempest_live_ci.job import parse_job


@pytest.mark.parametrize("discover, regex, include_list, package", [
    ("auto", r"tempest\.api\.identity\.v3", None, "tempest.api.identity.v3"),
    ("auto", r"^tempest\.api\.identity", None, "tempest.api.identity"),
    ("auto", r"heat_tempest_plugin\.tests\.api\.", None, "heat_tempest_plugin.tests.api"),
    ("auto", r"tempest\.api\.identity\.v3\.test_tokens\.TokensV3Test", None,
     "tempest.api.identity.v3.test_tokens.TokensV3Test"),
    # Not a dotted name: everything, as tempest discovers it.
    ("auto", r"(tempest\.api\.identity|tempest\.api\.image)", None, None),
    ("auto", r"tempest.api.identity", None, None),  # "." is any character there
    ("auto", r"tempest\.api\..*token", None, None),
    ("auto", None, None, None),
    # An include list's tests may be anywhere.
    ("auto", r"tempest\.api\.identity", "/guest/include.list", None),
    ("all", r"tempest\.api\.identity", None, None),
    ("tempest.api", r"tempest\.api\.identity", None, "tempest.api"),
    ("tempest.api", None, "/guest/include.list", "tempest.api"),
])
def test_the_package_discovered(discover: str, regex: str | None, include_list: str | None,
                                package: str | None) -> None:
    assert discovery_package(discover, regex, include_list) == package


TEST_MODULE = textwrap.dedent("""
    import unittest


    class {cls}(unittest.TestCase):
        def test_one(self):
            pass

        def test_two(self):
            pass
""")


@pytest.fixture
def packages(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """top/pkg/{api/identity/v3, api/image, scenario}, each with a test module."""
    top = tmp_path / "dist-packages"
    for sub, cls in (("api/identity/v3", "TokensTest"), ("api/image", "ImagesTest"),
                     ("scenario", "ScenarioTest")):
        directory = top / "pkg" / sub
        directory.mkdir(parents=True)
        (directory / "test_things.py").write_text(TEST_MODULE.format(cls=cls))
        for parent in [directory, *directory.relative_to(top).parents]:
            if parent != Path("."):
                init = parent if parent.is_absolute() else top / parent
                (init / "__init__.py").touch()
    monkeypatch.syspath_prepend(str(top))
    return top


def stestr_list(workdir: Path, test_path: Path, top_dir: Path) -> list[str]:
    workdir.mkdir()
    (workdir / ".stestr.conf").write_text(stestr_conf(str(test_path), str(top_dir)))
    env = {"PATH": "/usr/bin:/bin", "PYTHON": sys.executable}
    subprocess.run([sys.executable, "-m", "stestr", "init"], cwd=workdir, check=True,
                   capture_output=True, timeout=60, env=env)
    listed = subprocess.run([sys.executable, "-m", "stestr", "list"], cwd=workdir,
                            capture_output=True, text=True, timeout=120, env=env)
    assert listed.returncode == 0, listed.stderr
    return sorted(line for line in listed.stdout.splitlines() if line)


def test_stestr_lists_the_same_tests_from_the_narrowed_package(packages: Path,
                                                                 tmp_path: Path) -> None:
    everything = stestr_list(tmp_path / "all", packages / "pkg", packages)
    assert len(everything) == 6
    regex = r"pkg\.api\.identity\.v3"
    package = discovery_package("auto", regex, None)
    assert package is not None
    found = discovery_paths(package)
    assert found == (str(packages / "pkg" / "api" / "identity" / "v3"), str(packages))
    narrowed = stestr_list(tmp_path / "narrowed", Path(found[0]), Path(found[1]))
    # The same ids as the whole discovery gives for the regex, and nothing else.
    assert narrowed == [t for t in everything if t.startswith("pkg.api.identity.v3.")]
    assert narrowed == ["pkg.api.identity.v3.test_things.TokensTest.test_one",
                        "pkg.api.identity.v3.test_things.TokensTest.test_two"]
    assert f"group_regex={GROUP_REGEX}\n" in (tmp_path / "narrowed" / ".stestr.conf").read_text()


def test_a_module_or_a_class_is_discovered_in_its_package(packages: Path) -> None:
    v3 = str(packages / "pkg" / "api" / "identity" / "v3")
    assert discovery_paths("pkg.api.identity.v3.test_things") == (v3, str(packages))
    assert discovery_paths("pkg.api.identity.v3.test_things.TokensTest") == (v3, str(packages))
    assert discovery_paths("pkg.api.nothing_here") == (str(packages / "pkg" / "api"),
                                                        str(packages))
    assert discovery_paths("no_such_top_package.api") is None


def test_the_job_key() -> None:
    for value in ("auto", "all", "tempest.api.identity", "heat_tempest_plugin.tests.api"):
        assert parse_job({"tempest": {"discover": value}}, "j.yaml", "j").tempest.discover == value
    assert parse_job({}, "j.yaml", "j").tempest.discover == "auto"
    for value in ("tempest/api", "tempest..api", "-x", "tempest.api.", "../etc", ""):
        with pytest.raises(UsageError) as e:
            parse_job({"tempest": {"discover": value}}, "j.yaml", "j")
        assert e.value.message.startswith("j.yaml: tempest.discover"), e.value.message
