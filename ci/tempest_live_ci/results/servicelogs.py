"""What the services said while a test failed: the guest's log lines of the test's time.

guest-logs/ is what the guest's collect step sent home: the journal
(var/log/tempest-live-ci/journal.txt) and each service's /var/log/SERVICE/*.log.
One clock stamps everything here, the guest's: tempest runs in the guest and
stamps the subunit stream (UTC), the services stamp their logs (oslo.log:
"2026-12-02 03:21:01.025 708 INFO ..."; uWSGI's request lines:
"[Wed Dec  2 03:21:08 2026]"; both the guest's local time, which is UTC in
the live image) and the journal is written with wall-clock stamps
(journalctl -o short-iso-precise).

Journals of older runs carry monotonic stamps ("[  132.426669] host ident:"):
seconds since the guest booted, put on the wall clock at the boot time
guessed from COLLECTED's stamp less the age of PID 1 (processes.txt). That
guess is late by as long as the collect step took before it stamped
COLLECTED (3.2 s in tests/data/smoke-image-sid), so those lines get a wider
margin.

A line without a stamp of its own (a traceback's frames, uWSGI's banner)
belongs to the stamped line before it. The files come from the guest:
regular files only, of bounded size (results.files), and what an excerpt
shows is bounded too.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from tempest_live_ci import files
from tempest_live_ci.errors import UsageError
from tempest_live_ci.log import log
from tempest_live_ci.results.model import FAILING, FLAKY, TestRecord

LOGS = "guest-logs"
JOURNAL = "var/log/tempest-live-ci/journal.txt"
PROCESSES = "var/log/tempest-live-ci/processes.txt"
COLLECTED = "COLLECTED"
# The directories of /var/log whose *.log files are the profiles' services' own.
SERVICE_DIRS = ("keystone", "glance", "placement", "nova", "neutron", "cinder", "heat", "swift",
                "ovn", "openvswitch", "rabbitmq", "mysql", "apache2")
# Seconds before a test's start and after its end whose lines are shown too: a
# request's line is written when it ends, a service's error may follow the
# client's by a moment.
MARGIN = 5.0
# The boot time guessed for a monotonic journal is late by the collect step's time.
MONOTONIC_MARGIN = MARGIN + 10.0
# What one excerpt shows of one source: its first and last lines beyond that.
LINES = 200
LINE_LENGTH = 2000
FILE_LIMIT = 512 * files.MiB

_OSLO = re.compile(r"(\d{4})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:[.,](\d{1,6}))?")
_ISO_JOURNAL = re.compile(
    r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?)([+-]\d\d:?\d\d|Z) \S+ ([^:\[ ]+)")
_MONOTONIC_JOURNAL = re.compile(r"\[\s*(\d+\.\d+)\] \S+ ([^:\[ ]+)")
_UWSGI = re.compile(r"\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|"
                    r"Oct|Nov|Dec) +(\d{1,2}) (\d\d):(\d\d):(\d\d) (\d{4})\]")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ELAPSED = re.compile(r"(?:(?:(\d+)-)?(\d+):)?(\d+):(\d+)")


@dataclass(frozen=True)
class Source:
    """The stamped lines of one log, in time order (seconds since the epoch)."""

    name: str
    times: list[float]
    lines: list[str]
    margin: float = MARGIN

    def between(self, start: float, end: float | None) -> list[str]:
        low = bisect.bisect_left(self.times, start - self.margin)
        high = len(self.times) if end is None else \
            bisect.bisect_right(self.times, end + self.margin)
        return self.lines[low:high]


@dataclass(frozen=True)
class Excerpt:
    """One test's log lines, by source (journal: IDENT, or SERVICE/FILE.log)."""

    start: datetime
    end: datetime | None
    sources: tuple[tuple[str, tuple[str, ...]], ...]

    def __bool__(self) -> bool:
        return bool(self.sources)

    def text(self) -> str:
        """The excerpt as plain text (junit.xml's system-out)."""
        until = self.end.strftime("%H:%M:%S") if self.end else "the end of the logs"
        parts = [f"What the guest's services logged from {self.start:%Y-%m-%d %H:%M:%S} to "
                 f"{until} UTC (±{MARGIN:.0f} s):"]
        for name, lines in self.sources:
            parts.append(f"=== {name} ===\n" + "\n".join(lines))
        return "\n".join(parts) + "\n"


