"""Files of run directories and of the results store, read and written as root.

A run directory may be someone else's (a CI artifact, a copy handed over),
and so may what is in it: a name the results stage reads or writes may be a
symbolic link (to /etc/shadow), a hard link, a FIFO or a device (a read
that never ends), a file of gigabytes, a JSON document nested 100,000 deep.

    open_regular(), read_regular(), read_json()
        a regular file, opened without blocking and without following a link
        in its last component, checked on the open descriptor (fstat), of a
        bounded size; JSON of a bounded depth. Anything else is a UsageError
        (exit 20) naming the file.
    write_text(), write_bytes()
        a new file beside the old one, then renamed over it: a link or
        anything else already there is never written through. An existing
        name that is not a regular file is refused.
    create()
        a file written as it goes (a live stream, a step's log): what is in
        its way (a link, a FIFO, a hard link) is removed, never written.
    copy_tree(), copy_beneath()
        regular files and directories only, never through a link.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import reprlib
import secrets
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from tempest_live_ci import inputs
from tempest_live_ci.errors import UsageError
from tempest_live_ci.inputs import kind, size

MiB = 1024 * 1024
# summary.json holds every test's status and every failure's traceback.
JSON_LIMIT = 64 * MiB
# A full tempest run with its attachments is tens of MiB.
STREAM_LIMIT = 1024 * MiB
# Deeper than any document the tool writes (metadata.steps.STEP.parts: 4).
JSON_DEPTH = 32
# How much of a bad value an error message quotes.
QUOTED = 60

_DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def quoted(value: object, limit: int = QUOTED) -> str:
    """A value as an error message quotes it: its repr, two levels and a few items deep,
    cut to about `limit` characters (the work is bounded as well as the text)."""
    shown = reprlib.Repr()
    shown.maxlevel, shown.maxlist, shown.maxdict = 2, 4, 4
    shown.maxstring = shown.maxother = shown.maxlong = limit
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 4 * limit:
        return f"<an integer of {value.bit_length()} bits>"
    text = shown.repr(value)
    return text if len(text) <= limit + 2 else text[:limit] + "…"


def open_regular(path: Path, *, limit: int, follow: bool = False,
                 dir_fd: int | None = None) -> IO[bytes]:
    """`path` opened for reading if it is a regular file of at most `limit` bytes.

    follow=True only for a path the user named on the command line: a link
    to a regular file is then accepted (inputs.open_regular's checks).
    """
    return inputs.open_regular(path, None, follow=follow, limit=limit, dir_fd=dir_fd)


def read_regular(path: Path, *, limit: int, follow: bool = False) -> bytes:
    """The content of a regular file of at most `limit` bytes (open_regular's checks)."""
    with open_regular(path, limit=limit, follow=follow) as f:
        data = f.read(limit + 1)
    if len(data) > limit:  # it grew after the check
        raise UsageError(f"{path}: larger than {size(limit)}")
    return data


def exists(path: Path) -> bool:
    """Is there anything at `path` (a dangling link included)?"""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):
        return False
    return True


def _depth(data: Any, limit: int) -> bool:
    """Is `data` nested at most `limit` deep? Iterative: no recursion to exhaust."""
    pending = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > limit:
                return False
            children = value.values() if isinstance(value, dict) else value
            pending.extend((child, depth + 1) for child in children
                           if isinstance(child, dict | list))
    return True


def read_json(path: Path, *, limit: int = JSON_LIMIT, depth: int = JSON_DEPTH,
              follow: bool = False) -> Any:
    """A JSON file of at most `limit` bytes and `depth` levels of nesting."""
    return parse_json(read_regular(path, limit=limit, follow=follow), str(path), depth=depth)


def parse_json(data: bytes | str, where: str, *, depth: int = JSON_DEPTH) -> Any:
    try:
        value = json.loads(data)
    except RecursionError:
        raise UsageError(f"{where}: not JSON: nested more than {depth} deep") from None
    except ValueError as e:  # UnicodeDecodeError included
        raise UsageError(f"{where}: not JSON: {str(e)[:QUOTED]}") from None
    if not _depth(value, depth):
        raise UsageError(f"{where}: not JSON: nested more than {depth} deep")
    return value


@contextlib.contextmanager
def _directory(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _write(path: Path, fill: Callable[[IO[bytes]], object], mode: int = 0o644) -> Path:
    """A new file in path's directory, filled, then renamed to path (in that directory)."""
    name = path.name
    with _directory(path.parent) as directory:
        try:
            old = os.stat(name, dir_fd=directory, follow_symlinks=False)
        except FileNotFoundError:
            pass
        else:
            if not stat.S_ISREG(old.st_mode):
                raise UsageError(f"{path}: {kind(old.st_mode)}, not replaced")
        while True:
            tmp = f".{name[:200]}.{os.getpid()}.{secrets.token_hex(4)}"
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                             | os.O_CLOEXEC, mode, dir_fd=directory)
                break
            except FileExistsError:
                continue
        try:
            os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as out:
                fill(out)
            os.replace(tmp, name, src_dir_fd=directory, dst_dir_fd=directory)
        except IsADirectoryError:
            os.unlink(tmp, dir_fd=directory)
            raise UsageError(f"{path}: a directory, not replaced") from None
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=directory)
            raise
    return path


