#!/usr/bin/python3
"""Image build times (cold, warm, cache hit) and squashfs size/decompression by compression.

    tests/bench/bench_image.py [--warm-runs 2] [--hit-runs 5] [--compressions zstd,xz,lz4]

Every build runs the real CLI (`tempest-live-ci image build`) in a fresh cache
directory of its own under /var/tmp:
  cold       empty apt cache, no bootstrap cache, no image
  warm-apt   the apt cache of the cold build, no bootstrap cache, no image
  warm       apt cache and live-build's bootstrap stage cache, no image
  hit        the image is in the store
Then one warm build per compression: squashfs size and the median time to
unsquash it into a tmpfs (/dev/shm). Prints medians; run as root.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(TOP / "ci"))

from tempest_live_ci.testbed.aptproxy import answers_as_apt_cacher_ng  # noqa: E402


def build(cache: Path, state: Path, *args: str) -> tuple[float, Path]:
    env = {**os.environ, "TEMPEST_LIVE_CI_CACHE_DIR": str(cache),
           "TEMPEST_LIVE_CI_STATE_DIR": str(state)}
    started = time.monotonic()
    result = subprocess.run([sys.executable, str(TOP / "bin" / "tempest-live-ci"), "image",
                             "build", *args], capture_output=True, text=True, env=env)
    elapsed = time.monotonic() - started
    if result.returncode != 0:
        sys.exit(f"image build {' '.join(args)} failed:\n{result.stderr[-3000:]}")
    return elapsed, Path(result.stdout.strip())


def unsquash_seconds(squashfs: Path, runs: int) -> float:
    times = []
    for _ in range(runs):
        target = Path(tempfile.mkdtemp(dir="/dev/shm")) / "root"
        started = time.monotonic()
        subprocess.run(["unsquashfs", "-q", "-n", "-d", target, squashfs], check=True,
                       stdout=subprocess.DEVNULL)
        times.append(time.monotonic() - started)
        shutil.rmtree(target.parent)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warm-runs", type=int, default=2)
    parser.add_argument("--hit-runs", type=int, default=5)
    parser.add_argument("--unsquash-runs", type=int, default=3)
    parser.add_argument("--compressions", default="zstd,xz,lz4")
    parser.add_argument("--keep", action="store_true", help="keep the bench cache directory")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench-image-", dir="/var/tmp"))
    cache, state = work / "cache", work / "state"
    results: dict[str, object] = {}
    try:
        # A proxy already running (another run's) would make the "cold" build warm.
        shared_proxy = answers_as_apt_cacher_ng()
        cold_args = ("--apt-proxy", "none") if shared_proxy else ()
        cold, image_dir = build(cache, state, *cold_args)
        results["cold_s"] = round(cold, 1)
        results["cold_through"] = "direct (a shared apt-cacher-ng was running)" \
            if shared_proxy else "private apt-cacher-ng, empty cache"
        if shared_proxy:
            # Fill the shared proxy with this image's packages for the warm runs.
            build(cache, state, "--rebuild")
        shutil.rmtree(image_dir)

        bootstrap_caches = cache / "live-build"
        moved = work / "bootstrap-cache-aside"
        shutil.move(bootstrap_caches, moved)
        warm_apt, image_dir = build(cache, state)
        results["warm_apt_only_s"] = round(warm_apt, 1)
        shutil.rmtree(image_dir)
        shutil.rmtree(bootstrap_caches, ignore_errors=True)
        shutil.move(moved, bootstrap_caches)

        warm_times = []
        for _ in range(args.warm_runs):
            elapsed, image_dir = build(cache, state)
            warm_times.append(elapsed)
            shutil.rmtree(image_dir)
        results["warm_s"] = round(statistics.median(warm_times), 1)
        results["warm_runs_s"] = [round(t, 1) for t in warm_times]
        results["warm_over_cold"] = round(results["warm_s"] / cold, 2)  # type: ignore[operator]

        sizes: dict[str, object] = {}
        for compression in args.compressions.split(","):
            elapsed, image_dir = build(cache, state, "--compression", compression)
            manifest = json.loads((image_dir / "manifest.json").read_text())
            sizes[compression] = {
                "build_s": round(elapsed, 1),
                "squashfs_mb": round(manifest["artifacts"]["filesystem.squashfs"]["size"] / 1e6, 1),
                "initrd_mb": round(manifest["artifacts"]["initrd.img"]["size"] / 1e6, 1),
                "vmlinuz_mb": round(manifest["artifacts"]["vmlinuz"]["size"] / 1e6, 1),
                "unsquash_to_tmpfs_s": round(
                    unsquash_seconds(image_dir / "filesystem.squashfs", args.unsquash_runs), 2),
                "packages": len(manifest["packages"]),
            }
            if compression == "zstd":
                hits = [build(cache, state)[0] for _ in range(args.hit_runs)]
                results["hit_s"] = round(statistics.median(hits), 2)
        results["by_compression"] = sizes
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    json.dump(results, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