def _epoch(value: datetime) -> float:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.timestamp()


def _stamp(groups: Sequence[str | None]) -> float | None:
    year, month, day, hour, minute, second, fraction = groups
    try:
        moment = datetime(int(year or 0), int(month or 0), int(day or 0), int(hour or 0),
                          int(minute or 0), int(second or 0),
                          int((fraction or "0").ljust(6, "0")[:6]), tzinfo=UTC)
    except ValueError:
        return None
    return moment.timestamp()


def _service_stamp(line: str) -> float | None:
    """The stamp an oslo.log line starts with, or a uWSGI request line's."""
    match = _OSLO.match(line)
    if match:
        return _stamp(match.groups())
    match = _UWSGI.search(line, 0, 120)
    if match and line.startswith("[pid"):
        month, day, hour, minute, second, year = match.groups()
        return _stamp((year, str(_MONTHS.index(month) + 1), day, hour, minute, second, None))
    return None


def _beneath(logs: Path, path: Path) -> bool:
    """Is every directory from guest-logs/ down to `path` a directory, not a link?

    The guest made them: a link there (var -> /) would bring the host's own logs in.
    """
    for parent in reversed(path.relative_to(logs).parents[:-1]):
        if (logs / parent).is_symlink() or not (logs / parent).is_dir():
            return False
    return True


def _read_lines(path: Path) -> list[str] | None:
    try:
        data = files.read_regular(path, limit=FILE_LIMIT)
    except UsageError as e:
        log.warning("%s", e.message)
        return None
    return data.decode("utf-8", errors="replace").splitlines()


def _stamped(lines: Iterable[str],
             stamp: Callable[[str], float | None]) -> tuple[list[float], list[str]]:
    """(times, lines) of the stamped lines, each with the unstamped lines that follow it."""
    def one(line: str) -> tuple[float, str] | None:
        moment = stamp(line)
        return None if moment is None else (moment, "")

    return _sorted(*_grouped(lines, one).get("", ([], [])))


def _grouped(lines: Iterable[str], stamp: Callable[[str], tuple[float, str] | None]
             ) -> dict[str, tuple[list[float], list[str]]]:
    """The stamped lines by who wrote them ((when, who) = stamp(line)), in the order read,
    each with the unstamped lines that follow it (a message's continuation)."""
    sources: dict[str, tuple[list[float], list[str]]] = {}
    kept: list[str] | None = None
    for line in lines:
        line = line[:LINE_LENGTH]
        found = stamp(line)
        if found is None:
            if kept:
                kept[-1] += "\n" + line
            continue
        times, kept = sources.setdefault(found[1], ([], []))
        times.append(found[0])
        kept.append(line)
    return sources


def _boot_time(logs: Path) -> float | None:
    """When the guest booted, guessed: COLLECTED's stamp less PID 1's age."""
    stamp = _read_lines(logs / COLLECTED) if files.exists(logs / COLLECTED) else None
    processes = _read_lines(logs / PROCESSES) if files.exists(logs / PROCESSES) \
        and _beneath(logs, logs / PROCESSES) else None
    if not stamp or not processes:
        return None
    try:
        collected = datetime.strptime(stamp[0].removeprefix("collected ").strip(),
                                      "%Y-%m-%dT%H:%M:%S%z")
    except ValueError:
        return None
    header = processes[0].split()
    if "PID" not in header or "ELAPSED" not in header:
        return None
    for line in processes[1:]:
        fields = line.split()
        if len(fields) > header.index("ELAPSED") and fields[header.index("PID")] == "1":
            match = _ELAPSED.fullmatch(fields[header.index("ELAPSED")])
            if match is None:
                return None
            days, hours, minutes, seconds = (int(g or 0) for g in match.groups())
            age = timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
            return _epoch(collected - age)
    return None