def write_bytes(path: Path, data: bytes) -> Path:
    return _write(path, lambda out: out.write(data))


def write_text(path: Path, text: str) -> Path:
    return write_bytes(path, text.encode("utf-8"))


def create(path: Path, *, append: bool = False) -> IO[bytes]:
    """A file to write as it goes (a stream as it arrives, a step's log) in a directory
    someone else may have filled: a link, FIFO, device or hard link already at `path` is
    removed first, never written through; append keeps a regular file of its own."""
    try:
        old = os.lstat(path)
    except FileNotFoundError:
        pass
    else:
        if stat.S_ISDIR(old.st_mode):
            raise UsageError(f"{path}: a directory, not replaced")
        if not (append and stat.S_ISREG(old.st_mode) and old.st_nlink == 1):
            os.unlink(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    fd = os.open(path, flags | (os.O_APPEND if append else os.O_EXCL), 0o644)
    now = os.fstat(fd)
    if not stat.S_ISREG(now.st_mode) or now.st_nlink != 1:  # swapped in meanwhile
        os.close(fd)
        raise UsageError(f"{path}: {kind(now.st_mode)} appeared while it was being made")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab" if append else "wb")


def _copy(source: IO[bytes], out: IO[bytes]) -> None:
    while chunk := source.read(MiB):
        out.write(chunk)


def copy_beneath(base: Path, relative: str, destination: Path) -> bool:
    """Copy base/relative to destination if every part of it is what it says: directories
    then a regular file, no link anywhere below base. False (nothing copied) otherwise."""
    parts = Path(relative).parts
    if not parts or any(p in ("", ".", "..") for p in parts) or Path(relative).is_absolute():
        return False
    fds: list[int] = []
    try:
        fds.append(os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        for part in parts[:-1]:
            fds.append(os.open(part, _DIRECTORY, dir_fd=fds[-1]))
        with open_regular(Path(parts[-1]), limit=STREAM_LIMIT, dir_fd=fds[-1]) as source:
            _write(destination, lambda out: _copy(source, out))
    except (OSError, UsageError):
        return False
    finally:
        for fd in fds:
            os.close(fd)
    return True


def copy_tree(source: Path, destination: Path) -> list[str]:
    """Copy the regular files and directories of `source` into a new `destination`.

    Nothing else is copied, nor followed: symbolic links, FIFOs, sockets,
    devices. Returns what was left out ("path (a symbolic link)"). The
    copies are the copier's (root's), 0644 and 0755.
    """
    skipped: list[str] = []
    os.mkdir(destination, 0o755)
    with _directory(source) as top_in, _directory(destination) as top_out:
        # (source directory fd, destination directory fd, relative path); one level open
        # at a time below the top, however deep the tree.
        pending: list[tuple[str, ...]] = [()]
        while pending:
            where = pending.pop()
            with _opened(top_in, where) as src, _opened(top_out, where) as dst:
                for entry in sorted(os.scandir(src), key=lambda e: e.name):
                    name = (*where, entry.name)
                    shown = "/".join(name)
                    mode = entry.stat(follow_symlinks=False).st_mode
                    if stat.S_ISDIR(mode):
                        os.mkdir(entry.name, 0o755, dir_fd=dst)
                        pending.append(name)
                    elif stat.S_ISREG(mode):
                        try:
                            copied = open_regular(Path(entry.name), limit=STREAM_LIMIT * 4,
                                                  dir_fd=src)
                        except UsageError as e:
                            skipped.append(f"{shown} ({e.message.split(': ', 1)[-1]})")
                            continue
                        with copied, os.fdopen(os.open(
                                entry.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                                | os.O_CLOEXEC, 0o644, dir_fd=dst), "wb") as out:
                            _copy(copied, out)
                    else:
                        skipped.append(f"{shown} ({kind(mode)})")
    return skipped


@contextlib.contextmanager
def _opened(top: int, parts: tuple[str, ...]) -> Iterator[int]:
    """The directory top/parts..., each part opened without following a link."""
    fds: list[int] = []
    try:
        fd = top
        for part in parts:
            fd = os.open(part, _DIRECTORY, dir_fd=fd)
            fds.append(fd)
        yield fd
    finally:
        for opened in fds:
            os.close(opened)


class Recorded(io.RawIOBase):
    """A writable byte stream kept in `file` as it comes (flushed at each write), each
    piece then handed to take()."""

    def __init__(self, file: IO[bytes]) -> None:
        super().__init__()
        self.file = file

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        data = bytes(data)
        self.file.write(data)
        self.file.flush()
        self.take(data)
        return len(data)

    def take(self, data: bytes) -> None:
        raise NotImplementedError
