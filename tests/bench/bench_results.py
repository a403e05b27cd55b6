#!/usr/bin/python3
"""Benchmark: summary + JUnit + HTML of a 2,000+ test stream, next to subunit2junitxml alone.

Generates a tempest-like tree (services × modules × classes × tests; some fail,
some skip), runs stestr once to get a stream, then times process_run() (all
three reports) and `subunit2junitxml` on the same stream, median of 5 each.

    /usr/bin/python3 tests/bench/bench_results.py [--tests 2400] [--repeat 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
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


def median_time(action, repeat: int) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2400)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-results-") as tmp:
        root = Path(tmp)
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

        out = root / "out"
        result = process_run(path, out, {"job": "bench"})
        print(f"counts: {result.summary['counts']}")
        ours = median_time(lambda: process_run(path, out, {"job": "bench"}), args.repeat)
        sizes = {p.name: p.stat().st_size for p in sorted(out.iterdir())}

        def reference() -> None:
            with path.open("rb") as f:
                subprocess.run(["subunit2junitxml"], stdin=f, stdout=subprocess.DEVNULL,
                               check=False)

        theirs = median_time(reference, args.repeat)

        def our_junit_process() -> None:
            subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), "results",
                            "junit", str(path)], stdout=subprocess.DEVNULL, check=False)

        ours_junit = median_time(our_junit_process, args.repeat)
        print(f"summary.json + junit.xml + report.html (process_run): "
              f"median {ours:.3f}s of {args.repeat}")
        print(f"subunit2junitxml alone (a process, includes interpreter start): "
              f"median {theirs:.3f}s of {args.repeat}")
        print(f"tempest-live-ci results junit (a process, same comparison): "
              f"median {ours_junit:.3f}s of {args.repeat}")
        print("output sizes: " + ", ".join(f"{k} {v / 1e3:.0f} kB" for k, v in sizes.items()))


if __name__ == "__main__":
    main()
