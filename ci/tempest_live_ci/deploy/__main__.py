"""python3 -m deploy STEP [ARG]: run one in-guest step; its result goes to steps/STEP.json.

Exit status 0 when the step did its work, 3 when it failed (the last line on
stderr says why, as "tempest-live-ci step STEP failed: ..."), 2 for bad usage.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import apt, candidates, configure, logs, running, tempest, util


def check() -> None:
    """What the guest is: the facts a report starts with (and the step protocol's smoke test)."""
    util.facts["kernel"] = platform.release()
    util.facts["python"] = platform.python_version()
    util.facts["vcpus"] = os.cpu_count() or 0
    with open("/proc/meminfo") as meminfo:
        util.facts["memory_kib"] = int(meminfo.readline().split()[1])
    util.say(f"kernel {util.facts['kernel']}, python {util.facts['python']}, "
             f"{util.facts['vcpus']} vCPUs, {util.facts['memory_kib'] // 1024} MiB")


STEPS: dict[str, Callable[..., None]] = {
    "check": check,
    "prepare": apt.prepare,
    "install": apt.install,
    "candidates": candidates.install_candidates,
    "configure": configure.configure,
    "tempest-conf": tempest.tempest_conf,
    "tempest": tempest.run_tempest,
    "collect": logs.collect,
    "stop": running.stop,
}
WITHOUT_PARAMS = ("check", "candidates", "collect", "stop")
# What is not on record as running (stop, which ends the one that is).
UNRECORDED = ("stop",)
FAILED = 3
SAMPLE_SECONDS = 1.0


def memory_used_mib() -> int:
    """What the guest's RAM holds now: MemTotal - MemAvailable (the squashfs in RAM included)."""
    fields = {}
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            key, _, value = line.partition(":")
            fields[key] = int(value.split()[0])
    return (fields["MemTotal"] - fields["MemAvailable"]) // 1024


class MemoryPeak:
    """The most memory in use while a step ran, sampled every SAMPLE_SECONDS in a thread."""

    def __init__(self) -> None:
        self.peak = memory_used_mib()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(SAMPLE_SECONDS):
            self.peak = max(self.peak, memory_used_mib())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return max(self.peak, memory_used_mib())


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STEPS:
        print(f"usage: python3 -m deploy {{{','.join(STEPS)}}} [ARG]", file=sys.stderr)
        return 2
    name, extra = argv[0], argv[1:]
    start = time.monotonic()
    status = "ok"
    error = None
    memory = MemoryPeak()
    try:
        # These read no params: check is the step protocol's smoke test, candidates
        # reads candidates.json, collect runs after a failure whatever it was.
        with contextlib.nullcontext() if name in UNRECORDED else running.on_record(name):
            STEPS[name](*(() if name in WITHOUT_PARAMS else (util.params(),)), *extra)
    except util.StepError as e:
        status, error = "failed", str(e)
    except Exception as e:
        traceback.print_exc()
        status, error = "failed", f"{type(e).__name__}: {e}"
    util.facts["memory_peak_mib"] = memory.stop()
    result: dict[str, Any] = {
        "step": name, "status": status, "seconds": round(time.monotonic() - start, 1),
        "parts": util.parts, "facts": util.facts, "error": error,
    }
    if name != "collect":
        util.write_file(util.STATE / "steps" / f"{name}.json", json.dumps(result, indent=1) + "\n")
    if error is not None:
        print(f"tempest-live-ci step {name} failed: {error}", file=sys.stderr, flush=True)
        return FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
