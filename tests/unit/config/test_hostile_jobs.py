"""Hostile job files: each is refused with exit 20 and one short line naming the file and
the key (or the line), before anything runs; none needs root.

The YAML ones go through the real command line (`job validate` as a child
process): what matters there is the exit code and the size of what it prints
and allocates. The others load real files with load_job().
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tempest_live_ci.errors import UsageError
from tempest_live_ci.job import load_job, parse_job
from tests.conftest import TOP, Dirs

Tlc = Callable[..., subprocess.CompletedProcess[str]]


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def refused(tlc: Tlc, job: Path, *expect: str) -> str:
    result = tlc("job", "validate", str(job), timeout=60)
    assert result.returncode == 20, result.stderr[-2000:]
    errors = error_lines(result.stderr)
    assert len(errors) == 1, result.stderr[-2000:]
    assert len(result.stderr) < 2000, f"{len(result.stderr)} characters on stderr"
    for part in expect:
        assert part in errors[0], f"{part!r} not in {errors[0]!r}"
    return errors[0]


# A few hundred bytes that expand to 9**8 strings: a whole-value repr() of
# vm.memory's list was hundreds of megabytes.
ALIAS_BOMB = "name: bomb\nvm:\n  memory: [" + ", ".join(
    [f"&a [{', '.join(['xxxxxxxx'] * 9)}]"]
    + [f"&{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(7)]) + "]\n"


def test_an_alias_bomb_is_refused_in_one_line_under_a_1_gib_limit(dirs: Dirs, tmp_path: Path) -> None:
    assert len(ALIAS_BOMB) < 600
    job = tmp_path / "bomb.yaml"
    job.write_text(ALIAS_BOMB)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    result = subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), "job",
                             "validate", str(job)], capture_output=True, text=True, timeout=120,
                            env={**os.environ, **dirs.env()}, preexec_fn=limit)
    assert result.returncode == 20, result.stderr[-500:]
    assert len(result.stderr) < 1000
    (line,) = error_lines(result.stderr)
    assert line == f"error: {job}:3: invalid YAML: an anchor (&a): anchors and aliases are not accepted"


@pytest.mark.parametrize("text, problem", ids=[
    "anchor", "alias", "merge-key", "deep", "long-int", "big-file", "many-values"], argvalues=[
    ("tempest:\n  conf:\n    identity.uri: &u http://x\n    identity.v3: *u\n", "anchor (&u)"),
    ("description: *nothing\n", "an alias (*nothing)"),
    ("vm: {<<: {memory: 8G}}\n", "a merge key (<<): not accepted"),
    ("vm: " + "[" * 20000 + "]" * 20000 + "\n", "nested deeper than 16 levels"),
    ("vm:\n  vcpus: " + "9" * 5000 + "\n", "an integer of 5000 characters (at most 24)"),
    ("name: x\n" + "# padding\n" * 30000, "larger than 256 KiB"),
    ("image: {packages: [" + ", ".join(["a1"] * 25000) + "]}\n", "more than 20000 values"),
])
def test_yaml_beyond_its_bounds_is_refused(tlc: Tlc, tmp_path: Path, text: str,
                                           problem: str) -> None:
    job = tmp_path / "bad.yaml"
    job.write_text(text)
    refused(tlc, job, str(job), problem)


def test_a_5000_digit_memory_size_is_not_a_size(tlc: Tlc, tmp_path: Path) -> None:
    job = tmp_path / "big.yaml"
    job.write_text("vm:\n  memory: " + "9" * 5000 + "M\n")
    line = refused(tlc, job, f"{job}: vm.memory: '99999", "...' is not a size")
    assert len(line) < 300


@pytest.mark.parametrize("text, key, line, first", [
    ("name: a\ntempest: {profile: image}\nguest:\n  candidates: [x.deb]\nguest:\n  suite: sid\n",
     "'guest'", 5, 3),
    ("name: a\nname: b\n", "'name'", 2, 1),
    ("vm:\n  memory: 8G\n  vcpus: 2\n  memory: 600M\n", "'memory'", 4, 2),
    ("tempest:\n  conf:\n    identity.uri: a\n    identity.uri: b\n", "'identity.uri'", 4, 3),
    ("image:\n  packages: [vim]\n  packages: []\n", "'packages'", 3, 2),
])
def test_a_key_given_twice_is_refused_at_every_level(tlc: Tlc, tmp_path: Path, text: str,
                                                     key: str, line: int, first: int) -> None:
    job = tmp_path / "twice.yaml"
    job.write_text(text)
    refused(tlc, job, f"{job}:{line}: invalid YAML: duplicate key {key} (first on line {first})")


def test_two_spellings_of_one_key_are_refused(tmp_path: Path) -> None:
    job = tmp_path / "j.yaml"
    job.write_text("vm:\n  ssh-timeout: 5\n  ssh_timeout: 600\n")
    with pytest.raises(UsageError) as e:
        load_job(job)
    assert e.value.message == (f"{job}: vm.ssh_timeout: the same key as vm.ssh-timeout, "
                               "given twice")
    # Each alone is one key.
    assert parse_job({"vm": {"ssh-timeout": 5}}, "j.yaml", "j").vm.ssh_timeout == 5


def test_a_job_file_that_is_a_fifo_is_refused_without_waiting(tlc: Tlc, tmp_path: Path) -> None:
    fifo = tmp_path / "job.yaml"
    os.mkfifo(fifo)
    refused(tlc, fifo, f"{fifo}: a FIFO, not a regular file")


def test_a_bare_name_must_be_a_job_name(tlc: Tlc, dirs: Dirs, tmp_path: Path) -> None:
    # A job file beside the jobs directory: ../NAME must not find it.
    (dirs.config / "jobs").mkdir(parents=True)
    (dirs.config / "elsewhere.yaml").write_text("name: elsewhere\n")
    result = tlc("job", "validate", "../elsewhere")
    assert result.returncode == 20
    assert error_lines(result.stderr) == ["error: ../elsewhere: no such job file"]
    result = tlc("job", "validate", "smoke-trixie\n")
    assert result.returncode == 20
    assert error_lines(result.stderr) == [
        "error: 'smoke-trixie\\n': not a job name (letters, digits, . _ -; 64 at most) "
        "nor a job file"]
    # What a name means still works, and a path given as such.
    assert tlc("job", "validate", "smoke-trixie").returncode == 0
    assert tlc("job", "validate", str(dirs.config / "elsewhere.yaml")).returncode == 0


# Every field a pattern checks, with its valid value and a newline after it:
# the patterns are applied in full, `$` is no end.
@pytest.mark.parametrize("data, message", [
    ({"name": "smoke\n"}, "name: 'smoke\\n' is not a valid job name"),
    ({"testbed": {"guest_mac": "52:54:00:7e:57:02\n"}},
     "testbed.guest_mac: '52:54:00:7e:57:02\\n' holds the control character '\\n'"),
    ({"image": {"mirror": "http://deb.debian.org/debian\n"}},
     "image.mirror: 'http://deb.debian.org/debian\\n' holds the control character"),
    ({"image": {"packages": ["vim\n"]}}, "image.packages[0]: 'vim\\n' holds the control"),
    ({"tempest": {"conf": {"identity.uri\n": "x"}}},
     "tempest.conf: 'identity.uri\\n' is not a section.key name"),
    ({"results": {"baseline": "latest", "baseline_job": "nightly-sid\n"}},
     "results.baseline_job: 'nightly-sid\\n' holds the control character"),
    ({"tempest": {"image": "http://images.example/disk.img\n"}},
     "tempest.image: 'http://images.example/disk.img\\n' holds the control character"),
    ({"vm": {"memory": "8G\n"}}, "vm.memory: '8G\\n' holds the control character"),
])
def test_a_trailing_newline_is_refused_in_every_checked_field(
        tmp_path: Path, data: dict[str, Any], message: str) -> None:
    job = tmp_path / "j.yaml"
    job.write_text(yaml.safe_dump(data))
    with pytest.raises(UsageError) as e:
        load_job(job)
    assert e.value.message.startswith(f"{job}: ")
    assert message in e.value.message


def test_the_command_lines_patterns_are_applied_in_full() -> None:
    # The rules of the command line too (testbed/config.py, image/model.py),
    # where no job's text check stands in front of them.
    from tempest_live_ci.image.model import ImageOptions
    from tempest_live_ci.image.model import validate as validate_image
    from tempest_live_ci.testbed.config import TestbedConfig, check_name, validate

    with pytest.raises(UsageError, match=r"^guest-mac '52:54:00:7e:57:02\\n': not a MAC"):
        validate(TestbedConfig(guest_mac="52:54:00:7e:57:02\n"))
    with pytest.raises(UsageError, match=r"^bridge 'br0\\n': not a valid interface name"):
        validate(TestbedConfig(bridge="br0\n"))
    with pytest.raises(UsageError, match=r"^--run-id 'tlc-1\\n': not a valid run id"):
        check_name("--run-id", "tlc-1\n", "run id")
    with pytest.raises(UsageError, match=r"^--mirror 'http://deb\.debian\.org/debian\\n': not a"):
        validate_image(ImageOptions(mirror="http://deb.debian.org/debian\n"))
    with pytest.raises(UsageError, match=r"^--packages: 'vim\\n' is not a Debian package name"):
        validate_image(ImageOptions(packages=("vim\n",)))


@pytest.mark.parametrize("data, message", [
    ({"tempest": {"conf": {"identity.uri": "http://x\rextra = 1"}}},
     "tempest.conf.identity.uri: expected one line of text, got 'http://x\\rextra = 1'"),
    ({"tempest": {"conf": {"identity.uri": "a\x00b"}}}, "expected one line of text"),
    ({"tempest": {"conf": {"identity.uri": "a\u2028b"}}}, "expected one line of text"),
    ({"description": "smoke\x1b]0;owned\x07"}, "description: 'smoke\\x1b]0;owned\\x07' holds"),
    ({"tempest": {"regex": "tempest\\.api\r"}}, "tempest.regex: 'tempest\\\\.api\\r' holds"),
    ({"guest": {"setup_commands": ["echo a\x00rm -rf /"]}},
     "guest.setup_commands[0]: 'echo a\\x00rm -rf /' holds the control character '\\x00'"),
    ({"guest": {"setup_commands": ["echo a\rb"]}}, "holds the control character '\\r'"),
    ({"guest": {"candidate_sources": ["deb http://x.example/r sid main\n"]}},
     "holds the control character '\\n'"),
])
def test_control_characters_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_job(data, "j.yaml", "j")
    assert message in e.value.message, e.value.message


def test_a_setup_command_may_be_a_script_of_lines() -> None:
    job = parse_job({"guest": {"setup_commands": ["set -e\necho a\n\techo b\n"]}}, "j.yaml", "j")
    assert job.guest.setup_commands == ("set -e\necho a\n\techo b\n",)


@pytest.mark.parametrize("data, message", [
    ({"tempest": {"regex": "-x"}}, "tempest.regex: '-x' is not a valid regular expression"),
    ({"tempest": {"exclude_regex": "--debug"}}, "tempest.exclude_regex: '--debug' is not"),
    ({"tempest": {"conf": {"identity.uri": "--debug"}}},
     "tempest.conf.identity.uri: '--debug' starts with '-'"),
    ({"tempest": {"conf": {"-x.uri": "a"}}}, "tempest.conf: '-x.uri' is not a section.key"),
    ({"tempest": {"conf": {"identity.-uri": "a"}}}, "is not a section.key name"),
    ({"guest": {"setup_commands": ["-x"]}},
     "guest.setup_commands: ('-x',) is not a list of shell commands, none starting with -"),
    ({"tempest": {"regex": "(" * 2000}}, "is not a valid regular expression"),
    ({"tempest": {"regex": "a{99999999999}"}}, "is not a valid regular expression"),
])
def test_values_that_would_be_options_are_refused(data: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_job(data, "j.yaml", "j")
    assert message in e.value.message, e.value.message


def test_a_negative_number_is_a_tempest_conf_value() -> None:
    job = parse_job({"tempest": {"conf": {"compute.min_microversion": -1,
                                          "identity.x": "-2.5"}}}, "j.yaml", "j")
    assert job.tempest.conf == {"compute.min_microversion": "-1", "identity.x": "-2.5"}


def test_a_long_value_is_quoted_cut_short(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as e:
        parse_job({"vm": {"boot": "x" * 100_000}}, "j.yaml", "j")
    assert e.value.message.startswith("j.yaml: vm.boot: 'xxxx")
    assert "...'" in e.value.message and len(e.value.message) < 200
    with pytest.raises(UsageError) as e:
        parse_job({"vm": {"vcpus": [[list(range(1000))] * 1000] * 1000}}, "j.yaml", "j")
    assert len(e.value.message) < 200


@pytest.mark.parametrize("make, message", [
    (lambda d: os.mkfifo(d / "list.txt"), "{d}/list.txt: a FIFO, not a regular file"),
    (lambda d: (d / "list.txt").symlink_to("/etc/shadow"),
     "{d}/list.txt: a symbolic link, not a regular file"),
    (lambda d: (d / "list.txt").mkdir(), "{d}/list.txt: a directory, not a regular file"),
])
def test_files_a_job_names_are_regular_files(tmp_path: Path, make: Callable[[Path], object],
                                             message: str) -> None:
    make(tmp_path)
    for key in ("exclude_list", "include_list", "image"):
        job = tmp_path / "j.yaml"
        job.write_text(f"tempest:\n  profile: compute\n  {key}: list.txt\n")
        with pytest.raises(UsageError) as e:
            load_job(job)
        assert e.value.message.startswith(
            f"{job}: tempest.{key}: " + message.format(d=tmp_path)), e.value.message
