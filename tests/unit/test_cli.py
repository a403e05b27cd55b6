"""main(): what an error that is no TLCError becomes, and where --debug comes from."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from tests.conftest import TOP, Dirs


def test_unexpected_error_is_one_line_and_exit_16(tlc: Any, tmp_path: Path) -> None:
    # A real OSError from deep inside a command: the output directory cannot be made.
    stream = tmp_path / "empty.subunit"
    stream.write_bytes(b"")
    result = tlc("results", "show", str(stream), "-o", "/dev/null/out")
    assert result.returncode == 16, result.stderr
    assert result.stderr.splitlines()[0] == (
        "error: unexpected error: NotADirectoryError: [Errno 20] Not a directory: '/dev/null/out'")
    assert "Traceback" not in result.stderr
    assert "hint: --debug (before the command) shows the traceback" in result.stderr

    debug = tlc("--debug", "results", "show", str(stream), "-o", "/dev/null/out")
    assert debug.returncode == 16
    assert "Traceback (most recent call last)" in debug.stderr
    assert "in mkdir" in debug.stderr
    assert "hint: --debug" not in debug.stderr


def test_debug_after_the_command_is_an_argument(dirs: Dirs, tmp_path: Path) -> None:
    # "--debug" after "--" is the SOURCE argument (`vm ssh -- --debug` passes
    # it to the guest's command the same way), not the option.
    (tmp_path / "--debug").write_bytes(b"")
    result = subprocess.run(
        [sys.executable, str(TOP / "bin" / "tempest-live-ci"),
         "results", "show", "-o", "/dev/null/out", "--", "--debug"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={**os.environ, **dirs.env()})
    assert result.returncode == 16, result.stderr
    assert "Traceback" not in result.stderr
    assert "hint: --debug (before the command) shows the traceback" in result.stderr


# A command registered only here: it logs to a file as `run` does (run.log)
# and fails with a library's own exception.
_SCRIPT = textwrap.dedent("""
    import sys

    sys.path.insert(0, {ci!r})

    import click
    import paramiko

    from tempest_live_ci.cli import cli, main
    from tempest_live_ci.log import add_file_log


    @cli.command("explode")
    @click.argument("log_file")
    def explode(log_file):
        add_file_log(log_file)
        raise paramiko.SSHException("Error reading SSH protocol banner\\n[Errno 104] reset")


    main()
""")


def test_unexpected_error_traceback_in_run_log(tmp_path: Path) -> None:
    run_log = tmp_path / "run.log"
    script = tmp_path / "tlc_with_explode.py"
    script.write_text(_SCRIPT.format(ci=str(TOP / "ci")))
    result = subprocess.run([sys.executable, str(script), "explode", str(run_log)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 16, result.stderr
    line = ("unexpected error: paramiko.ssh_exception.SSHException: "
            "Error reading SSH protocol banner [Errno 104] reset")
    assert result.stderr.splitlines()[0] == f"error: {line}"
    assert "Traceback" not in result.stderr
    text = run_log.read_text()
    assert f"ERROR {line}" in text
    assert "Traceback (most recent call last)" in text
    assert ', in explode\n' in text
    assert 'raise paramiko.SSHException("Error reading SSH protocol banner' in text
