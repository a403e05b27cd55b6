#!/usr/bin/python3
"""Write the tempest-live-ci(1) man page from the click command tree.

Run at build time against the code being packaged, so the page lists every
command and option the packaged CLI has, with the help texts it shows.
Usage: gen-manpage.py OUTPUT  (with the package importable, e.g. PYTHONPATH=ci)
"""

from __future__ import annotations

import datetime
import os
import sys
from collections.abc import Iterator

import click

from tempest_live_ci import __version__, paths
from tempest_live_ci.cli import cli
from tempest_live_ci.errors import ExitCode

PROG = "tempest-live-ci"

EXIT_MEANINGS = {
    ExitCode.OK: "All tests passed (skipped tests are normal in tempest).",
    ExitCode.TESTS_FAILED: "Some tests failed.",
    ExitCode.NO_TESTS: "No test ran.",
    ExitCode.CANDIDATE: "A candidate package could not be installed.",
    ExitCode.TESTBED: "Testbed failure (host network, image, boot, SSH, OpenStack install): "
    "a retry makes sense.",
    ExitCode.USAGE: "Bad usage or invalid job; nothing was changed on the host.",
    ExitCode.INTERRUPTED: "Interrupted (Ctrl-C, SIGTERM or SIGHUP); what the run had set up "
    "was undone.",
}

ENVIRONMENT = {
    "TEMPEST_LIVE_CI_DATA_DIR": (
        "Where the templates, live-build configuration and jobs are read from.",
        str(paths.INSTALLED_DATA),
    ),
    "TEMPEST_LIVE_CI_STATE_DIR": ("Runtime state of runs and testbeds.", "state_dir"),
    "TEMPEST_LIVE_CI_CACHE_DIR": ("Built images and the apt proxy's cache.", "cache_dir"),
    "TEMPEST_LIVE_CI_RESULTS_DIR": ("The results store.", "results_dir"),
}


def escape(text: str) -> str:
    """Roff-escape one line of text."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    if text.startswith((".", "'")):
        text = "\\&" + text
    return text


def paragraphs(help_text: str) -> Iterator[str]:
    """Roff for click help text: paragraphs filled, click's \\b blocks kept as written."""
    for block in help_text.strip().split("\n\n"):
        lines = block.splitlines()
        if lines and lines[0].strip() == "\b":
            yield ".PP\n.nf\n" + "\n".join(escape(line) for line in lines[1:]) + "\n.fi"
        else:
            yield ".PP\n" + "\n".join(escape(line.strip()) for line in lines)


def option_items(
    command: click.Command, ctx: click.Context, with_help: bool = False
) -> Iterator[str]:
    # click 8.1 makes a new help option object on each call: compare by name.
    help_option = command.get_help_option(ctx)
    help_name = help_option.name if help_option else None
    for param in command.get_params(ctx):
        # --help is described once, for the program, not under every command.
        if param.name == help_name and not with_help:
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        yield f".TP\n.B {escape(names)}\n{escape(help_text) if help_text else ''}".rstrip()


def walk(
    command: click.Command, ctx: click.Context
) -> Iterator[tuple[click.Command, click.Context]]:
    """Every visible command below a group, depth first, in the order help lists them."""
    if not isinstance(command, click.Group):
        return
    for name in command.list_commands(ctx):
        sub = command.get_command(ctx, name)
        if sub is None or sub.hidden:
            continue
        # make_context applies the command's context_settings (e.g. -h for --help);
        # resilient parsing: no required argument, no eager --version/--help callback.
        sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
        yield sub, sub_ctx
        yield from walk(sub, sub_ctx)


def one_line_summary(command: click.Command) -> str:
    summary = command.get_short_help_str(limit=200).rstrip(".")
    return summary[:1].lower() + summary[1:]


def synopsis(command: click.Command, ctx: click.Context) -> str:
    return " ".join(command.collect_usage_pieces(ctx))


def build_date() -> str:
    # SOURCE_DATE_EPOCH (the changelog date under dpkg-buildpackage) keeps the page reproducible.
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0")) or None
    when = (
        datetime.datetime.fromtimestamp(epoch, datetime.UTC)
        if epoch
        else datetime.datetime.now(datetime.UTC)
    )
    return when.strftime("%Y-%m-%d")


def manpage() -> str:
    root = cli.make_context(PROG, [], resilient_parsing=True)
    out = [
        f'.TH TEMPEST\\-LIVE\\-CI 1 "{build_date()}" "{escape(PROG)} {__version__}"'
        ' "User Commands"',
        ".SH NAME",
        f"{escape(PROG)} \\- {escape(one_line_summary(cli))}",
        ".SH SYNOPSIS",
        f".B {escape(PROG)}",
        "[\\fIOPTIONS\\fR] \\fICOMMAND\\fR [\\fIARGS\\fR]...",
        ".SH DESCRIPTION",
        *paragraphs(cli.help or ""),
        ".SH OPTIONS",
        *option_items(cli, root, with_help=True),
        ".SH COMMANDS",
    ]
    for command, ctx in walk(cli, root):
        out.append(f".SS {escape(ctx.command_path)}")
        out.append(f".B {escape(ctx.command_path)}")
        out.append(escape(synopsis(command, ctx)))
        out.extend(paragraphs(command.help or command.short_help or ""))
        items = list(option_items(command, ctx))
        if items:
            out.append(".PP\nOptions:")
            out.append(".RS")
            out.extend(items)
            out.append(".RE")
    out.append(".SH EXIT STATUS")
    for code in ExitCode:
        meaning = EXIT_MEANINGS.get(code, code.name.replace("_", " ").capitalize() + ".")
        out.append(f".TP\n.B {int(code)}\n{escape(meaning)}")
    out.append(".SH ENVIRONMENT")
    for name, (meaning, default) in ENVIRONMENT.items():
        if hasattr(paths, default):
            os.environ.pop(name, None)
            default = str(getattr(paths, default)())
        out.append(f".TP\n.B {escape(name)}\n{escape(meaning)} Default: \\fI{escape(default)}\\fR.")
    out.append(".SH FILES")
    out.append(
        f".TP\n.I {escape(str(paths.INSTALLED_DATA))}\n"
        "Templates (host\\-setup/, live\\-build/) and jobs (jobs/) of the installed package."
    )
    out.append(".SH SEE ALSO")
    out.append(".BR autopkgtest (1),\n.BR live\\-build (7)")
    return "\n".join(out) + "\n"


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: gen-manpage.py OUTPUT")
    with open(sys.argv[1], "w", encoding="utf-8") as f:
        f.write(manpage())


if __name__ == "__main__":
    main()
