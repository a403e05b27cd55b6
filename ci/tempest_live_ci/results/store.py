"""The results store: paths.results_dir()/<job>/<run-id>/, an index per job, `latest`."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tempest_live_ci import paths
from tempest_live_ci.errors import UsageError
from tempest_live_ci.results.run import SUMMARY, read_summary, run_fact

INDEX = "index.json"
LATEST = "latest"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


def _check_name(kind: str, name: str) -> str:
    if not _NAME.match(name) or name in (LATEST, INDEX):
        raise UsageError(f"invalid {kind} name: {name!r}",
                         hint="letters, digits, '.', '_', '+' and '-' only")
    return name


def job_dir(job_name: str) -> Path:
    return paths.results_dir() / _check_name("job", job_name)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    # Two runs of one job may finish at once: one index writer at a time.
    with (directory / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def read_index(job_name: str) -> list[dict[str, Any]]:
    path = job_dir(job_name) / INDEX
    if not path.is_file():
        return []
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except ValueError as e:
        raise UsageError(f"{path}: not JSON: {e}") from e
    return list(entries) if isinstance(entries, list) else []


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _index_entry(run_id: str, run_dir: Path) -> dict[str, Any]:
    summary = read_summary(run_dir / SUMMARY)
    return {
        "run_id": run_id,
        "date": summary.get("start") or datetime.now(UTC).isoformat(timespec="seconds"),
        "stored": datetime.now(UTC).isoformat(timespec="seconds"),
        "exit_code": summary.get("exit_code"),
        "counts": summary.get("counts", {}),
        "duration": summary.get("duration"),
        "path": run_id,
        # The packages under test, if any: such a run is nobody's baseline.
        "candidates": sorted(str(c.get("package")) for c in summary.get("candidates") or []
                             if isinstance(c, dict)),
    }


def _run_id(output_dir: Path) -> str:
    run_id = run_fact(read_summary(output_dir / SUMMARY), "run_id")
    if run_id is not None and _NAME.match(run_id):
        return run_id
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")


def store_run(job_name: str, output_dir: Path) -> Path:
    """Copy a run's output directory into the store, index it, make it `latest`.

    The run id is the run_id of its summary.json (metadata, else top level), else the time. Returns
    the stored directory.
    """
    if not output_dir.is_dir():
        raise UsageError(f"{output_dir}: not a directory")
    directory = job_dir(job_name)
    directory.mkdir(parents=True, exist_ok=True)
    with _locked(directory):
        run_id = base = _run_id(output_dir)
        n = 1
        while (directory / run_id).exists() and (directory / run_id).resolve() != \
                output_dir.resolve():
            n += 1
            run_id = f"{base}.{n}"
        destination = directory / run_id
        if destination.resolve() != output_dir.resolve():
            shutil.copytree(output_dir, destination, symlinks=True)
        entries = [e for e in read_index(job_name) if e.get("run_id") != run_id]
        entries.append(_index_entry(run_id, destination))
        _write_atomically(directory / INDEX, json.dumps(entries, indent=2) + "\n")
        link = directory / f".{LATEST}.{os.getpid()}"
        link.unlink(missing_ok=True)
        link.symlink_to(run_id)
        os.replace(link, directory / LATEST)
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
    if link.is_dir() and not without_candidates:
        return link.resolve()
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
            f"{e.get('run_id', '?'):<24} {str(e.get('date', ''))[:25]:<26} "
            f"{e.get('exit_code', '?')!s:>4} {c.get('passed', 0):>6} {c.get('failed', 0):>6} "
            f"{c.get('error', 0):>5} {c.get('skipped', 0):>5} {c.get('flaky', 0):>5} "
            f"{(f'{duration:.0f}s' if isinstance(duration, int | float) else '?'):>8}"
        )
    return "\n".join(lines) + "\n"
