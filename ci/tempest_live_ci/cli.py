"""Command line: a thin click layer.

Each command parses its options, calls one plain function and exits with the
code that function returns or the exception it raises maps to (errors.py).
"""

from __future__ import annotations

import signal
import sys
from types import FrameType
from typing import Any, NoReturn

import click

from tempest_live_ci import __version__
from tempest_live_ci.errors import ExitCode, TLCError
from tempest_live_ci.log import log, setup_logging


def _raise_interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    # SIGTERM and SIGHUP unwind the stack like Ctrl-C, so every context
    # manager undoes what it did.
    raise KeyboardInterrupt(signal.Signals(signum).name)


# Each command's module, imported when the command is named: `results junit`
# loads results.commands alone; --help and completion of the first word load
# them all, and none of them imports a heavy library before its command runs.
_COMMANDS = {
    "run": "tempest_live_ci.run",
    "host": "tempest_live_ci.host",
    "image": "tempest_live_ci.image.commands",
    "vm": "tempest_live_ci.vm.commands",
    "results": "tempest_live_ci.results.commands",
    "job": "tempest_live_ci.job",
    "doctor": "tempest_live_ci.doctor",
    "cleanup": "tempest_live_ci.cleanup",
}


class _Commands(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*_COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in _COMMANDS:
            import importlib

            command = getattr(importlib.import_module(_COMMANDS[cmd_name]), cmd_name)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


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


class Renamed(click.Option):
    """An option whose --help shows its first `shown` spellings only: the
    others are old names that still work, so that one name means one thing
    on every command (--output: a directory written to; --run-id: a run)."""

    def __init__(self, *args: Any, shown: int = 1, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.shown = shown

    def get_help_record(self, ctx: click.Context) -> tuple[str, str] | None:
        every = self.opts
        self.opts = every[:self.shown]
        try:
            return super().get_help_record(ctx)
        finally:
            self.opts = every


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
