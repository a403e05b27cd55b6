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

import pytest
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
    from tempest_live_ci.image.cache import (
        ARTIFACTS,
        KERNEL_CMDLINE,
        MANIFEST,
        image_inputs,
        inputs_hash,
    )
    from tempest_live_ci.job import image_options, load_job

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
class Run:
    process: subprocess.Popen[str]
    flag: Path  # where the wrapper holding it writes its pid
    stderr: Path
    hang_pid: int | None = None  # the wrapper holding the run, once it does

    def log(self) -> str:
        return self.stderr.read_text()

    def wait_held(self, timeout: float = 120) -> int:
        """The wrapper's pid, once the run is held there; AssertionError if it ends first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.process.poll() is None:
            if self.flag.exists() and self.flag.read_text().strip():
                self.hang_pid = int(self.flag.read_text())
                return self.hang_pid
            time.sleep(0.05)
        raise AssertionError(f"the run was not held: exit {self.process.poll()}: {self.log()}")

    def kill(self) -> str:
        """SIGKILL the run and the wrapper holding it; returns what the run wrote on stderr."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        if self.hang_pid is None and self.flag.exists() and self.flag.read_text().strip():
            self.hang_pid = int(self.flag.read_text())
        if self.hang_pid is not None:
            proc.kill_pid(self.hang_pid, grace=1)
        return self.log()


def wrappers(directory: Path, hang_at: str) -> tuple[Path, Path]:
    """A directory of wrappers for PATH, and the flag file the chosen one writes."""
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
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


def start_run(dirs: Dirs, job: Path, output: Path, hang_at: str, *args: str,
              netns: str | None = None) -> Run:
    """`run JOB --output OUTPUT ARGS`, to be held by the `hang_at` wrapper ("qemu",
    "apt-cacher-ng", ...); its wrappers, flag and stderr go beside OUTPUT."""
    if hang_at == "qemu" and not os.access("/dev/kvm", os.R_OK | os.W_OK):
        # Without it the KVM probe asks qemu nothing: the run would go on to
        # libvirt (whose emulator is this wrapper too, refusing to run).
        pytest.skip("held at `qemu --version`, which the KVM probe runs only with /dev/kvm")
    where = output.with_name(output.name + ".test")
    where.mkdir(parents=True)
    bin_dir, flag = wrappers(where, hang_at)
    stderr = where / "stderr"
    with open(stderr, "w") as err:
        process = subprocess.Popen(
            cli("run", str(job), "--output", str(output), *args, netns=netns),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, text=True,
            env={**os.environ, **dirs.env(), "PATH": f"{bin_dir}:{os.environ['PATH']}"})
    return Run(process, flag, stderr)


@contextlib.contextmanager
def held_run(dirs: Dirs, job: Path, output: Path, hang_at: str, *args: str,
             netns: str | None = None) -> Iterator[Run]:
    """start_run(), once it is held; SIGKILLed when the block ends, if not before."""
    run = start_run(dirs, job, output, hang_at, *args, netns=netns)
    try:
        run.wait_held()
        yield run
    finally:
        run.kill()
