"""Building the live image with Debian's live-build.

build_image() reads like the build: check the options, return the stored
image if its inputs did not change, else render the live-build configuration,
make the SSH keys, run `lb config` and `lb build` (through the apt proxy),
collect the artifacts, write the manifest and rename the image into place.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tempest_live_ci import __version__, paths, proc, registry, render
from tempest_live_ci.deploy.profiles import held_services
from tempest_live_ci.digest import sha256_file
from tempest_live_ci.errors import TestbedError, TLCError
from tempest_live_ci.image.archive import archive_versions
from tempest_live_ci.image.cache import (
    ARTIFACTS,
    KERNEL_CMDLINE,
    MANIFEST,
    SQUASHFS,
    SQUASHFS_MODE,
    image_inputs,
    inputs_hash,
    is_complete,
    live_build_files,
    live_build_version,
    load_image,
)
from tempest_live_ci.image.model import (
    APT_PROXY_AUTO,
    DEFAULT_MIRROR,
    Image,
    ImageOptions,
    validate,
)
from tempest_live_ci.log import log, step
from tempest_live_ci.testbed.aptproxy import start_apt_cacher_ng

HOST_KEY_COMMENT = "root@tempest-live-ci"
# live-build's own default apt options (functions/configuration.sh), and the
# option every apt-get of the bootstrap, chroot and binary stages then gets
# for an archive whose Release is past its Valid-Until (debootstrap does not
# look at Valid-Until).
LB_APT_OPTIONS = "--yes -o Acquire::Retries=5"
ACCEPT_EXPIRED_OPTION = "-o Acquire::Check-Valid-Until=false"
LOG_TAIL = 15


@dataclass(frozen=True)
class Mirrors:
    """Where live-build fetches from, and what the image's sources.list says."""

    build: str
    build_security: str
    http_proxy: str | None


def look_up_archive(options: ImageOptions) -> dict[str, str]:
    """What the archive offers today for the image's packages (image/archive.py).

    Also the run's first look at the archive, before anything is done on the
    host: a package it lacks, or a Release past its Valid-Until the job did
    not accept, is a UsageError. An image without a profile is not keyed on
    the archive: once stored, it needs no lookup ({}).
    """
    validate(options)
    if options.profile is None and not options.rebuild \
            and is_complete(options.store / inputs_hash(image_inputs(options))):
        # Not keyed on the archive, and already built: nothing to ask it.
        return {}
    # Without a profile only the archive itself is read (its Release): the
    # image is not keyed on its versions, and live-build reports a missing
    # extra package in its log.
    packages = options.all_packages if options.profile is not None else ()
    title = (f"Looking up what {options.suite} offers for profile {options.profile}"
             if options.profile else f"Reading the {options.suite} archive's Release")
    with _mirrors(options) as mirrors, step(title):
        archive = archive_versions(
            options.suite, mirrors.build, packages,
            security_mirror=mirrors.build_security if options.security else None,
            proxy=mirrors.http_proxy, check_valid_until=options.check_valid_until,
            shown_mirror=options.mirror)
        log.info("%d packages; %s", len(archive), ", ".join(
            f"{name} {archive[name]}" for name in options.all_packages if name in archive))
    return archive


def build_image(options: ImageOptions, archive: dict[str, str] | None = None) -> Image:
    """The image for these options: from the store if its inputs are unchanged, else built.

    archive: look_up_archive()'s answer when the caller already asked (a run
    does, in a stage of its own before the image); else it is looked up here. Raises
    UsageError for bad options (before anything is done) and TestbedError
    when live-build fails (its log is kept in the store).
    """
    validate(options)
    if archive is None:
        archive = look_up_archive(options)
    with contextlib.ExitStack() as stack:
        mirrors = None
        # The versions decide a preinstalled image; the others are as new as
        # their build (dist-upgraded from the bootstrap cache).
        inputs = image_inputs(options, archive if options.profile is not None else None)
        digest = inputs_hash(inputs)
        store = options.store
        final = store / digest
        if not options.rebuild and is_complete(final):
            log.info("image %s is up to date: %s", digest, final)
            return load_image(final)
        proc.require("lb", "debootstrap", "mksquashfs", "ssh-keygen")
        store.mkdir(parents=True, exist_ok=True)
        with _build_lock(store, digest):
            # Someone else may have built it while we waited for the lock.
            if not options.rebuild and is_complete(final):
                log.info("image %s was built meanwhile: %s", digest, final)
                return load_image(final)
            if mirrors is None:
                mirrors = stack.enter_context(_mirrors(options))
            with step(f"Building image {digest} ({options.suite}, {options.compression})"):
                image = _build(options, inputs, digest, final, mirrors)
    return image


