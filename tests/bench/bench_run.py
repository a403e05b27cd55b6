#!/usr/bin/python3
"""Whole runs of a job: per stage and per in-guest step, preinstalled image vs `preinstall: false`.

    tests/bench/bench_run.py [JOB] [--repeat 3] [--modes preinstalled,guest]
    tests/bench/bench_run.py --summaries RUN_DIR|summary.json ...

Each run is `tempest-live-ci run` as a user runs it (a fresh output
directory, the image from the cache after the first build). Prints, per mode,
the median seconds of every stage (image, testbed, vm, prepare, install,
configure, tempest, ...), of every in-guest step and of its parts (apt-get
update, keystone-manage, keystone answers, discover-tempest-config), the
test counts, the guest's memory peak (MiB), and the ratio
install(preinstalled) / install(guest). Run as root.

With --summaries it runs nothing: the same medians from runs already made
(output directories or their summary.json, e.g. a job's runs in the results
store), grouped by job, for profiles whose runs take too long to repeat here.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

import yaml

TOP = Path(__file__).resolve().parents[2]


def one_run(job: Path, output: Path) -> dict[str, object]:
    result = subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), "run", str(job),
                             "--output", str(output)], capture_output=True, text=True)
    summary_path = output / "summary.json"
    if not summary_path.is_file():
        raise SystemExit(f"run exited {result.returncode} without a summary:\n"
                         f"{result.stderr[-3000:]}")
    summary: dict[str, object] = json.loads(summary_path.read_text())
    summary["_exit"] = result.returncode
    return summary


def flat_times(summary: dict[str, object]) -> dict[str, float]:
    times = {f"stage {k}": float(v) for k, v in dict(summary.get("stages", {})).items()}  # type: ignore[call-overload]
    metadata = dict(summary.get("metadata", {}))  # type: ignore[call-overload]
    for step, data in dict(metadata.get("steps", {})).items():
        times[f"step {step}"] = float(data["seconds"])
        for part, seconds in data.get("parts", {}).items():
            times[f"  {step}: {part}"] = float(seconds)
    if "guest_memory_peak_mib" in metadata:
        # Not seconds: the most RAM the guest used (MiB), its squashfs included.
        times["guest memory peak, MiB"] = float(metadata["guest_memory_peak_mib"])
    return times


def print_medians(title: str, summaries: list[dict[str, object]]) -> dict[str, float]:
    samples: dict[str, list[float]] = defaultdict(list)
    for summary in summaries:
        for key, value in flat_times(summary).items():
            samples[key].append(value)
    medians = {key: statistics.median(values) for key, values in samples.items()}
    print(f"\n{title}: medians of {len(summaries)} run(s), seconds (memory in MiB)")
    for key, value in medians.items():
        print(f"  {key:58} {value:8.1f}")
    print(flush=True)
    return medians


def from_summaries(paths: list[Path]) -> int:
    by_job: dict[str, list[dict[str, object]]] = defaultdict(list)
    for path in paths:
        summary_path = path / "summary.json" if path.is_dir() else path
        summary: dict[str, object] = json.loads(summary_path.read_text())
        metadata = dict(summary.get("metadata", {}))  # type: ignore[call-overload]
        counts = dict(summary.get("counts", {}))  # type: ignore[call-overload]
        # A run stopped before its results has no metadata: the job is at the top.
        job = metadata.get("job") or summary.get("job")
        print(f"{summary_path}: job {job}, exit {summary.get('exit_code')}, "
              f"{counts.get('total')} tests, {counts.get('passed')} passed")
        by_job[f"{job} (profile {metadata.get('profile', '?')})"].append(summary)
    for job, summaries in by_job.items():
        print_medians(job, summaries)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", nargs="?", default=str(TOP / "jobs" / "smoke-trixie.yaml"))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--modes", default="preinstalled,guest")
    parser.add_argument("--output", type=Path, default=Path("/var/tmp/tlc-bench-run"))
    parser.add_argument("--summaries", type=Path, nargs="+",
                        help="medians of these runs' summaries instead of new runs")
    args = parser.parse_args()
    if args.summaries:
        return from_summaries(args.summaries)
    base = Path(args.job).read_text()
    medians: dict[str, dict[str, float]] = {}
    for mode in args.modes.split(","):
        job_dir = Path(tempfile.mkdtemp(prefix="tlc-bench-job-"))
        job = job_dir / f"bench-{mode}.yaml"
        # The same job, with the profile installed at build time or in the guest.
        data = yaml.safe_load(base) or {}
        data.setdefault("image", {})["preinstall"] = mode == "preinstalled"
        job.write_text(yaml.safe_dump(data))
        summaries = []
        for i in range(args.repeat):
            summary = one_run(job, args.output / f"{mode}-{i}")
            counts = dict(summary.get("counts", {}))  # type: ignore[call-overload]
            print(f"{mode} #{i + 1}: exit {summary['_exit']}, {counts.get('total')} tests, "
                  f"{counts.get('passed')} passed, total "
                  f"{dict(summary['stages'])['total']:.0f} s", flush=True)  # type: ignore[call-overload]
            summaries.append(summary)
        medians[mode] = print_medians(mode, summaries)
    if {"preinstalled", "guest"} <= set(medians):
        ratio = medians["preinstalled"]["stage install"] / medians["guest"]["stage install"]
        print(f"install step, preinstalled / in the guest: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
