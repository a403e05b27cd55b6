"""The command line's help and shell completion load none of the heavy libraries.

Every TAB of bash completion and every --help runs the command: it loads
click and the command tree, not paramiko, libvirt, subunit or testtools (each
command imports those when it runs). Checked with `python3 -X importtime` on
the checkout's own bin/tempest-live-ci, which lists every module imported.
The timings are in tests/bench/bench_cli.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import TOP

HEAVY = ("paramiko", "libvirt", "subunit", "testtools", "junitxml")

COMPLETE = {"_TEMPEST_LIVE_CI_COMPLETE": "bash_complete", "COMP_WORDS": "tempest-live-ci ",
            "COMP_CWORD": "1"}


def imported(*args: str, env: dict[str, str] | None = None) -> tuple[set[str], str]:
    """The top-level packages the command imports, and its stdout."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(TOP / "bin" / "tempest-live-ci"), *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    modules = set()
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and not line.endswith("imported package"):
            modules.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "click" in modules, result.stderr[-2000:]
    return modules, result.stdout


@pytest.mark.parametrize("args", [
    ("--help",),
    ("results", "--help"),
    ("vm", "boot", "--help"),
    ("host", "status", "--help"),
    ("run", "--help"),
], ids=" ".join)
def test_help_imports_no_heavy_library(args: tuple[str, ...]) -> None:
    modules, out = imported(*args)
    assert "Usage: tempest-live-ci" in out
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_completion_imports_no_heavy_library() -> None:
    modules, out = imported(env=COMPLETE)
    assert "plain,results" in out.splitlines()
    assert not modules & set(HEAVY), sorted(modules & set(HEAVY))


def test_results_junit_needs_neither_libvirt_nor_paramiko(tmp_path: Path) -> None:
    # A CI runner turning a stream into junit.xml needs python3-subunit, not
    # the testbed's libraries.
    stream = tmp_path / "empty.subunit"
    stream.write_bytes(b"")
    modules, out = imported("results", "junit", str(stream))
    assert out.startswith('<?xml version="1.0" encoding="UTF-8"?>\n<testsuite ')
    assert "subunit" in modules
    assert not modules & {"paramiko", "libvirt", "junitxml", "yaml"}, modules


def test_run_and_vm_boot_wait_as_long_for_ssh() -> None:
    # One default for the guest's SSH (vm/config.py): what `vm boot --help`
    # shows is what a job that sets no vm.ssh_timeout gets, and the boot's own.
    from tempest_live_ci.vm.config import BootTimeouts

    _, help_text = imported("vm", "boot", "--help")
    shown = " ".join(help_text.split()).split("--ssh-timeout", 1)[1].split("[default: ", 1)[1]
    _, job = imported("job", "show", "--json")
    assert float(shown.split("]", 1)[0]) == json.loads(job)["vm"]["ssh_timeout"] == BootTimeouts.ssh


def own_modules(*args: str, env: dict[str, str] | None = None) -> set[str]:
    """The modules of the package the command imports."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(TOP / "bin" / "tempest-live-ci"), *args],
        capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return {line.rsplit("|", 1)[1].strip() for line in result.stderr.splitlines()
            if line.startswith("import time:") and "tempest_live_ci" in line}


@pytest.mark.parametrize("env", [{}, COMPLETE], ids=["help", "completion"])
def test_the_command_list_imports_no_command(env: dict[str, str]) -> None:
    # cli.py lists the commands with the first line of their help, so that the
    # top --help and the completion of the first word load none of them.
    modules = own_modules(*([] if env else ["--help"]), env=env)
    assert modules <= {"tempest_live_ci", "tempest_live_ci.cli", "tempest_live_ci.errors",
                       "tempest_live_ci.log", "tempest_live_ci.terminal"}, sorted(modules)


def test_the_command_list_shows_each_commands_own_help() -> None:
    import click

    from tempest_live_ci.cli import _COMMANDS, cli

    ctx = click.Context(cli)
    for name, (_, summary) in _COMMANDS.items():
        command = cli.get_command(ctx, name)
        assert command is not None
        assert " ".join((command.help or "").split("\n\n")[0].split()) == summary, name
