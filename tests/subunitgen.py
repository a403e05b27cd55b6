"""Subunit v2 streams and guest log tarballs made to order, for tests of hostile input;
python-subunit's own counts of a stream (subunit-stats), to check ours against.

The streams are python-subunit's own bytes (StreamResultToBytes), packet by
packet, so that a test can say exactly what a runner (or a guest that lies)
sent: a test id with control characters in it, a packet whose checksum is
wrong, 64,000 listed tests under one failed class.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from subunit import StreamResultToBytes


@dataclass(frozen=True)
class Event:
    test_id: str
    status: str | None = None
    file_name: str | None = None
    file_bytes: bytes = b""

    def send(self, out: StreamResultToBytes) -> None:
        kwargs: dict[str, Any] = {"test_id": self.test_id, "test_status": self.status}
        if self.file_name is not None:
            kwargs.update(file_name=self.file_name, file_bytes=self.file_bytes, eof=True,
                          mime_type="text/plain;charset=utf8")
        out.status(**kwargs)


def packets(*events: Event) -> bytes:
    buffer = io.BytesIO()
    out = StreamResultToBytes(buffer)
    for event in events:
        event.send(out)
    return buffer.getvalue()


def passed(test_id: str) -> bytes:
    return packets(Event(test_id, "success"))


def failed(test_id: str, traceback: str = "AssertionError: boom\n") -> bytes:
    return packets(Event(test_id, "fail", "traceback", traceback.encode()))


def skipped(test_id: str, reason: str = "not enabled") -> bytes:
    return packets(Event(test_id, "skip", "reason", reason.encode()))


def xfail(test_id: str) -> bytes:
    return packets(Event(test_id, "xfail"))


def listed(test_ids: Iterable[str]) -> bytes:
    return packets(*(Event(t, "exists") for t in test_ids))


def running(test_id: str) -> bytes:
    return packets(Event(test_id, "inprogress"))


def corrupt(packet: bytes) -> bytes:
    """The packet with one byte of its content changed: its CRC32 no longer matches."""
    data = bytearray(packet)
    data[len(data) // 2] ^= 0xFF
    return bytes(data)


@dataclass(frozen=True)
class Member:
    """A member of a tarball as a guest could make it (any type, owner, mode, name)."""

    name: str
    type: bytes = tarfile.REGTYPE
    data: bytes = b""
    mode: int = 0o644
    uid: int = 0
    uname: str = "root"
    linkname: str = ""


def tarball(*members: Member) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for m in members:
            info = tarfile.TarInfo(m.name)
            info.type, info.mode, info.uid, info.gid = m.type, m.mode, m.uid, m.uid
            info.uname = info.gname = m.uname
            info.linkname = m.linkname
            info.size = len(m.data) if m.type == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(m.data) if m.type == tarfile.REGTYPE else None)
    return buffer.getvalue()


def subunit_stats(path: Path) -> dict[str, int]:
    """python-subunit's own counts of a stream (/usr/bin/subunit-stats): total, passed (what
    neither failed nor skipped: expected failures too), failed, skipped."""
    with path.open("rb") as f:
        out = subprocess.run(["subunit-stats"], stdin=f, capture_output=True, text=True,
                             timeout=60).stdout
    stats = {}
    for line in out.splitlines():
        key, _, value = line.partition(":")
        if value.strip().isdigit():
            stats[key.split()[0].lower()] = int(value)
    return stats
