#!/usr/bin/python3
"""Write the man pages with help2man from the --help of every command, git-style:
tempest-live-ci.1 (with the exit status, environment and files of
debian/tempest-live-ci.h2m) and tempest-live-ci-COMMAND[-SUBCOMMAND].1.

Run at build time against the code being packaged, so the pages list every
command and option the packaged CLI has. The click command tree is walked
only to name the pages and give each its one-line summary.
Usage: gen-manpage.py OUTDIR  (with the package importable, e.g. PYTHONPATH=ci)
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from tempest_live_ci import __version__
from tempest_live_ci.cli import cli

PROG = "tempest-live-ci"
DEBIAN = Path(__file__).resolve().parent
WRAPPER = DEBIAN.parent / "bin" / PROG


def commands(group: click.Group, ctx: click.Context,
             path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    """Every visible command, depth first, in the order --help lists them."""
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, click.Context(command, parent=ctx), (*path, name))


def summary(command: click.Command) -> str:
    text = command.get_short_help_str(limit=200).rstrip(".")
    return text[:1].lower() + text[1:]


def help2man(out: Path, words: tuple[str, ...], name: str, include: Path) -> None:
    page = "-".join((PROG, *words))
    subprocess.run(
        ["help2man", "--no-info", "--section=1", f"--name={name}", f"--include={include}",
         f"--version-string={page} {__version__}",
         f"--help-option={' '.join((*words, '--help'))}",
         f"--output={out / f'{page}.1'}", str(WRAPPER)],
        check=True, env={**os.environ, "COLUMNS": "80"})


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: gen-manpage.py OUTDIR")
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    found = list(commands(cli, click.Context(cli, info_name=PROG)))
    see_also = ",\n".join(f".BR {'-'.join((PROG, *words))} (1)" for words, _ in found)
    with tempfile.TemporaryDirectory() as tmp:
        main_include = Path(tmp) / "main.h2m"
        main_include.write_text((DEBIAN / f"{PROG}.h2m").read_text()
                                + f"\n[SEE ALSO]\n{see_also},\n.BR autopkgtest (1)\n")
        sub_include = Path(tmp) / "sub.h2m"
        sub_include.write_text(f"[SEE ALSO]\n.BR {PROG} (1)\n")
        help2man(out, (), summary(cli), main_include)
        for words, command in found:
            help2man(out, words, summary(command), sub_include)


if __name__ == "__main__":
    main()