def _journal(logs: Path) -> list[Source]:
    """The journal's lines by syslog identifier (kernel, systemd, keystone, ...)."""
    path = logs / JOURNAL
    lines = _read_lines(path) if files.exists(path) and _beneath(logs, path) else None
    if not lines:
        return []
    boot: float | None = None
    # Older journalctl starts with a "-- Logs begin at ..." line.
    monotonic = any(_MONOTONIC_JOURNAL.match(line) for line in lines[:5])
    if monotonic:
        boot = _boot_time(logs)
        if boot is None:
            log.warning("%s: monotonic stamps, and no boot time to put them on the clock", path)
            return []

    def stamp(line: str) -> tuple[float, str] | None:
        """(when, who) of a journal line, None for a message's continuation."""
        if monotonic:
            match = _MONOTONIC_JOURNAL.match(line)
            if match is None:
                return None
            assert boot is not None
            return boot + float(match.group(1)), match.group(2)
        match = _ISO_JOURNAL.match(line)
        if match is None:
            return None
        try:
            moment = datetime.fromisoformat(match.group(1) + match.group(2))
        except ValueError:
            return None
        return moment.timestamp(), match.group(3)

    # Lines grouped by who wrote them, in time order within each.
    sources = _grouped(lines, stamp)
    margin = MONOTONIC_MARGIN if monotonic else MARGIN
    return [Source(f"journal: {ident}", *_sorted(*sources[ident]), margin=margin)
            for ident in sorted(sources)]


def _sorted(times: list[float], lines: list[str]) -> tuple[list[float], list[str]]:
    order = sorted(range(len(times)), key=times.__getitem__)
    return [times[i] for i in order], [lines[i] for i in order]


def _service_logs(logs: Path) -> list[Source]:
    found = []
    for service in SERVICE_DIRS:
        directory = logs / "var" / "log" / service
        if not _beneath(logs, directory / "x.log"):
            continue
        for path in sorted(directory.iterdir()):
            if not path.name.endswith(".log") or path.is_symlink():
                continue
            lines = _read_lines(path)
            if lines:
                times, kept = _stamped(lines, _service_stamp)
                if times:
                    found.append(Source(f"{service}/{path.name}", times, kept))
    return found


@dataclass(frozen=True)
class GuestLogs:
    sources: tuple[Source, ...]

    def __bool__(self) -> bool:
        return bool(self.sources)

    def excerpt(self, start: datetime, end: datetime | None) -> Excerpt:
        found = []
        for source in self.sources:
            lines = source.between(_epoch(start), None if end is None else _epoch(end))
            if len(lines) > LINES:
                left_out = len(lines) - LINES
                lines = [*lines[:LINES // 2], f"[… {left_out} lines left out …]",
                         *lines[-(LINES // 2):]]
            if lines:
                found.append((source.name, tuple(lines)))
        return Excerpt(start, end, tuple(found))


def read_guest_logs(run_dir: Path) -> GuestLogs:
    """The stamped lines of a run directory's guest-logs/ (none if there is none)."""
    logs = run_dir / LOGS
    if logs.is_symlink() or not logs.is_dir():
        return GuestLogs(())
    return GuestLogs((*_journal(logs), *_service_logs(logs)))


def excerpts(records: Iterable[TestRecord], run_dir: Path | None) -> dict[str, Excerpt]:
    """The log lines of each failed, errored, unfinished or flaky test, by test id.

    A test that never finished (its guest or worker died) gets everything
    from its start on, of which LINES are shown.
    """
    wanted = [r for r in records if (r.status in FAILING or r.status == FLAKY)
              and r.start is not None]
    if not wanted or run_dir is None:
        return {}
    logs = read_guest_logs(run_dir)
    if not logs:
        return {}
    found = {}
    for record in wanted:
        assert record.start is not None
        excerpt = logs.excerpt(record.start, record.end)
        if excerpt:
            found[record.id] = excerpt
    return found


def excerpt_texts(found: Mapping[str, Excerpt]) -> dict[str, str]:
    return {test: excerpt.text() for test, excerpt in found.items()}
