"""Failure classes and the exit codes they map to.

The codes are those autopkgtest uses, so that a CI system that already knows
autopkgtest knows when a retry makes sense (16) and when it does not.
An exception that is no TLCError (paramiko, libvirt, OSError, a bug) also
exits 16: cli.main() reports it in one line, its traceback at debug level.
"""

from __future__ import annotations

import enum


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