@registry.kind("image-build")
@dataclass(kw_only=True)
class BuildDirectory(registry.Resource):
    """A build's working directory (live-build's chroot, its mounts and processes in it),
    or the image a finished build replaces, until it is gone."""

    replaced: bool = False

    def undo(self) -> None:
        directory = Path(self.name)
        stop_processes(processes_under(directory))
        unmount_under(directory)
        shutil.rmtree(directory, ignore_errors=True)

    def describe(self) -> str:
        return f"directory {self.name}"

    def why(self) -> str:
        return ("an image replaced by a build that is gone" if self.replaced
                else "an image build whose builder is gone")


@registry.kind("image-build-lock")
@dataclass(kw_only=True)
class BuildLock(registry.Resource):
    """The lock file of a build (_build_lock): removed once nobody holds it."""

    def undo(self) -> None:
        with contextlib.suppress(FileNotFoundError), open(self.name) as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # another builder's now: its own record removes it
            os.unlink(self.name)

    def describe(self) -> str:
        return f"lock file {self.name}"

    def why(self) -> str:
        return "a build lock nobody holds"


@contextlib.contextmanager
def _build_lock(store: Path, digest: str) -> Iterator[None]:
    """One build of an image at a time; a run that needs it meanwhile waits, then finds it.

    The file goes when its last holder lets go (BuildLock.undo; `cleanup` after
    a kill): a builder that opened the file just before and locked it just
    after would hold the lock of a file no longer there, and the next builder
    would lock a new one. So the lock counts only while it is the file of that name.
    """
    path = store / f".lock-{digest}"
    with registry.holding(BuildLock(name=str(path))):
        while True:
            with open(path, "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    current = os.stat(path).st_ino
                except FileNotFoundError:
                    current = None
                if current != os.fstat(lock.fileno()).st_ino:
                    continue  # removed (and maybe made anew) while we waited: lock that one
                try:
                    yield
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)
                return


def _build(options: ImageOptions, inputs: dict[str, Any], digest: str, final: Path,
           mirrors: Mirrors) -> Image:
    started = time.monotonic()
    with _work_directory(options.store, digest) as work:
        return _build_in(options, inputs, digest, final, mirrors, work, started)


@contextlib.contextmanager
def _work_directory(store: Path, digest: str) -> Iterator[Path]:
    """A build's working directory, recorded before it is made; removed when the block ends
    (its record too, once nothing of it is left)."""
    work = store / f".build-{digest}-{secrets.token_hex(4)}"
    build = registry.add(BuildDirectory(name=str(work)))
    try:
        work.mkdir(mode=0o700)
        yield work
    finally:
        _remove_work_dir(work)
        if not work.exists():
            registry.discard(build)


