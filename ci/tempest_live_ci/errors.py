"""Failure classes and the exit codes they map to.

The codes are those autopkgtest uses, so that a CI system that already knows
autopkgtest knows when a retry makes sense (16) and when it does not.
An exception that is no TLCError (paramiko, libvirt, OSError, a bug) also
exits 16: cli.main() reports it in one line, its traceback at debug level.
"""

from __future__ import annotations

import datetime
import enum
import itertools


class ExitCode(enum.IntEnum):
    OK = 0
    TESTS_FAILED = 4
    NO_TESTS = 8
    CANDIDATE = 12
    TESTBED = 16
    USAGE = 20
    INTERRUPTED = 130


class TLCError(Exception):
    """An expected failure: reported as one line (plus a hint), no traceback."""

    exit_code: ExitCode = ExitCode.TESTBED

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class UsageError(TLCError):
    """Bad usage or invalid input. Raised before anything changed on the host."""

    exit_code = ExitCode.USAGE


class TestbedError(TLCError):
    """The testbed (host network, image, VM, SSH, OpenStack install) failed: a retry makes sense."""

    __test__ = False  # not a pytest class
    exit_code = ExitCode.TESTBED


class CandidateError(TLCError):
    """A candidate package could not be installed."""

    exit_code = ExitCode.CANDIDATE



# How much of a bad value an error message quotes: enough to recognise it,
# never a whole file or a whole expanded YAML document on one line.
SHOWN_CHARACTERS = 80
_SHOWN_ITEMS = 4
_SHOWN_LEVELS = 2


def shown(value: object, limit: int = SHOWN_CHARACTERS) -> str:
    """`value` as an error message quotes it: its repr(), cut to `limit` characters.

    The work is bounded as well as the text: a string is cut before repr()
    escapes it, a list or a mapping shows its first items, two levels deep
    at most, and an integer past Python's int-digit limit is described
    instead of printed.
    """
    text = _shown(value, limit, _SHOWN_LEVELS)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _shown(value: object, limit: int, levels: int) -> str:
    if isinstance(value, (str, bytes)):
        text = repr(value[:limit])
        if len(value) <= limit and len(text) <= limit:
            return text
        return text[:limit - 4] + "..." + text[-1]
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<an integer of about {int(value.bit_length() * 0.30103)} digits>"
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        brackets = "{}" if isinstance(value, (dict, set, frozenset)) else \
            "()" if isinstance(value, tuple) else "[]"
        if not value:
            return brackets
        if levels == 0:
            return f"{brackets[0]}...{brackets[1]}"
        items = value.items() if isinstance(value, dict) else value
        parts: list[str] = []
        for item in itertools.islice(items, _SHOWN_ITEMS + 1):
            if len(parts) == _SHOWN_ITEMS:
                parts.append("...")
            elif isinstance(value, dict):
                key, child = item
                parts.append(f"{_shown(key, limit, levels - 1)}: {_shown(child, limit, levels - 1)}")
            else:
                parts.append(_shown(item, limit, levels - 1))
        comma = "," if isinstance(value, tuple) and len(parts) == 1 else ""
        return brackets[0] + ", ".join(parts) + comma + brackets[1]
    if value is None or isinstance(value, (bool, int, float, datetime.date)):
        return repr(value)
    return f"<{type(value).__name__}>"


def cut(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """Another tool's message (dpkg-deb's, gpgv's) as part of one line: unquoted,
    its control characters escaped, cut to `limit` characters."""
    clean = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:limit + 1])
    return clean if len(clean) <= limit else clean[:limit - 3] + "..."
