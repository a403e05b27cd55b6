"""The results store: siteconfig.results_dir()/<job>/<run-id>/, an index per job, `latest`."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tempest_live_ci import files
from tempest_live_ci.errors import UsageError
from tempest_live_ci.log import log
from tempest_live_ci.results.names import SUMMARY
from tempest_live_ci.results.summary import read_summary, run_fact
from tempest_live_ci.siteconfig import results_dir
from tempest_live_ci.terminal import printable

INDEX = "index.json"
LATEST = "latest"
HISTORY = "history.html"
# Names the store gives meanings of its own, beside the runs of a job.
RESERVED = frozenset({LATEST, INDEX, HISTORY})
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,127}")
# index.json lists every run of a job, a few hundred bytes each.
_INDEX_LIMIT = 64 * files.MiB


def valid_name(name: object) -> bool:
    return isinstance(name, str) and _NAME.fullmatch(name) is not None and name not in RESERVED


def _check_name(kind: str, name: str) -> str:
    if not valid_name(name):
        raise UsageError(f"invalid {kind} name: {files.quoted(name)}",
                         hint="letters, digits, '.', '_', '+' and '-' only, at most 128, "
                              f"not {', '.join(sorted(RESERVED))}")
    return name


def job_dir(job_name: str) -> Path:
    return results_dir() / _check_name("job", job_name)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Two runs of one job may finish at once: one index writer at a time.
    try:
        fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
                     | os.O_NONBLOCK, 0o644)
    except OSError as e:  # a link there: ELOOP
        raise UsageError(f"{directory / '.lock'}: cannot be opened: {e.strerror}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UsageError(f"{directory / '.lock'}: not a regular file")
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _text(value: object) -> bool:
    return isinstance(value, str)


def _names(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(c, str) for c in value)


_ENTRY_KEYS: dict[str, Callable[[object], bool]] = {
    "exit_code": _integer, "duration": _number, "date": _text, "stored": _text,
    "candidates": _names}


def _entry_problem(entry: object) -> str | None:
    """Why an index entry cannot be used, or None. Every key the store and `results history`
    read is checked: a bad one is skipped, never a crash of every later command."""
    if not isinstance(entry, dict):
        return f"{files.quoted(entry)} is not an object"
    for key in ("run_id", "path"):
        if (key in entry and not valid_name(entry[key])) or (key == "run_id" and key not in entry):
            return f"{key} {files.quoted(entry.get(key))} is not a run id"
    counts = entry.get("counts")
    if counts is not None and not (isinstance(counts, dict)
                                   and all(_integer(v) for v in counts.values())):
        return f"counts {files.quoted(counts)} is not an object of counts"
    for key, check in _ENTRY_KEYS.items():
        value = entry.get(key)
        if value is not None and not check(value):
            return f"{key} {files.quoted(value)} is not what an index entry holds there"
    return None


def read_index(job_name: str) -> list[dict[str, Any]]:
    """The job's index.json: its runs, oldest first. An entry that is not what the store
    writes is skipped, with one warning for the file."""
    path = job_dir(job_name) / INDEX
    if not files.exists(path):
        return []
    entries = files.read_json(path, limit=_INDEX_LIMIT)
    if not isinstance(entries, list):
        raise UsageError(f"{path}: not a JSON list of runs")
    good, bad = [], []
    for n, entry in enumerate(entries, 1):
        problem = _entry_problem(entry)
        if problem is None:
            good.append(entry)
        else:
            bad.append(f"entry {n}: {problem}")
    if bad:
        log.warning("%s: %d bad entr%s skipped (%s%s)", path, len(bad),
                    "y" if len(bad) == 1 else "ies", bad[0], ", ..." if len(bad) > 1 else "")
    return good


def _index_entry(run_id: str, run_dir: Path) -> dict[str, Any]:
    summary = read_summary(run_dir / SUMMARY)
    counts = summary.get("counts")
    duration = summary.get("duration")
    start = summary.get("start")
    code = summary.get("exit_code")
    return {
        "run_id": run_id,
        "date": start if isinstance(start, str) else datetime.now(UTC).isoformat(
            timespec="seconds"),
        "stored": datetime.now(UTC).isoformat(timespec="seconds"),
        "exit_code": code if _integer(code) else None,
        "counts": counts if isinstance(counts, dict) else {},
        "duration": duration if _number(duration) else None,
        "path": run_id,
        # The packages under test, if any: such a run is nobody's baseline.
        "candidates": sorted(str(c.get("package")) for c in summary.get("candidates") or []
                             if isinstance(c, dict)),
    }


def _run_id(output_dir: Path) -> str:
    summary = output_dir / SUMMARY
    run_id = run_fact(read_summary(summary), "run_id")
    if run_id is None:
        return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    if not valid_name(run_id):
        raise UsageError(f"{summary}: run_id {files.quoted(run_id)} is not a run id the store "
                         f"takes", hint="letters, digits, '.', '_', '+' and '-' only, at most "
                                        f"128, not {', '.join(sorted(RESERVED))}")
    return run_id


def _check_latest(latest: Path) -> None:
    if files.exists(latest) and not latest.is_symlink():
        raise UsageError(f"{latest}: not a link to the job's latest run",
                         hint="move it out of the results store")


def store_run(job_name: str, output_dir: Path) -> Path:
    """Copy a run's output directory into the store, index it, make it `latest`.

    The run id is the run_id of its summary.json (metadata, else top level), else the time. Returns
    the stored directory. Only regular files and directories are copied: a
    link, FIFO or device in the run directory is left out, in one warning.
    """
    if not output_dir.is_dir():
        raise UsageError(f"{output_dir}: not a directory")
    directory = job_dir(job_name)
    latest = directory / LATEST
    # What is refused is refused before the store changes (before its lock file).
    base = _run_id(output_dir)
    _check_latest(latest)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        _check_latest(latest)
        run_id = base
        n = 1
        while files.exists(directory / run_id) and (directory / run_id).resolve() != \
                output_dir.resolve():
            n += 1
            run_id = f"{base}.{n}"
        destination = directory / run_id
        if destination.resolve() != output_dir.resolve():
            skipped = files.copy_tree(output_dir, destination)
            if skipped:
                log.warning("not stored, not regular files: %s%s", ", ".join(skipped[:5]),
                            f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        entries = [e for e in read_index(job_name) if e.get("run_id") != run_id]
        entries.append(_index_entry(run_id, destination))
        files.write_text(directory / INDEX, json.dumps(entries, indent=2) + "\n")
        link = directory / f".{LATEST}.{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(run_id)
        os.replace(link, latest)
    return destination


# The exit codes of a run whose tests ran to their end: passed, or some failed.
_FINISHED = (0, 4)


def _tested(entry: dict[str, Any]) -> bool:
    """Did the stored run end with test results: counts, a finished stream, exit 0 or 4?

    A run interrupted or failed before tempest, or cut short while it ran
    (exit 8, 16, 130), is stored for its history but compares with nothing.
    """
    counts = entry.get("counts")
    return isinstance(counts, dict) and bool(counts.get("total")) \
        and entry.get("exit_code") in _FINISHED


def latest_run(job_name: str, *, without_candidates: bool = False) -> Path | None:
    """The job's most recently stored run: the default baseline of `results compare`.

    without_candidates: the newest that tested no candidate packages and
    ended with test results (_tested), the baseline of an upload check
    (results.baseline: latest).
    """
    directory = job_dir(job_name)
    link = directory / LATEST
    if link.is_symlink() and not without_candidates:
        # A run of this job, by its name: never a link out of the store.
        target = os.readlink(link)
        if valid_name(target) and (directory / target).is_dir() \
                and not (directory / target).is_symlink():
            return directory / target
    for entry in reversed(read_index(job_name)):
        if without_candidates and (entry.get("candidates") or not _tested(entry)):
            continue
        candidate = directory / str(entry.get("path", ""))
        if entry.get("path") and candidate.is_dir():
            return candidate
    return None


def format_history(job_name: str, entries: list[dict[str, Any]]) -> str:
    if not entries:
        return f"no stored runs for job {job_name}\n"
    lines = [f"{'run id':<24} {'date':<26} {'exit':>4} {'passed':>6} {'failed':>6} "
             f"{'error':>5} {'skip':>5} {'flaky':>5} {'time':>8}"]
    for e in entries:
        c = e.get("counts") or {}
        duration = e.get("duration")
        lines.append(
            f"{printable(e.get('run_id', '?')):<24} {printable(e.get('date') or '')[:25]:<26} "
            f"{e.get('exit_code', '?')!s:>4} {c.get('passed', 0):>6} {c.get('failed', 0):>6} "
            f"{c.get('error', 0):>5} {c.get('skipped', 0):>5} {c.get('flaky', 0):>5} "
            f"{(f'{duration:.0f}s' if isinstance(duration, int | float) else '?'):>8}"
        )
    return "\n".join(lines) + "\n"
