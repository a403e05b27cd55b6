"""Boot progress as it happens, read from the logs the testbed's daemons write.

dnsmasq (log-dhcp) says when the guest got its lease, the HTTP server's
access log when it fetched boot.ipxe, the kernel, the initrd and the
squashfs, the serial console when the kernel started. A thread follows the
files from their current end and logs each event with its time since the
domain started; the first time of each event is kept for the run's summary.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tempest_live_ci.log import log
from tempest_live_ci.terminal import printable

# python http.server: 192.168.100.2 - - [22/Nov/2026 05:13:15] "GET /img/vmlinuz HTTP/1.1" 200 -
HTTP_LINE = re.compile(r'"GET (?P<path>/\S*) HTTP/[\d.]+" (?P<code>\d{3})')
# dnsmasq: ... DHCPACK(tempestbr) 192.168.100.2 52:54:00:7e:57:02 tempest-guest
DHCP_ACK = re.compile(r"DHCPACK\((?P<iface>[^)]*)\) (?P<address>\S+) (?P<mac>[0-9a-fA-F:]{17})")
KERNEL_STARTED = "Linux version "
KERNEL_PANIC = "Kernel panic - not syncing: "
BOOT_FILES = {
    "/boot.ipxe": "boot.ipxe",
    "/img/vmlinuz": "kernel",
    "/img/initrd.img": "initrd",
    "/img/filesystem.squashfs": "squashfs",
}


@dataclass
class _Followed:
    path: Path
    parse: Callable[[str], None]
    offset: int = 0
    partial: str = ""


@dataclass
class BootProgress:
    """Follows the boot logs; `times` maps event names to seconds since `start`."""

    guest_mac: str
    dnsmasq_log: Path | None
    http_log: Path | None
    console_log: Path | None
    start: float = field(default_factory=time.monotonic)
    times: dict[str, float] = field(default_factory=dict)
    interval: float = 0.25

    def __post_init__(self) -> None:
        self._files: list[_Followed] = []
        self._dhcp_acks = 0
        self.panics = 0
        self._stop = threading.Event()
        self._changed = threading.Condition()
        self._thread: threading.Thread | None = None
        for path, parse in ((self.dnsmasq_log, self._dhcp), (self.http_log, self._http),
                            (self.console_log, self._console)):
            if path is not None:
                # Only what is written from now on: a persistent testbed's logs
                # hold earlier runs.
                self._files.append(_Followed(path, parse, _size(path)))

    def __enter__(self) -> BootProgress:
        self._thread = threading.Thread(target=self._follow, name="boot-progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        self.poll()

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def mark(self, event: str, message: str) -> None:
        """Record an event (first occurrence timed) and report it."""
        seconds = self.elapsed()
        with self._changed:
            self.times.setdefault(event, round(seconds, 2))
            self._changed.notify_all()
        log.info("[%6.1fs] %s", seconds, message)

    def seen(self, *events: str) -> bool:
        with self._changed:
            return all(e in self.times for e in events)

    def wait_for(self, events: tuple[str, ...], timeout: float,
                 check: Callable[[], None] | None = None) -> bool:
        """Wait until all `events` were seen; `check` runs every second and may raise."""
        deadline = time.monotonic() + timeout
        while not self.seen(*events):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            if check is not None:
                check()
            with self._changed:
                self._changed.wait(min(1.0, remaining))
        return True

    def poll(self) -> None:
        for followed in self._files:
            size = _size(followed.path)
            if size < followed.offset:
                followed.offset = 0  # rotated or truncated
            if size == followed.offset:
                continue
            with followed.path.open("rb") as f:
                f.seek(followed.offset)
                data = f.read(size - followed.offset)
            followed.offset += len(data)
            text = followed.partial + data.decode(errors="replace")
            *lines, followed.partial = text.split("\n")
            for line in lines:
                followed.parse(line)

    def _follow(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.poll()
            except OSError as e:
                log.debug("boot progress: %s", e)

    def _dhcp(self, line: str) -> None:
        match = DHCP_ACK.search(line)
        if match and match["mac"].lower() == self.guest_mac.lower():
            self._dhcp_acks += 1
            which = "" if self._dhcp_acks == 1 else f" (#{self._dhcp_acks})"
            self.mark("dhcp" if self._dhcp_acks == 1 else f"dhcp{self._dhcp_acks}",
                      f"DHCP lease {match['address']} given to {match['mac']}{which}")

    def _http(self, line: str) -> None:
        match = HTTP_LINE.search(line)
        if not match:
            return
        event = BOOT_FILES.get(match["path"])
        if event is None:
            return
        if match["code"] == "200":
            if event not in self.times:
                self.mark(event, f"{event} fetched ({match['path']})")
        else:
            log.warning("[%6.1fs] GET %s answered %s", self.elapsed(), match["path"],
                        match["code"])

    def _console(self, line: str) -> None:
        if KERNEL_STARTED in line and "kernel-started" not in self.times:
            self.mark("kernel-started", "kernel started: " + line.split(KERNEL_STARTED, 1)[1][:60])
        # The panic's line, not its closing "---[ end Kernel panic - ... ]---".
        if KERNEL_PANIC in line and "---[ end " not in line:
            seconds = self.elapsed()
            with self._changed:
                self.panics += 1
                self.times.setdefault("panic", round(seconds, 2))
                self._changed.notify_all()
            reason = printable(line.split(KERNEL_PANIC, 1)[1].strip()[:80])
            log.warning("[%6.1fs] the guest's kernel panicked (%s)%s", seconds, reason,
                        ": it reboots" if self.panics == 1 else "")


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def console_tail(path: Path, lines: int = 20) -> list[str]:
    """The last non-empty lines of the serial console, without terminal escapes."""
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return []
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]|\x1bc|\r", "", text)
    return [line for line in text.splitlines() if line.strip()][-lines:]
