#!/usr/bin/python3
"""Benchmark: how long the command line takes to answer --help and a bash completion request.

Each is a fresh process of the checkout's bin/tempest-live-ci (interpreter
start included), timed several times; prints the medians, next to a bare
`python3 -c pass` for the interpreter's own share. Target: < 0.2 s each.

    /usr/bin/python3 tests/bench/bench_cli.py [--repeat 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
TLC = [sys.executable, str(TOP / "bin" / "tempest-live-ci")]

CASES = {
    "python3 -c pass": ([sys.executable, "-c", "pass"], {}),
    "tempest-live-ci --help": ([*TLC, "--help"], {}),
    "tempest-live-ci results --help": ([*TLC, "results", "--help"], {}),
    "tempest-live-ci vm boot --help": ([*TLC, "vm", "boot", "--help"], {}),
    "bash completion of 'tempest-live-ci '": (TLC, {
        "_TEMPEST_LIVE_CI_COMPLETE": "bash_complete",
        "COMP_WORDS": "tempest-live-ci ",
        "COMP_CWORD": "1",
    }),
}


def median_time(argv: list[str], env: dict[str, str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    for name, (argv, env) in CASES.items():
        # One run first: byte code compiled, files in the page cache.
        subprocess.run(argv, env={**os.environ, **env}, stdout=subprocess.DEVNULL, check=True)
        print(f"{name:40} median {median_time(argv, env, args.repeat):.3f} s (n={args.repeat})")


if __name__ == "__main__":
    main()
