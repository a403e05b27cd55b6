"""Logging: progress and diagnostics on stderr, timed steps.

stdout carries what a command produces: JSON, subunit, reports, and the
human output of the commands that report (doctor, host status, results
show|compare|history), so that it pipes into less or grep. Progress, logs,
warnings and errors go to stderr.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
import time
from collections.abc import Iterator

from tempest_live_ci.terminal import printable

log = logging.getLogger("tempest-live-ci")


class _Printable(logging.Filter):
    """The arguments of a message (test ids, paths, what a guest or a file said) with their
    control characters escaped, on the console and in run.log alike: the format string is
    the tool's own, what fills it is data and stays on its line."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(a if isinstance(a, int | float) else printable(a)
                                for a in record.args)
        return True


log.addFilter(_Printable())

_depth = 0


class _Formatter(logging.Formatter):
    def __init__(self, color: bool) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info and log.isEnabledFor(logging.DEBUG):
            message += "\n" + self.formatException(record.exc_info)
        prefix = {
            logging.DEBUG: "‣ ",
            logging.WARNING: "warning: ",
            logging.ERROR: "error: ",
            logging.CRITICAL: "error: ",
        }.get(record.levelno, "")
        line = "  " * getattr(record, "depth", 0) + prefix + message
        if self.color:
            code = {logging.DEBUG: "2", logging.WARNING: "33;1", logging.ERROR: "31;1"}.get(
                record.levelno
            )
            if code:
                line = f"\033[{code}m{line}\033[0m"
        return line


class _DepthFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "depth"):
            record.depth = _depth
        return True


def setup_logging(debug: bool = False) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(color=sys.stderr.isatty()))
    handler.addFilter(_DepthFilter())
    log.handlers[:] = [handler]
    log.setLevel(logging.DEBUG if debug else logging.INFO)
    log.propagate = False


def add_file_log(path: str) -> logging.Handler:
    """Also write the whole debug log of a run to a file (the run's output directory)."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    if log.level > logging.DEBUG:
        # The console handler keeps its level; the file gets everything.
        for h in log.handlers:
            if h is not handler:
                h.setLevel(log.level)
        log.setLevel(logging.DEBUG)
    return handler


def format_duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}m{seconds:02d}s"


def _gitlab_section(edge: str, title: str) -> None:
    """In a GitLab CI job's log, each stage is a collapsible section: GitLab's markers on
    stderr around its lines (the top level only), named after its title's words."""
    if os.environ.get("GITLAB_CI") != "true" or _depth != 0:
        return
    name = "tempest_live_ci_" + re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
    marker = f"\x1b[0Ksection_{edge}:{int(time.time())}:{name}"
    if edge == "start":
        marker += f"[collapsed=false]\r\x1b[0K{printable(title)}"
    else:
        marker += "\r\x1b[0K"
    sys.stderr.write(marker + "\n")
    sys.stderr.flush()


@contextlib.contextmanager
def step(title: str) -> Iterator[None]:
    """A timed, nested progress step: `with step("Booting VM"): ...`."""
    global _depth
    _gitlab_section("start", title)
    log.info("%s…", title, extra={"depth": _depth})
    _depth += 1
    start = time.monotonic()
    try:
        yield
    except BaseException:
        _depth -= 1
        log.info("%s failed after %s", title, format_duration(time.monotonic() - start),
                 extra={"depth": _depth})
        _gitlab_section("end", title)
        raise
    _depth -= 1
    log.info("%s done (%s)", title, format_duration(time.monotonic() - start),
             extra={"depth": _depth})
    _gitlab_section("end", title)
