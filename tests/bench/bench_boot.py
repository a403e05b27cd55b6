#!/usr/bin/python3
"""Boot-to-SSH of one image: network boot (iPXE over HTTP) against direct kernel boot.

    tests/bench/bench_boot.py [--image latest] [--repeat 3] [--memory 4096]

Each boot gets a fresh isolated testbed. Prints, per mode, the median seconds
from domain start to each phase (DHCP, files fetched, SSH port, login) and
the ratio network/direct of the time to login. Run as root.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "ci"))

from tempest_live_ci.image.cache import resolve_image
from tempest_live_ci.image.model import images_dir
from tempest_live_ci.log import setup_logging
from tempest_live_ci.testbed.config import TestbedConfig, new_run_id
from tempest_live_ci.testbed.lifecycle import start_testbed
from tempest_live_ci.vm.boot import boot_vm
from tempest_live_ci.vm.config import VMConfig
from tempest_live_ci.vm.kvm import detect_accelerator

PHASES = ("dhcp", "boot.ipxe", "kernel", "initrd", "kernel-started", "squashfs", "ssh", "login")


def one_boot(image_ref: str, mode: str, memory: int, output: Path) -> dict[str, float]:
    image = resolve_image(images_dir(), image_ref)
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    with start_testbed(config) as testbed, boot_vm(
            testbed, image, output, VMConfig(memory_mib=memory, boot=mode)) as vm:
        return dict(vm.timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", default="latest")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--memory", type=int, default=4096)
    parser.add_argument("--output", type=Path, default=Path("/var/tmp/tlc-bench-boot"))
    args = parser.parse_args()
    setup_logging(False)
    image = resolve_image(images_dir(), args.image)
    accel = detect_accelerator(image.vmlinuz)
    print(f"image {image.hash}, accelerator {accel.kind}, {args.memory} MiB, "
          f"{args.repeat} boot(s) per mode", flush=True)
    results: dict[str, list[dict[str, float]]] = {"network": [], "direct": []}
    started = time.monotonic()
    for i in range(args.repeat):
        # Alternate the modes so drift on the host hits both alike.
        for mode in ("network", "direct"):
            timings = one_boot(args.image, mode, args.memory, args.output / f"{mode}-{i}")
            results[mode].append(timings)
            print(f"  {mode} #{i + 1}: login at {timings.get('login', float('nan')):.1f} s",
                  flush=True)
    print(f"\nmedian seconds since domain start ({time.monotonic() - started:.0f} s in all)")
    print(f"{'phase':16} {'network':>9} {'direct':>9}")
    medians: dict[str, dict[str, float]] = {}
    for mode, runs in results.items():
        medians[mode] = {p: statistics.median(r[p] for r in runs) for p in PHASES
                         if all(p in r for r in runs)}
    for phase in PHASES:
        cells = [f"{medians[m][phase]:9.1f}" if phase in medians[m] else f"{'-':>9}"
                 for m in ("network", "direct")]
        print(f"{phase:16} {cells[0]} {cells[1]}")
    net, direct = medians["network"].get("login"), medians["direct"].get("login")
    if net and direct:
        print(f"\nboot to SSH login: network {net:.1f} s, direct {direct:.1f} s, "
              f"ratio {net / direct:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
