"""The Debian packaging's own sources: the generated man page and bash completion,
the systemd units, the shell scripts, the version. (.ci/package-check builds,
lints and installs the real packages.)"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from tempest_live_ci import __version__
from tempest_live_ci.cli import cli
from tempest_live_ci.errors import ExitCode

TOP = Path(__file__).resolve().parents[2]

ENV = {**os.environ, "PYTHONPATH": str(TOP / "ci"), "SOURCE_DATE_EPOCH": "1700000000"}


def command_paths(group: click.Group, prefix: str) -> list[str]:
    """'tempest-live-ci host setup' and so on, for every visible command."""
    found = []
    ctx = click.Context(group)
    # list_commands/get_command: the top-level group imports each command's module on demand.
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        found.append(f"{prefix} {name}")
        if isinstance(command, click.Group):
            found.extend(command_paths(command, f"{prefix} {name}"))
    return found


@pytest.fixture(scope="module")
def manpages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if shutil.which("help2man") is None:
        pytest.skip("needs help2man (tools/deps/test.list)")
    out = tmp_path_factory.mktemp("man")
    subprocess.run([sys.executable, str(TOP / "debian" / "gen-manpage.py"), str(out)],
                   env=ENV, check=True)
    return out


def test_manpages_document_every_command_and_exit_code(manpages: Path) -> None:
    paths = command_paths(cli, "tempest-live-ci")
    assert len(paths) > 8, paths
    pages = {p.name for p in manpages.iterdir()}
    assert pages == {"tempest-live-ci.1", *(f"{p.replace(' ', '-')}.1" for p in paths)}
    main = (manpages / "tempest-live-ci.1").read_text()
    for path in paths:
        assert f".BR {path.replace(' ', '-')} (1)" in main, path
    for code in ExitCode:
        assert f".TP\n.B {int(code)}\n" in main, code
    # Reproducible: the date comes from SOURCE_DATE_EPOCH (the changelog's, in a build).
    assert '"November 2023"' in main.splitlines()[1]
    # Each command's page: its own name, usage and every option of its --help.
    history = (manpages / "tempest-live-ci-results-history.1").read_text()
    assert history.splitlines()[1].startswith(".TH TEMPEST-LIVE-CI-RESULTS-HISTORY ")
    assert "tempest-live-ci-results-history \\- list the stored runs of JOB" in history
    for option in ("json", "html", "html\\-in\\-store", "last"):
        assert f"\\fB\\-\\-{option}\\fR" in history, option


def test_manpages_render_without_warnings(manpages: Path) -> None:
    for page in sorted(manpages.iterdir()):
        # The same man invocation lintian's manpage check runs.
        result = subprocess.run(
            ["man", "--warnings", "-E", "UTF-8", "-l", "-Tutf8", "-Z", str(page)],
            capture_output=True, text=True,
            env={**os.environ, "MANWIDTH": "80", "LC_ALL": "C.UTF-8"},
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == "", page.name
    text = subprocess.run(["man", "-l", str(manpages / "tempest-live-ci-host-setup.1")],
                          capture_output=True, text=True, env={**os.environ, "MANWIDTH": "80"},
                          check=True).stdout
    assert "tempest-live-ci host setup" in text and "--real-nic" in text


def test_bash_completion_completes_through_the_command(tmp_path: Path) -> None:
    script = subprocess.run(
        [sys.executable, "-m", "tempest_live_ci"], capture_output=True, text=True, check=True,
        env={**ENV, "_TEMPEST_LIVE_CI_COMPLETE": "bash_source"},
    ).stdout
    (tmp_path / "completion.bash").write_text(script)
    host = cli.get_command(click.Context(cli), "host")
    assert isinstance(host, click.Group)
    expected = sorted(name for name in host.commands if name.startswith("s"))
    assert expected
    # The completion function runs its first argument: the checkout's wrapper here.
    result = subprocess.run(
        ["bash", "-c", f'. {tmp_path}/completion.bash; COMP_WORDS=(x host s); COMP_CWORD=2; '
         f'_tempest_live_ci_completion {TOP}/bin/tempest-live-ci; echo "${{COMPREPLY[*]}}"'],
        capture_output=True, text=True, check=True, env=ENV,
    )
    assert sorted(result.stdout.split()) == expected


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_systemd_units_verify(tmp_path: Path) -> None:
    units = sorted((TOP / "host-setup" / "systemd").glob("tempest-live-ci-*"))
    assert {u.name for u in units} == {
        "tempest-live-ci-testbed.service",
        "tempest-live-ci-nightly.service",
        "tempest-live-ci-nightly.timer",
    }
    # verify wants ExecStart= to exist: the checkout's wrapper stands in for
    # /usr/bin/tempest-live-ci, which is there only once the package is installed.
    for unit in units:
        text = unit.read_text()
        assert "/usr/bin/tempest-live-ci " in text or unit.suffix == ".timer", unit
        # Likewise the man page of Documentation= exists only once installed.
        text = "".join(line for line in text.splitlines(keepends=True)
                       if not line.startswith("Documentation=man:tempest-live-ci"))
        (tmp_path / unit.name).write_text(
            text.replace("/usr/bin/tempest-live-ci ", f"{TOP}/bin/tempest-live-ci ")
        )
    result = subprocess.run(
        ["systemd-analyze", "verify", *[str(tmp_path / u.name) for u in units]],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


def test_nightly_job_the_timer_runs_exists() -> None:
    service = (TOP / "host-setup" / "systemd" / "tempest-live-ci-nightly.service").read_text()
    job = next(line for line in service.splitlines() if line.startswith("ExecStart=")).split()[-1]
    # A bare name: a site job of that name (/etc/tempest-live-ci/jobs) replaces the shipped one.
    assert "/" not in job and not job.endswith(".yaml")
    assert (TOP / "jobs" / f"{job}.yaml").is_file(), job


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="needs shellcheck")
def test_shell_scripts_pass_shellcheck() -> None:
    scripts = [TOP / ".ci" / "package-check", TOP / "debian" / "tests" / "cli",
               TOP / "debian" / "tests" / "unit", TOP / "gitlab" / "run-job",
               TOP / "gitlab" / "publish-history"]
    result = subprocess.run(["shellcheck", *map(str, scripts)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout


@pytest.mark.skipif(shutil.which("dpkg-parsechangelog") is None, reason="needs dpkg-dev")
def test_changelog_version_is_the_package_version() -> None:
    version = subprocess.run(["dpkg-parsechangelog", "-S", "Version"], cwd=TOP,
                             capture_output=True, text=True, check=True).stdout.strip()
    assert version == __version__


def _unit(name: str) -> dict[str, list[str]]:
    """A unit file's settings: key → values, in order (systemd's own syntax, no sections kept)."""
    settings: dict[str, list[str]] = {}
    for line in (TOP / "host-setup" / "systemd" / name).read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            settings.setdefault(key.strip(), []).append(value.strip())
    return settings


def test_nightly_unit_writes_under_var_lib_stops_in_order_and_ends() -> None:
    nightly = _unit("tempest-live-ci-nightly.service")
    # Runs go to the results store (no --output); the cwd is /var/lib/tempest-live-ci, not /.
    assert not any("--output" in line for line in nightly["ExecStart"])
    assert nightly["WorkingDirectory"] == ["/var/lib/tempest-live-ci"]
    assert nightly["StateDirectory"] == ["tempest-live-ci"]
    # SIGTERM to the tool alone, which stops its children in order.
    assert nightly["KillMode"] == ["mixed"]
    # A hung run ends; the next night's runs.
    assert nightly["TimeoutStartSec"] == ["8h"]
    assert "apt-cacher-ng.service" in nightly["After"][0].split()
    assert nightly["ExecStopPost"][0].split()[1:] == [
        "results", "history", "nightly-sid", "--html-in-store"]
    testbed = _unit("tempest-live-ci-testbed.service")
    assert "apt-cacher-ng.service" in testbed["After"][0].split()
    assert "apt-cacher-ng.service" in testbed["Wants"][0].split()
