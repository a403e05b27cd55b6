#!/usr/bin/python3
"""Benchmark: `results junit` on streams shaped to make a results stage slow.

    ordinary     20,000 tests, one packet each: the yardstick
    listed       64,000 tests listed ("exists") under one class whose setUpClass
                 failed, none of them run (~2.2 MB)
    fixtures     16,000 classes, each with a failed setUpClass and one listed test
    stray        4 MiB of runner output outside any packet

Each stream is made with python-subunit's StreamResultToBytes, then
`tempest-live-ci results junit STREAM -o FILE` runs as a process, median of
--repeat runs. --top runs another checkout's bin/tempest-live-ci (e.g. an
older commit exported with `git archive`) for a before/after comparison.

    /usr/bin/python3 tests/bench/bench_hostile_results.py [--repeat 5] [--top DIR]
"""

from __future__ import annotations

import argparse
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from subunit import StreamResultToBytes

TOP = Path(__file__).resolve().parents[2]


def ordinary(out: StreamResultToBytes) -> None:
    for n in range(20_000):
        out.status(test_id=f"tempest.api.compute.test_s{n // 100}.T.test_{n}",
                   test_status="success")


def listed(out: StreamResultToBytes) -> None:
    cls = "tempest.scenario.test_big.BigTest"
    for n in range(64_000):
        out.status(test_id=f"{cls}.test_{n}", test_status="exists")
    out.status(test_id=f"setUpClass ({cls})", test_status="fail",
               file_name="traceback", file_bytes=b"RuntimeError: quota exceeded\n")


def fixtures(out: StreamResultToBytes) -> None:
    for n in range(16_000):
        out.status(test_id=f"tempest.api.c{n}.T.test_a", test_status="exists")
    for n in range(16_000):
        out.status(test_id=f"setUpClass (tempest.api.c{n}.T)", test_status="fail")


def stray(out: StreamResultToBytes) -> None:
    out.status(test_id="tempest.api.a.T.test_a", test_status="success")


SHAPES: dict[str, Callable[[StreamResultToBytes], None]] = {
    "ordinary": ordinary, "listed": listed, "fixtures": fixtures, "stray": stray}


def stream(shape: str) -> bytes:
    buffer = io.BytesIO()
    SHAPES[shape](StreamResultToBytes(buffer))
    if shape == "stray":
        return b"runner output\n" * (4 * 1024 * 1024 // 14) + buffer.getvalue()
    return buffer.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--top", type=Path, default=TOP, help="the checkout to run")
    parser.add_argument("--timeout", type=float, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for shape in SHAPES:
            path = Path(tmp) / f"{shape}.subunit"
            path.write_bytes(stream(shape))
            times = []
            for _ in range(args.repeat):
                start = time.monotonic()
                try:
                    subprocess.run([sys.executable, str(args.top / "bin" / "tempest-live-ci"),
                                    "results", "junit", str(path), "-o", f"{tmp}/junit.xml"],
                                   capture_output=True, timeout=args.timeout, check=False)
                except subprocess.TimeoutExpired:
                    times.append(float("inf"))
                    break
                times.append(time.monotonic() - start)
            print(f"{shape:<10} {path.stat().st_size / 1e6:6.1f} MB  median "
                  f"{statistics.median(times):7.2f} s  ({', '.join(f'{t:.2f}' for t in times)})")


if __name__ == "__main__":
    main()
