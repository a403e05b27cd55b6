#!/usr/bin/python3
"""Benchmark: `results junit` against subunit2junitxml on a 2,000+ test stream; all three reports.

Generates a tempest-like tree (services × modules × classes × tests; some fail,
some skip), runs stestr once to get a live stream (or takes --stream), then
times, median of --repeat runs each, alternating so that a busy machine
weighs on both alike:
- `subunit2junitxml < stream` and `tempest-live-ci results junit stream`, each
  a process (interpreter start included); target: ours <= 1.0x theirs;
- process_run() in this process (summary.json + junit.xml + report.html).
It also checks that both JUnit files count the same tests, failures + errors
and skips.

    /usr/bin/python3 tests/bench/bench_results.py [--tests 2059] [--repeat 15] [--stream FILE]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "ci"))

from tempest_live_ci.results import process_run  # noqa: E402

SERVICES = ("compute", "identity", "network", "image", "volume", "object_storage")


def make_tree(root: Path, total: int) -> int:
    """About `total` tests: 20 tests a class, 5 classes a module."""
    (root / ".stestr.conf").write_text("[DEFAULT]\ntest_path=./tempest\ntop_dir=./\n")
    count = 0
    module = 0
    while count < total:
        service = SERVICES[module % len(SERVICES)]
        package = root / "tempest" / "api" / service
        package.mkdir(parents=True, exist_ok=True)
        for directory in (root / "tempest", root / "tempest" / "api", package):
            (directory / "__init__.py").touch()
        lines = ["import unittest", ""]
        for c in range(5):
            lines += ["", f"class Bench{c}Test(unittest.TestCase):"]
            for t in range(20):
                n = count
                if n % 97 == 0:
                    body = f"self.fail('bench failure {n}: expected 200, got 500')"
                elif n % 13 == 0:
                    body = "self.skipTest('feature not enabled in this job')"
                else:
                    body = "pass"
                lines.append(f"    def test_{t:02d}_{n}(self):\n        {body}")
                count += 1
        (package / f"test_bench_{module:03d}.py").write_text("\n".join(lines) + "\n")
        module += 1
    return count


def median_time(action: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_times(actions: dict[str, Callable[[], object]],
                 repeat: int) -> dict[str, tuple[float, float]]:
    """Each action's median wall time and median CPU time of its processes, taking turns.

    The CPU time (user + system) varies less than the wall time on a busy machine.
    """
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in actions}
    for _ in range(repeat):
        for name, action in actions.items():
            cpu, start = _children_cpu(), time.perf_counter()
            action()
            times[name].append((time.perf_counter() - start, _children_cpu() - cpu))
    return {name: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
            for name, t in times.items()}


def junit_counts(xml: bytes) -> dict[str, int]:
    """tests, failures + errors and skips of a JUnit file (skips counted from the testcases)."""
    suite = ET.fromstring(xml)
    return {"tests": int(suite.get("tests") or 0),
            "failures+errors": int(suite.get("failures") or 0) + int(suite.get("errors") or 0),
            "skipped": sum(1 for _ in suite.iter("skipped"))}


def subunit2junitxml(path: Path) -> bytes:
    with path.open("rb") as f:
        return subprocess.run(["subunit2junitxml"], stdin=f, capture_output=True,
                              check=False).stdout


def results_junit(path: Path) -> bytes:
    return subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), "results",
                           "junit", str(path)], capture_output=True, check=True).stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2059)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--stream", type=Path, help="A recorded stream instead of a generated one.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-results-") as tmp:
        root = Path(tmp)
        if args.stream:
            path = args.stream
            print(f"stream: {path}, {path.stat().st_size / 1e6:.2f} MB")
        else:
            tree = root / "tree"
            tree.mkdir()
            count = make_tree(tree, args.tests)
            subprocess.run(["stestr", "init"], cwd=tree, check=True, capture_output=True)
            start = time.perf_counter()
            stream = subprocess.run(["stestr", "run", "--subunit"], cwd=tree,
                                    capture_output=True).stdout
            stestr_time = time.perf_counter() - start
            path = root / "tempest.subunit"
            path.write_bytes(stream)
            print(f"tests generated: {count}; stream: {len(stream) / 1e6:.2f} MB; "
                  f"stestr run: {stestr_time:.1f}s")

        theirs_counts = junit_counts(subunit2junitxml(path))
        ours_counts = junit_counts(results_junit(path))
        print(f"junit counts: subunit2junitxml {theirs_counts}, results junit {ours_counts}"
              + ("" if ours_counts == theirs_counts else "  <- DIFFERENT"))

        medians = median_times({"subunit2junitxml": lambda: subunit2junitxml(path),
                                "results junit": lambda: results_junit(path)}, args.repeat)
        (theirs, theirs_cpu), (ours_junit, ours_cpu) = (medians["subunit2junitxml"],
                                                        medians["results junit"])
        print(f"subunit2junitxml (a process, interpreter start included): "
              f"median {theirs:.3f}s, CPU {theirs_cpu:.3f}s, of {args.repeat}")
        print(f"tempest-live-ci results junit (a process, the same): "
              f"median {ours_junit:.3f}s, CPU {ours_cpu:.3f}s, of {args.repeat}: "
              f"{ours_junit / theirs:.2f}x (CPU {ours_cpu / theirs_cpu:.2f}x)")

        out = root / "out"
        result = process_run(path, out, {"job": "bench"})
        print(f"counts: {result.summary['counts']}")
        ours = median_time(lambda: process_run(path, out, {"job": "bench"}), args.repeat)
        sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}
        print(f"summary.json + junit.xml + report.html (process_run, in process): "
              f"median {ours:.3f}s of {args.repeat}")
        print("output sizes: " + ", ".join(f"{k} {v / 1e3:.0f} kB" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