def _build_in(options: ImageOptions, inputs: dict[str, Any], digest: str, final: Path,
              mirrors: Mirrors, work: Path, started: float) -> Image:
    image_dir = work / "image"
    lb_dir = work / "lb"
    image_dir.mkdir()
    build_log = image_dir / "build.log"
    try:
        prepare_config(lb_dir, options, mirrors)
        ssh = make_ssh_keys(options, lb_dir, image_dir, final)
        bootstrap = _restore_bootstrap_cache(options, lb_dir)
        run_live_build(lb_dir, build_log, mirrors)
        _collect_artifacts(lb_dir, image_dir, build_log)
        if bootstrap is not None:
            _save_bootstrap_cache(lb_dir, bootstrap)
        manifest = _manifest(options, inputs, digest, lb_dir, image_dir, final, ssh,
                             time.monotonic() - started)
        (image_dir / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        _publish(image_dir, final)
    except BaseException as e:
        kept = _keep_failure_log(build_log, options.store / f"failed-{digest}")
        if isinstance(e, TLCError) and kept is not None:
            # The working directory and its log are about to go.
            e.hint = f"full log: {kept}"
        raise
    image = load_image(final)
    log.info("image %s: %s", digest, final)
    return image


@contextlib.contextmanager
def _mirrors(options: ImageOptions) -> Iterator[Mirrors]:
    mirror = options.mirror.rstrip("/") + "/"
    security = options.security_mirror.rstrip("/") + "/"
    if options.apt_proxy == APT_PROXY_AUTO and mirror == DEFAULT_MIRROR + "/":
        # apt-cacher-ng maps these path prefixes to Debian's archive: the
        # proxy URL itself is the mirror, and the cache fills as we build.
        with start_apt_cacher_ng() as proxy:
            yield Mirrors(f"{proxy.url}/debian/", f"{proxy.url}/debian-security/", None)
        return
    if options.apt_proxy == APT_PROXY_AUTO:
        log.info("mirror %s is not Debian's main archive: not using the apt proxy", mirror)
        yield Mirrors(mirror, security, None)
    elif options.apt_proxy is None:
        yield Mirrors(mirror, security, None)
    else:
        yield Mirrors(mirror, security, options.apt_proxy)


def template_context(options: ImageOptions, mirrors: Mirrors) -> dict[str, Any]:
    """What the live-build/ templates are rendered with."""
    return {
        "suite": options.suite,
        "mirror": options.mirror.rstrip("/") + "/",
        "security": options.security,
        "security_mirror": options.security_mirror.rstrip("/") + "/",
        "build_mirror": mirrors.build,
        "build_security_mirror": mirrors.build_security,
        "http_proxy": mirrors.http_proxy,
        "compression": options.compression,
        "compression_level": options.effective_compression_level,
        "kernel_cmdline": KERNEL_CMDLINE,
        "apt_options": None if options.check_valid_until
        else f"{LB_APT_OPTIONS} {ACCEPT_EXPIRED_OPTION}",
        "extra_packages": list(options.all_packages),
        "held_services": list(held_services(options.profile)) if options.profile else [],
    }


def prepare_config(lb_dir: Path, options: ImageOptions, mirrors: Mirrors) -> None:
    """Copy live-build/ into the working directory, rendering the *.j2 templates.

    Our hooks are in place before `lb config` runs, so that it does not link
    live-build's hooks of the same names (8050 would remove our host key).
    """
    context = template_context(options, mirrors)
    for name, path in live_build_files():
        destination = lb_dir / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if name.endswith(".j2"):
            destination = destination.with_suffix("")
            destination.write_text(render.render(f"live-build/{name}", **context))
            destination.chmod(0o755 if path.stat().st_mode & 0o111 or name.startswith("auto/")
                              else 0o644)
        else:
            shutil.copy2(path, destination)


@dataclass(frozen=True)
class SSHKeys:
    private_key: Path  # where the runner finds it once the image is in place
    public_key: str
    generated: bool
    host_key: str
    host_key_fingerprint: str


def _keygen(path: Path, comment: str) -> None:
    proc.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
             capture=True)


def fingerprint(public_key_file: Path) -> str:
    """"SHA256:..." as `ssh-keygen -lf` prints it."""
    out = proc.run(["ssh-keygen", "-l", "-f", public_key_file], capture=True).stdout
    return out.split()[1]


def make_ssh_keys(options: ImageOptions, lb_dir: Path, image_dir: Path, final: Path) -> SSHKeys:
    """Put root's authorized key and a fresh host key into the chroot includes."""
    includes = lb_dir / "config" / "includes.chroot_after_packages"
    if options.ssh_key is not None:
        assert options.ssh_public_key is not None
        private_key = options.ssh_key.resolve()
        public_key = options.ssh_public_key.read_text().strip()
        generated = False
    else:
        (image_dir / "ssh").mkdir(mode=0o700)
        _keygen(image_dir / "ssh" / "id_ed25519", "tempest-live-ci")
        private_key = final / "ssh" / "id_ed25519"
        public_key = (image_dir / "ssh" / "id_ed25519.pub").read_text().strip()
        generated = True
    root_ssh = includes / "root" / ".ssh"
    root_ssh.mkdir(parents=True, exist_ok=True)
    # cpio copies these modes onto the chroot's /root and /root/.ssh.
    (includes / "root").chmod(0o700)
    root_ssh.chmod(0o700)
    (root_ssh / "authorized_keys").write_text(public_key + "\n")
    (root_ssh / "authorized_keys").chmod(0o600)

    ssh_etc = includes / "etc" / "ssh"
    ssh_etc.mkdir(parents=True, exist_ok=True)
    host_key = ssh_etc / "ssh_host_ed25519_key"
    _keygen(host_key, HOST_KEY_COMMENT)
    host_key.chmod(0o600)
    host_public = Path(f"{host_key}.pub")
    return SSHKeys(private_key, public_key, generated,
                   host_public.read_text().strip(), fingerprint(host_public))


