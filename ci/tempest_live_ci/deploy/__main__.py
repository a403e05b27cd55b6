"""python3 -m deploy STEP [ARG]: run one in-guest step; its result goes to steps/STEP.json.

Exit status 0 when the step did its work, 3 when it failed (the last line on
stderr says why, as "tempest-live-ci step STEP failed: ..."), 2 for bad usage.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from . import apt, candidates, configure, logs, tempest, util


def check(_: dict[str, Any]) -> None:
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
}
FAILED = 3


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in STEPS:
        print(f"usage: python3 -m deploy {{{','.join(STEPS)}}} [ARG]", file=sys.stderr)
        return 2
    name, extra = argv[0], argv[1:]
    start = time.monotonic()
    status = "ok"
    error = None
    try:
        STEPS[name](util.params(), *extra)
    except util.StepError as e:
        status, error = "failed", str(e)
    except Exception as e:
        traceback.print_exc()
        status, error = "failed", f"{type(e).__name__}: {e}"
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
