#!/usr/bin/python3
"""Benchmark: isolated testbed setup and teardown, `host setup` of a persistent
testbed in a host that has a default route but no name server it can reach (a
namespace of the benchmark's own standing in for it), and an iPXE network boot
of a tiny guest (stock Debian kernel + busybox initramfs) under TCG.

Prints medians of several runs; run as root:
    tests/bench/bench_testbed.py [--setups N] [--boots N] [--tool bin/tempest-live-ci]
(--tool: the CLI whose `host setup` is timed, e.g. another checkout's, to compare.)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(TOP / "ci"), str(TOP)]

from tests.guestkit import busybox_initramfs, stock_kernel  # noqa: E402

from tempest_live_ci import proc  # noqa: E402
from tempest_live_ci.testbed.config import TestbedConfig, new_run_id  # noqa: E402
from tempest_live_ci.testbed.lifecycle import create_testbed, teardown_testbed  # noqa: E402
from tempest_live_ci.vm.bootfiles import publish_boot_files  # noqa: E402

MAC = "52:54:00:7e:57:42"


def time_setup_teardown() -> tuple[float, float]:
    config = TestbedConfig(name=new_run_id(), apt_proxy=False)
    start = time.monotonic()
    create_testbed(config)
    up = time.monotonic() - start
    start = time.monotonic()
    teardown_testbed(config.name, quiet=True)
    return up, time.monotonic() - start


def time_host_setup(tool: Path, work: Path) -> float:
    """`host setup --no-apt-proxy` in a namespace whose default route leads nowhere."""
    ns = "tlcb-" + new_run_id()[4:10]
    proc.run(["ip", "netns", "add", ns])
    try:
        for argv in (["link", "set", "lo", "up"],
                     ["link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p"],
                     ["link", "set", "uplink0", "up"],
                     ["addr", "add", "10.255.0.2/24", "dev", "uplink0"],
                     ["route", "add", "default", "via", "10.255.0.1"]):
            proc.run(["ip", "-n", ns, *argv])
        env = {**os.environ, "TEMPEST_LIVE_CI_STATE_DIR": str(work / "host-state")}
        cli = ["ip", "netns", "exec", ns, sys.executable, str(tool)]
        start = time.monotonic()
        subprocess.run([*cli, "host", "setup", "--no-apt-proxy"], env=env, check=True,
                       capture_output=True)
        elapsed = time.monotonic() - start
        subprocess.run([*cli, "host", "teardown"], env=env, check=True, capture_output=True)
        return elapsed
    finally:
        for pid in proc.run(["ip", "netns", "pids", ns], capture=True, check=False).stdout.split():
            subprocess.run(["kill", "-9", pid], check=False)
        proc.run(["ip", "netns", "delete", ns], check=False)


def time_network_boot(work: Path) -> float:
    kernel = stock_kernel()
    initrd = busybox_initramfs(work / "initrd.img", "echo BENCH-MARKER > /dev/console")
    config = TestbedConfig(name=new_run_id(), apt_proxy=False, guest_mac=MAC)
    testbed = create_testbed(config)
    try:
        publish_boot_files(testbed, vmlinuz=kernel, initrd=initrd, squashfs=None,
                           cmdline="console=ttyS0 quiet panic=-1")
        console = work / "console.log"
        console.unlink(missing_ok=True)
        start = time.monotonic()
        with proc.spawn(
            ["qemu-system-x86_64", "-machine", "q35", "-accel", "tcg", "-cpu", "max", "-m", "512",
             "-display", "none", "-no-reboot", "-serial", f"file:{console}", "-monitor", "none",
             "-netdev", f"tap,id=n0,ifname={testbed.tap},script=no,downscript=no",
             "-device", f"virtio-net-pci,netdev=n0,mac={MAC}", "-boot", "n"],
            netns=testbed.netns, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        ) as qemu:
            qemu.wait(timeout=300)
        elapsed = time.monotonic() - start
        if "BENCH-MARKER" not in console.read_text(errors="replace"):
            raise SystemExit("the guest did not print its marker")
        return elapsed
    finally:
        teardown_testbed(config.name, quiet=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--setups", type=int, default=7)
    parser.add_argument("--boots", type=int, default=3)
    parser.add_argument("--tool", type=Path, default=TOP / "bin" / "tempest-live-ci")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tlc-bench-", dir="/var/tmp") as tmp:
        work = Path(tmp)
        work.chmod(0o755)
        os.environ["TEMPEST_LIVE_CI_STATE_DIR"] = str(work / "state")
        times = [time_setup_teardown() for _ in range(args.setups)]
        print(f"isolated testbed setup:    median {statistics.median(t[0] for t in times):.3f} s"
              f" (n={args.setups})")
        print(f"isolated testbed teardown: median {statistics.median(t[1] for t in times):.3f} s")
        hosts = [time_host_setup(args.tool, work) for _ in range(args.setups)]
        print(f"host setup (persistent, no reachable name server): median "
              f"{statistics.median(hosts):.2f} s (n={args.setups}, {args.tool})")
        boots = [time_network_boot(work) for _ in range(args.boots)]
        if boots:
            print(f"iPXE network boot to marker + power-off (TCG): median "
                  f"{statistics.median(boots):.1f} s (n={args.boots}, "
                  f"{', '.join(f'{b:.1f}' for b in boots)})")


if __name__ == "__main__":
    main()