def _bootstrap_cache_dir(options: ImageOptions) -> Path:
    key = hashlib.sha256(json.dumps(
        [options.suite, options.mirror.rstrip("/"), live_build_version()]
    ).encode()).hexdigest()[:16]
    return paths.cache_dir() / "live-build" / f"bootstrap-{options.suite}-{key}"


def _restore_bootstrap_cache(options: ImageOptions, lb_dir: Path) -> Path | None:
    """Seed live-build's bootstrap stage cache (the debootstrapped chroot) from the shared one.

    live-build copies it into the chroot and then runs apt-get dist-upgrade,
    so an old cache yields current packages. Returns where to save it after a
    successful build, or None when there is nothing to save.
    """
    shared = _bootstrap_cache_dir(options)
    target = lb_dir / "cache" / "bootstrap"
    if options.rebuild:
        return None
    if not shared.is_dir():
        return shared
    target.parent.mkdir(parents=True, exist_ok=True)
    # Hard links: live-build only copies from it and later removes it.
    if proc.run(["cp", "-al", shared, target], check=False, capture=True).returncode != 0:
        shutil.rmtree(target, ignore_errors=True)
        proc.run(["cp", "-a", shared, target])
    log.debug("bootstrap stage from %s", shared)
    return None


def _save_bootstrap_cache(lb_dir: Path, shared: Path) -> None:
    saved = lb_dir / "cache" / "bootstrap"
    if not saved.is_dir() or shared.exists():
        return
    shared.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".new-", dir=shared.parent))
    try:
        shutil.move(saved, staging / "bootstrap")
        with contextlib.suppress(OSError):
            os.rename(staging / "bootstrap", shared)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


# `lb build` is these stages plus `lb installer` and `lb source`: the
# installer stage does nothing without a debian-installer but still sets up
# and removes the chroot's archives twice (15 s of apt-get update).
LB_STAGES = ("config", "bootstrap", "chroot", "binary")


def run_live_build(lb_dir: Path, build_log: Path, mirrors: Mirrors) -> None:
    """The live-build stages in lb_dir, all output to build_log.

    lb runs in its own process group; if we are interrupted, the whole group
    is stopped and whatever it mounted under lb_dir is unmounted.
    """
    env = {"LC_ALL": "C.UTF-8"}
    if mirrors.http_proxy:
        env["http_proxy"] = mirrors.http_proxy
    log.info("live-build log: %s", build_log)
    with open(build_log, "ab") as out:
        for stage in LB_STAGES:
            title = f"lb {stage}"
            out.write(f"### {title}\n".encode())
            out.flush()
            with step(title):
                code = _run_process_group(["lb", stage], lb_dir, out, env)
                if code != 0:
                    raise _build_failure(f"{title} failed with exit status {code}", build_log)


def _run_process_group(argv: list[str], cwd: Path, out: Any, env: dict[str, str]) -> int:
    with proc.spawn(argv, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, env=env) as process:
        try:
            return process.wait()
        finally:
            _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    """Stop every process of the group spawn() started (lb, debootstrap, apt, dpkg, mksquashfs)."""
    pgid = process.pid
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGTERM)
        # lb's own exit trap unmounts the chroot's file systems: let it.
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def _log_tail(build_log: Path, lines: int = LOG_TAIL) -> list[str]:
    try:
        text = build_log.read_text(errors="replace")
    except OSError:
        return []
    return text.rstrip().splitlines()[-lines:]


def _build_failure(message: str, build_log: Path) -> TestbedError:
    tail = _log_tail(build_log)
    for line in tail:
        log.error("  %s", line)
    # live-build's own "E:" lines say what went wrong; its last lines are cleanup.
    errors = [line.strip() for line in tail if line.startswith("E:")]
    last = errors[0] if errors else (tail[-1].strip() if tail else "")
    return TestbedError(f"{message}: {last}" if last else message,
                        hint=f"full log: {build_log}")


