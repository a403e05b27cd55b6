#!/usr/bin/python3
"""Benchmark: report.html of a 2,000+ test stream with worker lanes, in headless Chromium.

Generates bench_results' tempest-like tree, runs it with stestr's parallel workers
(a real stream, each test tagged worker-N), writes the reports (process_run), then:
- report.html's size (target: under 3 MB);
- `chromium --headless --dump-dom report.html`, a process each, median of --repeat,
  beside the same for an empty page (Chromium's own start); target: under 2 s;
- `results html` and `results junit` against subunit2junitxml, processes taking turns,
  median of --repeat; target: at most 1.2x.

    /usr/bin/python3 tests/bench/bench_report.py [--tests 2059] [--repeat 5] [--stream FILE]

Measured 2026-12-02 on the 2-core build host while two TCG guests ran tempest (so wall
times are inflated and noisy; the CPU times are steadier). --tests 2059 makes 2,100 tests
(whole classes of 20), a 0.60 MB stream, 2 worker lanes:
- report.html 0.73 MB (0.38 MB before the time line and the lanes);
- chromium --dump-dom: report.html median 6.74 s wall, 1.10 s CPU; an empty page 4.52 s
  wall, 0.80 s CPU: the page itself costs about 2.2 s wall, 0.3 s CPU here; the page
  before the lanes took as long within the noise (3 runs each, 4.4-4.8 s against 3.6-6.0 s);
- subunit2junitxml median 1.93 s wall, 0.54 s CPU; results junit 3.66 s wall, 0.69 s CPU
  (1.28x CPU); results html 3.15 s wall, 0.81 s CPU (1.52x CPU). The same commands of the
  tree before these reports, taking turns with them: junit 0.67 s CPU, html 0.78 s CPU. Of
  results html's CPU, reading the stream is 0.37 s, importing and compiling the template
  0.11 s, rendering 0.09 s.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "ci"))
sys.path.insert(0, str(TOP / "tests" / "bench"))

from bench_results import make_tree, median_times  # noqa: E402

from tempest_live_ci.results import process_run  # noqa: E402
from tempest_live_ci.results.lanes import lanes  # noqa: E402


def chromium(page: Path, profile: Path) -> None:
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--disable-component-update",
                    "--no-first-run", f"--user-data-dir={profile}", "--dump-dom",
                    page.as_uri()], capture_output=True, check=True, timeout=300)


def tool(*args: str) -> None:
    subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), "results", *args],
                   capture_output=True, check=True)


def subunit2junitxml(path: Path) -> None:
    with path.open("rb") as f:
        subprocess.run(["subunit2junitxml"], stdin=f, capture_output=True, check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=2059)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--stream", type=Path)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-report-") as tmp:
        root = Path(tmp)
        if args.stream:
            path = args.stream
        else:
            tree = root / "tree"
            tree.mkdir()
            count = make_tree(tree, args.tests)
            subprocess.run(["stestr", "init"], cwd=tree, check=True, capture_output=True)
            path = root / "tempest.subunit"
            path.write_bytes(subprocess.run(["stestr", "run", "--subunit"], cwd=tree,
                                            capture_output=True).stdout)
            print(f"tests generated: {count}")
        out = root / "out"
        result = process_run(path, out, {"job": "bench"})
        found = lanes(result.run.records)
        page = out / "report.html"
        print(f"stream {path.stat().st_size / 1e6:.2f} MB, {len(result.run.records)} tests, "
              f"{len(found.lanes)} worker lanes; report.html {page.stat().st_size / 1e6:.2f} MB")
        blank = root / "blank.html"
        blank.write_text("<!DOCTYPE html><title>blank</title>")
        profile = root / "profile"
        times = median_times({"chromium report.html": lambda: chromium(page, profile),
                              "chromium empty page": lambda: chromium(blank, profile)},
                             args.repeat)
        for name, (wall, cpu) in times.items():
            print(f"{name}: median {wall:.2f}s (CPU {cpu:.2f}s) of {args.repeat}")
        bare = root / "bare.subunit"
        shutil.copyfile(path, bare)
        times = median_times({
            "subunit2junitxml": lambda: subunit2junitxml(bare),
            "results junit": lambda: tool("junit", str(bare), "-o", str(root / "j.xml")),
            "results html": lambda: tool("html", str(bare), "-o", str(root / "r.html")),
        }, args.repeat)
        theirs = times["subunit2junitxml"][0]
        for name, (wall, cpu) in times.items():
            print(f"{name} (a process): median {wall:.3f}s (CPU {cpu:.3f}s) of {args.repeat}: "
                  f"{wall / theirs:.2f}x")


if __name__ == "__main__":
    main()
