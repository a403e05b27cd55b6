"""Files from outside (job files, candidates, lists, keys, images): regular files only.

The tool runs as root and reads files other people made. Before anything
reads one (Python here, dpkg-deb, gpgv, the testbed's HTTP server), it is
opened without blocking and without following a symbolic link in its last
component, and fstat() must say it is a regular file: a FIFO named x.deb
would block a reader forever, a device would never end, and a link could
name a file its maker cannot read (/etc/shadow) for the run to publish.
Checking the open descriptor, not the name, leaves no window between the
check and the read.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from tempest_live_ci.errors import UsageError


def kind(mode: int) -> str:
    """What a file of this mode is, for a message: "a FIFO", "a symbolic link"..."""
    return _kind(mode)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a symbolic link")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str | os.PathLike[str], where: str | None, *,
                 follow: bool = False, limit: int | None = None,
                 dir_fd: int | None = None) -> BinaryIO:
    """`path` opened for reading, if it is a regular file; else a UsageError naming
    `where` (the key or option that names it) and the path, or the path alone.

    follow=False (what a job or an option names) refuses a symbolic link;
    follow=True (a job file or the site's config.yaml, which their admin
    names) accepts one to a regular file. With `limit`, a larger file is
    refused. `dir_fd`: `path` is relative to that directory. The file
    object blocks as usual.
    """
    subject = f"{where}: {path}" if where else str(path)
    # Looked at before it is opened: opening a device can do something
    # (a watchdog starts counting); the descriptor is checked again below.
    try:
        before = os.stat(path, dir_fd=dir_fd, follow_symlinks=follow)
    except FileNotFoundError:
        raise UsageError(f"{where}: no such file: {path}" if where
                         else f"{path}: no such file") from None
    except OSError as e:
        raise UsageError(f"{subject}: cannot be read: {e.strerror}") from None
    if stat.S_ISLNK(before.st_mode):
        raise UsageError(f"{subject}: a symbolic link, not a regular file "
                         "(name the file itself)")
    if not stat.S_ISREG(before.st_mode):
        raise UsageError(f"{subject}: {_kind(before.st_mode)}, not a regular file")
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
    if not follow:
        flags |= os.O_NOFOLLOW
    try:
        fd = os.open(path, flags, dir_fd=dir_fd)
    except OSError as e:
        raise UsageError(f"{subject}: cannot be read: {e.strerror}") from None
    try:
        now = os.fstat(fd)
        if not stat.S_ISREG(now.st_mode):
            raise UsageError(f"{subject}: {_kind(now.st_mode)}, not a regular file")
        if (now.st_dev, now.st_ino) != (before.st_dev, before.st_ino):
            raise UsageError(f"{subject}: replaced while it was being opened")
        if limit is not None and now.st_size > limit:
            raise UsageError(f"{subject}: {now.st_size} bytes, larger than {size(limit)}")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def size(limit: int) -> str:
    """A size limit for a message: "64 MiB", "256 KiB"."""
    return f"{limit // (1024 * 1024)} MiB" if limit >= 1024 * 1024 else f"{limit // 1024} KiB"


def read_regular(path: str | os.PathLike[str], where: str | None, *, limit: int,
                 follow: bool = False) -> bytes:
    """The content of a regular file of `limit` bytes at most (open_regular's checks)."""
    with open_regular(path, where, follow=follow) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise UsageError(f"{f'{where}: ' if where else ''}{path}: larger than {limit // 1024} KiB")
    return data


def check_regular(path: str | os.PathLike[str], where: str | None, *, follow: bool = False) -> Path:
    """Refuse `path` unless it is a regular file (open_regular's checks); return it."""
    open_regular(path, where, follow=follow).close()
    return Path(path)