def _collect_artifacts(lb_dir: Path, image_dir: Path, build_log: Path) -> None:
    live = lb_dir / "binary" / "live"
    for name in ARTIFACTS:
        if not (live / name).is_file():
            raise _build_failure(f"live-build produced no binary/live/{name}", build_log)
        os.rename(live / name, image_dir / name)
    # It holds the guest's SSH host private key: root's only.
    (image_dir / SQUASHFS).chmod(SQUASHFS_MODE)
    for listing in (live / "filesystem.packages", lb_dir / "chroot.packages.live"):
        if listing.is_file():
            shutil.copyfile(listing, image_dir / "packages.txt")
            break


def _packages(image_dir: Path) -> list[dict[str, str]]:
    try:
        lines = (image_dir / "packages.txt").read_text().splitlines()
    except FileNotFoundError:
        return []
    packages = []
    for line in lines:
        fields = line.split()
        if len(fields) >= 2:
            packages.append({"name": fields[0], "version": fields[1]})
    return packages


def _manifest(options: ImageOptions, inputs: dict[str, Any], digest: str, lb_dir: Path,
              image_dir: Path, final: Path, ssh: SSHKeys, seconds: float) -> dict[str, Any]:
    artifacts = {
        name: {"path": name, "size": (image_dir / name).stat().st_size,
               "sha256": sha256_file(image_dir / name)}
        for name in ARTIFACTS
    }
    manifest: dict[str, Any] = {
        "format": inputs["format"],
        "hash": digest,
        "inputs": inputs,
        "suite": options.suite,
        "packages": _packages(image_dir),
        "artifacts": artifacts,
        "built_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "build_seconds": round(seconds, 1),
        "tool_version": __version__,
        "live_build_version": inputs["live_build_version"],
        "kernel_cmdline": KERNEL_CMDLINE,
        "ssh_private_key": str(ssh.private_key),
        "ssh_public_key": ssh.public_key,
        "ssh_key_generated": ssh.generated,
        "host_key": ssh.host_key,
        "host_key_fingerprint": ssh.host_key_fingerprint,
        "build_log": "build.log",
    }
    if ssh.generated:
        manifest["ssh_private_key_relative"] = str(ssh.private_key.relative_to(final))
    return manifest


def _publish(image_dir: Path, final: Path) -> None:
    """Rename the finished image into place: a reader sees all of it or nothing."""
    if not final.exists():
        os.rename(image_dir, final)
        return
    old = final.with_name(f".old-{final.name}-{os.getpid()}")
    with registry.holding(BuildDirectory(name=str(old), replaced=True)):
        os.rename(final, old)
        os.rename(image_dir, final)


def _keep_failure_log(build_log: Path, failed_dir: Path) -> Path | None:
    if not build_log.is_file():
        return None
    failed_dir.mkdir(parents=True, exist_ok=True)
    kept = failed_dir / "build.log"
    shutil.copyfile(build_log, kept)
    log.info("live-build log kept in %s", kept)
    return kept


def mounts_under(directory: Path) -> list[Path]:
    """Mount points at or below directory, deepest first."""
    top = str(directory.resolve())
    found = []
    with open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            # /proc/mounts escapes spaces and the like as octal (\040).
            point = line.split()[1].encode().decode("unicode_escape")
            if point == top or point.startswith(top + "/"):
                found.append(Path(point))
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def unmount_under(directory: Path) -> None:
    """Unmount everything mounted below directory (proc, sys, dev/pts of a chroot)."""
    for _ in range(5):
        points = mounts_under(directory)
        if not points:
            return
        for point in points:
            log.debug("unmounting leftover %s", point)
            if proc.run(["umount", point], check=False, capture=True).returncode != 0:
                proc.run(["umount", "-l", point], check=False, capture=True)
    left = mounts_under(directory)
    if left:
        raise TestbedError(f"cannot unmount {left[0]} (and {len(left) - 1} more)")


def _remove_work_dir(work: Path) -> None:
    unmount_under(work)
    # Never rm -rf through a mount that is still there (a chroot's /dev).
    if not mounts_under(work):
        shutil.rmtree(work, ignore_errors=True)


def processes_under(directory: Path) -> list[int]:
    """Processes whose working directory or root is in `directory` (a chroot's apt, dpkg...)."""
    top = str(directory.resolve())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        for link in ("cwd", "root"):
            try:
                target = os.readlink(entry / link)
            except OSError:
                continue
            if target == top or target.startswith(top + "/"):
                found.append(int(entry.name))
                break
    return found


def stop_processes(pids: list[int], grace: float = 5.0) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    proc.wait_until(lambda: not any(proc.pid_alive(p) for p in pids), grace)
    for pid in pids:
        if proc.pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
