"""`tempest-live-ci run` through the CLI, stopped before anything boots.

What cannot exist here is faked, and only that:

- the image: a real one is a live-build of many minutes. The store gets an
  entry under the hash the run computes for the job's image (its manifest,
  small placeholder files): the image stage is then a cache hit. Nothing
  ever reads the placeholders, because
- the run is held where the test wants it by a wrapper of a real command on
  PATH (tests/integration/testbed/test_journal.py's way): the wrapped command
  does its real job (or, for qemu, nothing at all), writes its pid to a flag
  file and hangs there until the test kills the run. `qemu-system-x86_64
  --version` is the first thing the VM stage runs (the KVM probe's cache
  key); the wrapper refuses every other qemu command, so no guest can boot
  even if a test goes wrong.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml

from tempest_live_ci import proc
from tests.conftest import TOP, Dirs

QEMU_WRAPPER = """#!/bin/sh
# qemu-system-x86_64 for a test that must never boot anything.
if [ "$1" = "--version" ]; then
    echo $$ > {flag}
    exec sleep 600
fi
echo "qemu wrapper: refusing to run qemu $*" >&2
exit 1
"""

# Runs the real command, then says so and hangs (a daemonizing command:
# apt-cacher-ng returns once its daemon is up).
HANG_AFTER = """#!/bin/sh
"{real}" "$@"
status=$?
echo $$ > {flag}
exec sleep 600
"""


def job_file(directory: Path, **testbed: object) -> Path:
    """A job that needs no archive lookup for its image, and little memory."""
    path = directory / "killed.yaml"
    path.write_text(yaml.safe_dump({
        "name": "killed",
        "testbed": testbed,
        "image": {"preinstall": False},
        "vm": {"memory": "512M", "vcpus": 1},
    }))
    return path


def fake_image(job: Path) -> Path:
    """A store entry the run takes for the job's image (see the module's docstring)."""
    from tempest_live_ci.config import load_job
    from tempest_live_ci.image.cache import (
        ARTIFACTS,
        KERNEL_CMDLINE,
        MANIFEST,
        image_inputs,
        inputs_hash,
    )
    from tempest_live_ci.job import image_options

    options = image_options(load_job(job))
    inputs = image_inputs(options)
    digest = inputs_hash(inputs)
    directory = options.store / digest
    directory.mkdir(parents=True)
    for name in ARTIFACTS:
        (directory / name).write_bytes(b"not an image: never booted\n")
    (directory / MANIFEST).write_text(json.dumps({
        "format": inputs["format"], "hash": digest, "inputs": inputs,
        "artifacts": {name: {"size": (directory / name).stat().st_size} for name in ARTIFACTS},
        "kernel_cmdline": KERNEL_CMDLINE, "ssh_key_generated": True,
        "ssh_private_key_relative": "id_ed25519", "ssh_private_key": "",
        "host_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINotARealKeyNotARealKeyNotARealKey00",
        "host_key_fingerprint": "SHA256:none",
    }))
    return directory


@dataclass
class HeldRun:
    process: subprocess.Popen[str]
    hang_pid: int  # the wrapper holding the run


def wrappers(directory: Path, hang_at: str) -> tuple[Path, Path]:
    """A directory of wrappers for PATH, and the flag file the chosen one writes."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(exist_ok=True)
    flag = directory / f"held-{hang_at}"
    qemu = bin_dir / "qemu-system-x86_64"
    qemu.write_text(QEMU_WRAPPER.format(flag=flag if hang_at == "qemu" else "/dev/null"))
    qemu.chmod(0o755)
    if hang_at != "qemu":
        real = proc.which(hang_at)
        assert real is not None, hang_at
        wrapper = bin_dir / hang_at
        wrapper.write_text(HANG_AFTER.format(real=real, flag=flag))
        wrapper.chmod(0o755)
    return bin_dir, flag


def cli(*args: str, netns: str | None = None) -> list[str]:
    argv = [sys.executable, str(TOP / "bin" / "tempest-live-ci"), *args]
    return ["ip", "netns", "exec", netns, *argv] if netns else argv


def env(dirs: Dirs, path: Path | None = None) -> dict[str, str]:
    extra = {"PATH": f"{path}:{os.environ['PATH']}"} if path else {}
    return {**os.environ, **dirs.env(), **extra}


@contextlib.contextmanager
def held_run(dirs: Dirs, job: Path, output: Path, hang_at: str, *args: str,
             netns: str | None = None) -> Iterator[HeldRun]:
    """`run JOB` started and held by the `hang_at` wrapper ("qemu", "apt-cacher-ng", ...);
    SIGKILLed (with the wrapper) when the block ends, if the block did not already."""
    bin_dir, flag = wrappers(dirs.top, hang_at)
    flag.unlink(missing_ok=True)
    run = subprocess.Popen(cli("run", str(job), "--output", str(output), *args, netns=netns),
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                           env=env(dirs, bin_dir))
    hang_pid = None
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and run.poll() is None:
            if flag.exists() and flag.read_text().strip():
                hang_pid = int(flag.read_text())
                break
            time.sleep(0.05)
        if hang_pid is None:
            run.kill()
            raise AssertionError(f"the run was not held at {hang_at}: exit {run.wait()}, "
                                 f"{run.communicate()[1]}")
        yield HeldRun(run, hang_pid)
    finally:
        if run.returncode is None:
            kill(run)
        if hang_pid is not None:
            proc.kill_pid(hang_pid, grace=1)


def kill(process: subprocess.Popen[str]) -> str:
    """SIGKILL; returns what it wrote on stderr."""
    if process.poll() is None:
        process.send_signal(signal.SIGKILL)
    try:
        return process.communicate(timeout=10)[1] or ""
    except subprocess.TimeoutExpired:
        return "(its stderr is held open by a process it left)"
