"""Command line: a thin click layer.

Each command parses its options, calls one plain function and exits with the
code that function returns or the exception it raises maps to (errors.py).
"""

from __future__ import annotations

import importlib
import signal
import sys
from types import FrameType
from typing import NoReturn

import click
from click.shell_completion import CompletionItem

from tempest_live_ci import __version__
from tempest_live_ci.errors import ExitCode, TLCError
from tempest_live_ci.log import log, setup_logging


def _raise_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    # SIGTERM and SIGHUP unwind the stack like Ctrl-C, so every context
    # manager undoes what it did.
    raise KeyboardInterrupt(signal.Signals(signum).name)


# Each command: its module, imported when the command is named (`results
# junit` loads results.commands alone), and the first line of its help, which
# `--help` and the completion of the first word show without importing any
# (tests/unit/test_cli_imports.py checks it is the command's own).
_COMMANDS = {
    "cleanup": ("tempest_live_ci.cleanup",
                "Remove what killed runs left behind (namespaces, daemons, domains, state)."),
    "doctor": ("tempest_live_ci.doctor",
               "Check that this host can run jobs (exit 0: it can; TCG counts, with a warning)."),
    "host": ("tempest_live_ci.host", "Set up, inspect and tear down the testbed network on this host."),
    "image": ("tempest_live_ci.image.commands", "Build and manage the live images guests boot."),
    "job": ("tempest_live_ci.job_commands", "Validate, list and show job definitions."),
    "results": ("tempest_live_ci.results.commands",
                "Summaries, JUnit and HTML reports, comparisons of tempest runs."),
    "run": ("tempest_live_ci.run", "Run a job end to end (default job: smoke-trixie)."),
    "vm": ("tempest_live_ci.vm.commands", "Boot the live image in a VM, reach it over SSH, destroy it."),
}


class _Commands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            command = getattr(importlib.import_module(_COMMANDS[cmd_name][0]), cmd_name)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)

    def _listed(self, ctx: click.Context) -> list[tuple[str, click.Command]]:
        """The commands as --help and completion list them: those not imported yet
        stand in with the first line of their help."""
        listed = []
        for name in self.list_commands(ctx):
            command = self.commands.get(name) or click.Command(name, help=_COMMANDS[name][1])
            if not command.hidden:
                listed.append((name, command))
        return listed

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        listed = self._listed(ctx)
        limit = formatter.width - 6 - max(len(name) for name, _ in listed)
        with formatter.section("Commands"):
            formatter.write_dl([(name, command.get_short_help_str(limit)) for name, command in listed])

    def shell_complete(self, ctx: click.Context, incomplete: str) -> list[CompletionItem]:
        items = [CompletionItem(name, help=command.get_short_help_str())
                 for name, command in self._listed(ctx) if name.startswith(incomplete)]
        # The group's own options, as click.Group completes them.
        return items + click.Command.shell_complete(self, ctx, incomplete)


@click.group(cls=_Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--debug", is_flag=True, help="Show every command run and tracebacks.")
@click.version_option(__version__, prog_name="tempest-live-ci")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Test OpenStack packages: boot a Debian Live guest, install OpenStack in RAM, run tempest."""
    setup_logging(debug)
    ctx.obj = {"debug": debug}
    # main() reads it after the command: the option as click parsed it, not
    # any "--debug" in argv (`vm ssh -- --debug` passes one to the guest).
    _session["debug"] = debug


_session: dict[str, bool] = {"debug": False}


def _describe(error: BaseException) -> str:
    """One line: the exception's type (with its module, unless a builtin) and message."""
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else \
        f"{kind.__module__}.{kind.__qualname__}"
    message = " ".join(str(error).split())
    return f"{name}: {message}" if message else name


def main(argv: list[str] | None = None) -> NoReturn:
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _raise_interrupt)
    _session["debug"] = False
    try:
        code = cli.main(args=argv, prog_name="tempest-live-ci", standalone_mode=False)
    except click.exceptions.Exit as e:
        code = e.exit_code
    except click.exceptions.Abort:
        log.error("interrupted")
        code = ExitCode.INTERRUPTED
    except click.ClickException as e:
        # click's own usage errors exit 2; bad usage is 20 here, like autopkgtest.
        e.show()
        code = ExitCode.USAGE
    except TLCError as e:
        log.error("%s", e.message, exc_info=_session["debug"])
        if e.hint:
            log.info("hint: %s", e.hint)
        code = e.exit_code
    except KeyboardInterrupt:
        log.error("interrupted")
        code = ExitCode.INTERRUPTED
    except Exception as e:
        # Anything else (paramiko, libvirt, an OSError, a bug) is a failure of
        # the testbed or of this tool: 16 like any testbed failure, so that the
        # exit code agrees with what `run` wrote in summary.json. One line
        # here; the traceback at debug level (on stderr with --debug, and
        # always in a run's run.log).
        log.error("unexpected error: %s", _describe(e))
        log.debug("traceback of the unexpected error:", exc_info=True)
        if not _session["debug"]:
            log.info("hint: --debug (before the command) shows the traceback")
        code = ExitCode.TESTBED
    sys.exit(int(code or 0))
