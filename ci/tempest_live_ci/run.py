"""run_job(): one job, end to end, as one ExitStack over the stages.

    job      load + validate (job.py), print the plan, write job.yaml
    image    build_image(): a cached image when its inputs did not change
    testbed  start_testbed(): isolated namespace (or the persistent testbed)
    vm       boot_vm(): network boot, SSH with the pinned host key
    guest    deploy/ pushed into the guest and run step by step over SSH:
             prepare (apt sources, update, setup commands), install (the
             profile's packages), candidates (the packages under test, from
             a repository the host serves, pinned at 1001; only when there
             are some), configure (the services, the Debian way),
             tempest-conf (discover-tempest-config), tempest (the subunit
             stream comes home as it is produced)
    results  process_run(): summary.json, junit.xml, report.html; exit code
    baseline judge_run(): the test diff against the baseline, what changed
             beside it, the gate (results.baseline, results.gate)

Every stage is undone in reverse order on success, error, Ctrl-C and
SIGTERM; the logs of the testbed are copied to the output directory first,
so that a failed run explains itself.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tempest_live_ci import __version__, files
from tempest_live_ci.archives import EXTRA_PORT, extra_archives, job_sources
from tempest_live_ci.candidates import FULL, REPO_DIR, Candidate, build_repository, distinct, profile_for
from tempest_live_ci.deploy.profiles import PROFILES, get_profile
from tempest_live_ci.errors import CandidateError, ExitCode, TestbedError, TLCError, UsageError
from tempest_live_ci.guest.plan import guest_files, guest_params, guest_sources
from tempest_live_ci.guest.steps import GUEST_STATE, Guest, StepFailed
from tempest_live_ci.image.livebuild import build_image, look_up_archive
from tempest_live_ci.image.model import ImageOptions, validate
from tempest_live_ci.inputs import open_regular
from tempest_live_ci.job import (
    AUTO,
    Job,
    check_candidates,
    job_as_dict,
    load_job_or_default,
    profile_defaults,
    testbed_config,
)
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import add_file_log, format_duration, log, step
from tempest_live_ci.results.baseline import find_baseline, judge_run
from tempest_live_ci.results.names import STREAM, SUMMARY
from tempest_live_ci.results.run import load_run, print_summary, process_run, read_summary
from tempest_live_ci.results.store import job_dir, store_run
from tempest_live_ci.siteconfig import site_config
from tempest_live_ci.testbed.aptproxy import forward_into_netns, start_apt_cacher_ng
from tempest_live_ci.testbed.config import PERSISTENT, TestbedConfig, new_run_id, require_root
from tempest_live_ci.testbed.journal import Journal
from tempest_live_ci.testbed.lifecycle import load_testbed, start_testbed
from tempest_live_ci.testbed.lock import testbed_lock
from tempest_live_ci.testbed.status import testbed_status
from tempest_live_ci.vm.boot import boot_vm
from tempest_live_ci.vm.config import BootTimeouts, VMConfig
from tempest_live_ci.vm.domain import HOST_RESERVE_MIB
from tempest_live_ci.vm.reservation import MemoryTaken, promise_memory

if TYPE_CHECKING:
    import yaml
else:
    yaml = lazy_module("yaml")


@dataclass
class RunContext:
    job: Job
    run_id: str
    output_dir: Path
    candidates: tuple[Candidate, ...]
    keep_on_failure: bool = False
    debug: bool = False
    # Seconds a run on the persistent testbed waits for another one to finish with it.
    testbed_wait: float = 0.0
    stages: dict[str, float] = field(default_factory=dict)
    facts: dict[str, Any] = field(default_factory=dict)

    @contextlib.contextmanager
    def stage(self, name: str, title: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            with step(title):
                yield
        finally:
            self.stages[name] = round(time.monotonic() - start, 1)


def default_output_dir(job: Job, run_id: str) -> Path:
    """The run's own directory in the results store: stored where it is written, no copy."""
    return job_dir(job.name) / run_id


def resolve_candidates(job: Job, candidates: tuple[Path, ...] = (), sources: tuple[str, ...] = (),
                       keyring: Path | None = None) -> tuple[Job, tuple[Candidate, ...]]:
    """The job with the command line's candidates added, and every candidate checked.

    `tempest.profile: auto` becomes the profile that covers the candidates'
    source packages (the whole cloud without candidates). job.yaml of the run
    records the result.
    """
    chosen_keyring = str(keyring.resolve()) if keyring is not None else job.guest.keyring
    found = check_candidates(job, job.guest.candidates, (), chosen_keyring,
                             keys=("guest.candidates", "guest.candidate_sources", "guest.keyring"))
    # One keyring for every signed .changes, the command line's before the job's.
    found += check_candidates(job, [str(c) for c in candidates], sources, chosen_keyring,
                              keys=("--candidate", "--candidate-source",
                                    "--keyring" if keyring is not None else "guest.keyring"))
    seen: dict[str, Candidate] = {}
    for c in found:
        if seen.setdefault(c.package, c).path != c.path:
            raise UsageError(f"--candidate: {c.package} twice: {seen[c.package].path} and {c.path}")
    # One file name in the flat repository: a job's and a --candidate of one name.
    found = distinct(seen.values())
    job = dataclasses.replace(job, guest=dataclasses.replace(
        job.guest, keyring=chosen_keyring,
        candidates=(*job.guest.candidates, *(str(c.resolve()) for c in candidates)),
        candidate_sources=(*job.guest.candidate_sources, *(" ".join(s.split()) for s in sources))))
    if job.tempest.profile == AUTO:
        profile = profile_for(found) if found else FULL
        if profile not in PROFILES:
            sources_of = ", ".join(sorted({c.source for c in found})) or "no candidates"
            raise UsageError(f"tempest.profile: auto chose {profile!r} for {sources_of}, which is "
                             f"not a profile of this version (known: {', '.join(PROFILES)})")
        log.info("tempest.profile auto: %s (for %s)", profile,
                 ", ".join(sorted({c.source for c in found})) or "no candidates")
        job = profile_defaults(dataclasses.replace(
            job, tempest=dataclasses.replace(job.tempest, profile=profile)))
    return job, found


def print_plan(ctx: RunContext) -> None:
    job = ctx.job
    log.info("job %s (%s): %s", job.name, job.source, job.description or "no description")
    log.info("  run id %s, output %s", ctx.run_id, ctx.output_dir)
    archive = ", ".join(way for way, used in (("apt proxy", job.testbed.apt_proxy),
                                                 ("NAT", job.testbed.nat)) if used)
    log.info("  testbed: %s, %s, guest %s, archive through %s", job.testbed.mode,
             job.testbed.host_address, job.testbed.guest_mac, archive or "nothing")
    log.info("  image: %s, %s compression%s", job.image.suite, job.image.compression,
             f", extra packages: {' '.join(job.image.packages)}" if job.image.packages else "")
    log.info("  vm: %s, %d vCPUs, %s boot", job.vm.memory, job.vm.vcpus, job.vm.boot)
    log.info("  image: profile %s %s", job.tempest.profile,
             "preinstalled" if job.image.preinstall else "installed in the guest")
    t = job.tempest
    selection = [f"regex {t.regex}" if t.regex else "", "smoke" if t.smoke else "",
                 f"include list {t.include_list}" if t.include_list else "",
                 f"exclude regex {t.exclude_regex}" if t.exclude_regex else "",
                 f"exclude list {t.exclude_list}" if t.exclude_list else ""]
    log.info("  tempest: profile %s, %s, concurrency %d, timeout %s%s", t.profile,
             ", ".join(x for x in selection if x) or "the profile's default tests",
             t.concurrency or job.vm.vcpus, format_duration(t.timeout),
             f", failures re-run up to {t.rerun_failures} times" if t.rerun_failures else "")
    for c in ctx.candidates:
        log.info("  candidate: %s %s (%s, source %s)", c.package, c.version, c.filename, c.source)
    for line in job.guest.candidate_sources:
        log.info("  extra apt source: %s", line)
    r = job.results
    if r.baseline is not None:
        log.info("  baseline: %s, gate: %s", f"latest run of {r.baseline_job or job.name}"
                 if r.baseline == "latest" else r.baseline, r.gate)


def image_options(job: Job) -> ImageOptions:
    options = ImageOptions(
        suite=job.image.suite,
        mirror=job.image.mirror,
        apt_proxy=site_config().image_apt_proxy(),
        packages=job.image.packages,
        # "auto" is resolved by the run, from its candidates (resolve_candidates).
        profile=job.tempest.profile if job.image.preinstall and job.tempest.profile != AUTO
        else None,
        compression=job.image.compression,
        compression_level=job.image.compression_level,
        ssh_key=Path(job.image.ssh_key) if job.image.ssh_key else None,
        check_valid_until=job.image.check_valid_until,
    )
    validate(options)
    return options


def _collect_testbed_logs(state_dir: Path, output_dir: Path) -> None:
    for name in ("dnsmasq.log", "http.log", "dnsmasq.conf", "nftables.conf"):
        source = state_dir / name
        if source.exists():
            with contextlib.suppress(OSError):
                shutil.copyfile(source, output_dir / name)


def persistent_testbed(job: Job, run_id: str, name: str = TestbedConfig.name) -> Any:
    """The testbed `host setup` made: runs use it as it is and leave it up.

    Refused (exit 20) when the job's testbed settings are not the testbed's:
    the run would otherwise boot with other addresses than the job says.
    """
    check_persistent(job, name)
    status = testbed_status(name)
    if status is None:  # torn down this very moment
        raise UsageError(f"persistent testbed {name!r} is gone", hint="tempest-live-ci host setup")
    testbed = load_testbed(name, run_id)[1]
    if not status.healthy:
        missing = ", ".join(what for what, ok in status.items if not ok)
        raise TestbedError(f"persistent testbed {name!r} is degraded (missing: {missing})",
                           hint="tempest-live-ci host setup repairs it")
    # The run's own id names its domain and its `vm ssh --run-id`.
    return testbed


def check_persistent(job: Job, name: str = TestbedConfig.name) -> None:
    """A persistent testbed is there, and the job's testbed.* are what it was set up with
    (else UsageError: the run stops before its image)."""
    if testbed_status(name) is None:
        raise UsageError(f"testbed.mode: persistent, but no persistent testbed {name!r} is set up",
                         hint="tempest-live-ci host setup")
    check_persistent_settings(job, load_testbed(name)[0])


def check_persistent_settings(job: Job, config: Any) -> None:
    """The job's testbed.* must be what the persistent testbed was set up with."""
    wanted: TestbedConfig = testbed_config(job, "tlc-check")
    t = job.testbed
    for key, said, have, shown_said, shown_have in (
            ("host_address", wanted.host_interface, config.host_interface,
             t.host_address, config.host_address),
            ("host_ipv6", wanted.host_ipv6_interface, config.host_ipv6_interface,
             t.host_ipv6, config.host_ipv6),
            ("guest_address", wanted.guest_ip, config.guest_ip,
             t.guest_address or f"{wanted.guest_ip} (the default)", str(config.guest_ip)),
            ("guest_mac", wanted.guest_mac, config.guest_mac, t.guest_mac, config.guest_mac),
            ("apt_proxy", wanted.apt_proxy, config.apt_proxy, t.apt_proxy, config.apt_proxy),
            ("nat", wanted.nat, config.nat, t.nat, config.nat)):
        if said != have:
            def show(value: Any) -> str:
                return "none" if value is None else str(value).lower() \
                    if isinstance(value, bool) else str(value)

            raise UsageError(
                f"{job.source}: testbed.{key}: the job says {show(shown_said)}, the persistent "
                f"testbed {config.name} was set up with {show(shown_have)}",
                hint=f"set testbed.{key} in the job to the testbed's value, or set the testbed "
                     "up again (host teardown, host setup)")


def write_run_summary(ctx: RunContext, exit_code: int, note: str | None) -> Path:
    """summary.json: merged into the one the results stage wrote, if any."""
    path = ctx.output_dir / "summary.json"
    data: dict[str, Any] = {}
    if path.exists():
        with contextlib.suppress(ValueError):
            data = json.loads(path.read_text())
    data.update({
        "job": ctx.job.name,
        "run_id": ctx.run_id,
        "tool_version": __version__,
        "stages": ctx.stages,
        "exit_code": int(exit_code),
        **({"note": note} if note else {}),
        **ctx.facts,
    })
    path.write_text(json.dumps(data, indent=1, default=str) + "\n")
    return path


def run_job(job: Job, *, candidates: tuple[Candidate, ...] = (), output_dir: Path | None = None,
            keep_on_failure: bool = False, debug: bool = False,
            testbed_wait: float = 0.0) -> ExitCode:
    """Run `job` end to end; return the exit code (DESIGN.md's table)."""
    require_root()
    run_id = new_run_id()
    ctx = RunContext(job, run_id, (output_dir or default_output_dir(job, run_id)).resolve(),
                     candidates, keep_on_failure, debug, testbed_wait)
    if ctx.output_dir.exists() and any(ctx.output_dir.iterdir()):
        raise UsageError(f"--output: {ctx.output_dir} exists and is not empty")
    # Everything up to here changed nothing on the host.
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    add_file_log(str(ctx.output_dir / "run.log"))
    (ctx.output_dir / "job.yaml").write_text(yaml.safe_dump(job_as_dict(job), sort_keys=False))
    print_plan(ctx)
    started = time.monotonic()
    code: ExitCode = ExitCode.TESTBED
    note: str | None = None
    if candidates:
        ctx.facts["candidates"] = [c.as_json() for c in candidates]
    try:
        code, note = _run_stages(ctx)
        code, note = _judge(ctx, code, note)
        return code
    except TLCError as e:
        code = e.exit_code
        note = e.message
        raise
    except KeyboardInterrupt:
        code = ExitCode.INTERRUPTED
        note = "interrupted"
        raise
    finally:
        ctx.stages["total"] = round(time.monotonic() - started, 1)
        summary = write_run_summary(ctx, code, note)
        _store(ctx)
        log.info("run %s ended with exit code %d after %s; results in %s", run_id, code,
                 format_duration(ctx.stages["total"]), summary.parent)


def _store(ctx: RunContext) -> None:
    """A run with test results goes into the results store (its history, its baseline)."""
    if not (ctx.output_dir / STREAM).is_file():
        return
    try:
        stored = store_run(ctx.job.name, ctx.output_dir)
    except (OSError, TLCError) as e:
        log.warning("could not store the run in the results store: %s", e)
        return
    log.info("stored as %s", stored)


def _run_stages(ctx: RunContext) -> tuple[ExitCode, str | None]:
    job = ctx.job
    persistent = persistent_testbed(job, ctx.run_id) if job.testbed.mode == PERSISTENT else None
    with contextlib.ExitStack() as stack:
        if persistent is not None:
            # One run at a time on it, from before the image to the end (testbed/lock.py).
            stack.enter_context(testbed_lock(persistent.name, f"run {ctx.run_id}",
                                             wait=ctx.testbed_wait))
            # It may have changed while this run waited for it.
            persistent = persistent_testbed(job, ctx.run_id)
        # Checked before the image: minutes of build for a run that cannot start
        # would be a waste. The memory stays promised to this run until it ends.
        stack.enter_context(host_memory_for(job, ctx.run_id))
        # The archive is read before the image and the testbed: a package it
        # lacks, or a Release past its Valid-Until the job did not accept,
        # ends the run here (exit 20, its summary the only trace).
        options = image_options(job)
        with ctx.stage("archive", "Reading the archive"):
            archive = look_up_archive(options)
        with ctx.stage("image", "Preparing the image"):
            image = build_image(options, archive)
            ctx.facts["image"] = {"directory": str(image.directory), "hash": image.hash,
                                  "host_key_fingerprint": image.host_key_fingerprint,
                                  "preinstalled_profile": image.manifest["inputs"].get("profile"),
                                  "sizes": {name: a["size"] for name, a
                                            in image.manifest["artifacts"].items()}}
        with ctx.stage("testbed", "Setting up the testbed"):
            if persistent is not None:
                testbed = persistent
            else:
                testbed = stack.enter_context(start_testbed(testbed_config(job, ctx.run_id)))
            _extra_archives(ctx, stack, testbed)
        stack.callback(_collect_testbed_logs, testbed.state_dir, ctx.output_dir)
        with ctx.stage("vm", "Booting the guest"):
            vm = stack.enter_context(boot_vm(
                testbed, image, ctx.output_dir,
                VMConfig(memory_mib=job.vm.memory_mib, vcpus=job.vm.vcpus or VMConfig.vcpus, boot=job.vm.boot,
                         nic_model=job.vm.nic_model),
                timeouts=BootTimeouts(dhcp=job.vm.dhcp_timeout, kernel=job.vm.kernel_timeout,
                                      ssh=job.vm.ssh_timeout),
                keep_on_failure=ctx.keep_on_failure, debug=ctx.debug))
            ctx.facts["boot"] = dict(vm.timings)
            ctx.facts["accelerator"] = "kvm" if vm.accelerator.usable else "tcg"
        outcome = _guest_stages(ctx, stack, vm, testbed)
    return outcome


def _extra_archives(ctx: RunContext, stack: contextlib.ExitStack, testbed: Any) -> None:
    """Through the apt proxy: the job's repositories outside Debian's archive, each under a
    prefix of its own on the testbed's EXTRA_PORT (archives.py), and nothing else there."""
    job = ctx.job
    if not job.testbed.apt_proxy:
        return
    archives = extra_archives([line for lines in job_sources(
        job.guest.sources_list, job.guest.candidate_sources, apt_proxy=True) for line in lines])
    if not archives:
        return
    for archive in archives:
        log.info("extra archive %s: /%s/ on the apt proxy", archive.backend, archive.name)
    def kept() -> Any:
        """A kept guest keeps its extra archives too, like the testbed's own apt proxy."""
        return Journal(testbed.state_dir) if (testbed.state_dir / "keep").exists() else None

    proxy = stack.enter_context(start_apt_cacher_ng(archives, kept=kept))
    stack.enter_context(forward_into_netns(proxy, testbed.netns, str(testbed.host_address),
                                           EXTRA_PORT, kept=kept))
    ctx.facts["extra_archives"] = {archive.name: archive.backend for archive in archives}


@contextlib.contextmanager
def host_memory_for(job: Job, run_id: str) -> Iterator[None]:
    """The guest's RAM must be free on the host, and stay promised to this run.

    A guest that swaps under TCG never finishes; two runs started at once
    must not both count the same free memory (vm/reservation.py).
    """
    try:
        with promise_memory(run_id, job.vm.memory_mib, HOST_RESERVE_MIB):
            yield
    except MemoryTaken as e:
        others = ""
        if e.promises:
            names = ", ".join(f"{p.run_id}: {p.outstanding_mib} MiB" for p in e.promises)
            others = (f" once the {e.promised_mib} MiB promised to other runs' guests "
                      f"({names}) are counted")
        raise UsageError(
            f"{job.source}: vm.memory: {job.vm.memory} does not fit: the host has "
            f"{e.available_mib} MiB available{others}, and keeps {HOST_RESERVE_MIB} MiB for itself",
            hint="free memory on the host, wait for the other runs, or set a smaller vm.memory "
                 "(the profile's default is what it was measured to need)") from None


def publish_test_image(job: Job, testbed: Any) -> str | None:
    """The disk image glance gets for tempest: its URL, as the guest reaches it.

    A URL in the job is passed on; a file is served by the testbed; by default
    a small raw image is made here (nothing outside Debian's archive is
    reachable, and Debian has no cirros): enough for nova's fake driver,
    which boots nothing.
    """
    if not get_profile(job.tempest.profile).needs_image:
        return None
    image = job.tempest.image
    if image is not None and image.startswith(("http://", "https://")):
        return image
    directory = testbed.http_root / "tempest"
    directory.mkdir(parents=True, exist_ok=True)
    # Readable by the testbed's HTTP server (root) and the guest that fetches
    # it, nobody else on the host: a job's image may be private.
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    if image is not None:
        name = Path(image).name
        with open_regular(image, "tempest.image") as source, \
                os.fdopen(os.open(directory / name, flags, 0o600), "wb") as out:
            shutil.copyfileobj(source, out, 1024 * 1024)
    else:
        name = "tempest-live-ci-test.raw"
        with os.fdopen(os.open(directory / name, flags, 0o600), "wb") as out:
            out.write(TEST_IMAGE_MARKER)
            out.truncate(TEST_IMAGE_SIZE)
    return f"{testbed.http_url}/tempest/{name}"


# The default test image: 1 MiB, raw, its first bytes saying what it is.
TEST_IMAGE_MARKER = b"tempest-live-ci test image: not bootable\n"
TEST_IMAGE_SIZE = 1 << 20


def _guest_stages(ctx: RunContext, stack: contextlib.ExitStack, vm: Any,
                  testbed: Any) -> tuple[ExitCode, str | None]:
    """In the guest: prepare, install, configure, tempest.conf, tempest; then the results."""
    job = ctx.job
    guest = Guest(vm.ssh, ctx.output_dir, alive=lambda: _guest_alive(vm))
    # Registered after the VM: runs before it is destroyed, also on failure.
    stack.callback(_collect_guest_logs, ctx, guest)
    g = job.guest
    with ctx.stage("prepare", "Preparing the guest"):
        guest.push(guest_params(job, testbed, guest_state=GUEST_STATE,
                                image_url=publish_test_image(job, testbed),
                                accelerator=ctx.facts.get("accelerator", "tcg")),
                   guest_files(job))
        ctx.facts["guest"] = guest.step("check", 120).facts
        guest.step("prepare", g.prepare_timeout)
    with ctx.stage("install", f"Installing OpenStack (profile {job.tempest.profile})"):
        guest.step("install", g.install_timeout)
    if ctx.candidates or g.candidate_sources:
        with ctx.stage("candidates", "Installing the candidates"):
            _install_candidates(ctx, stack, guest, testbed)
    with ctx.stage("configure", "Configuring OpenStack"):
        guest.step("configure", g.configure_timeout)
        guest.step("tempest-conf", g.configure_timeout)
    return _run_tempest(ctx, guest)


def _install_candidates(ctx: RunContext, stack: contextlib.ExitStack, guest: Any,
                        testbed: Any) -> None:
    """The candidates' repository on the testbed's HTTP server, then the guest's candidates step.

    apt's refusal (unmet dependency, conflict, a downgrade) is the candidates'
    fault: exit 12 with apt's reason, not a testbed failure.
    """
    packages = {c.package: c.version for c in ctx.candidates}
    # Extra archives through the proxy are named by their prefix there (archives.py).
    wanted: dict[str, Any] = {"packages": packages,
                              "sources": guest_sources(ctx.job, testbed)[1]}
    if ctx.candidates:
        # A directory of the run's own: a persistent testbed's server outlives runs.
        directory = testbed.http_root / REPO_DIR / ctx.run_id
        stack.callback(shutil.rmtree, directory, True)
        build_repository(ctx.candidates, directory)
        wanted["repository"] = f"{testbed.http_url}/{REPO_DIR}/{ctx.run_id}/"
        wanted["direct_host"] = str(testbed.host_address)
    guest.put_file("candidates.json", json.dumps(wanted, indent=1).encode())
    try:
        result = guest.step("candidates", ctx.job.guest.install_timeout)
    except StepFailed as e:
        refused = candidate_failure(e)
        if refused is None:
            raise
        raise refused from e
    installed = result.facts.get("candidates", {})
    ctx.facts["candidates"] = [{**c.as_json(), "installed": installed.get(c.package, {})
                                .get("installed"), "before": installed.get(c.package, {})
                                .get("before")} for c in ctx.candidates]


def candidate_failure(error: Any) -> CandidateError | None:
    """The CandidateError (exit 12, apt's reason) a failed candidates step stands for, if any.

    Only apt's refusal is the candidates' fault; anything else (the
    repository unreachable, the guest gone) stays a testbed failure.
    """
    reason = error.result.facts.get("candidate_error")
    if not reason:
        return None
    return CandidateError("the candidates cannot be installed: "
                          + " | ".join(line.strip() for line in reason.splitlines()),
                          hint=error.hint)


def _run_tempest(ctx: RunContext, guest: Any) -> tuple[ExitCode, str | None]:
    # deferred: guest/progress.py subclasses testtools' StreamResult, `run --help` loads no testtools
    from tempest_live_ci.guest.progress import SubunitSink

    job = ctx.job
    interrupted = signalled = False
    with ctx.stage("tempest", "Running tempest"):
        sink = SubunitSink(ctx.output_dir / STREAM)
        try:
            guest.step("tempest", job.tempest.timeout, stdout=sink)
        except TestbedError as e:
            # The stream so far is kept and read: it names what was running.
            interrupted = True
            log.error("%s", e.message)
            log.error("tempest did not finish; tests running at the time: %s",
                      ", ".join(sink.running) or "none")
            ctx.facts["tempest_error"] = e.message
        except KeyboardInterrupt:
            # Ctrl-C or SIGTERM while the tests ran: the tests done so far still
            # make the report (marked incomplete), then the run unwinds.
            interrupted = signalled = True
            log.error("interrupted while tempest ran; tests running at the time: %s",
                      ", ".join(sink.running) or "none")
            ctx.facts["tempest_error"] = "interrupted"
        finally:
            sink.close()
            log.info("tempest: %s (%d bytes of subunit)", sink.counter.line(), sink.bytes)

    def rerun(load_list: Path) -> bytes:
        name = f"rerun-{load_list.stem}"
        guest.put_file(f"{name}.load-list", load_list.read_bytes())
        out = io.BytesIO()
        guest.step("tempest", job.tempest.timeout, stdout=out, log_name=name,
                   args=(f"{guest.state}/{name}.load-list",))
        return out.getvalue()

    with ctx.stage("results", "Writing the results"):
        result = process_run(ctx.output_dir / STREAM, ctx.output_dir, _metadata(ctx, guest),
                             rerun=rerun if job.tempest.rerun_failures and not signalled
                             else None,
                             rerun_attempts=job.tempest.rerun_failures, interrupted=interrupted)
    print_summary(result)
    if signalled:
        raise KeyboardInterrupt("interrupted while tempest ran")
    return result.exit_code, str(result.summary["verdict"])


def _metadata(ctx: RunContext, guest: Any) -> dict[str, Any]:
    steps = {name: {"seconds": r.seconds, "parts": r.parts,
                    **({"memory_peak_mib": r.facts["memory_peak_mib"]}
                       if "memory_peak_mib" in r.facts else {})}
             for name, r in guest.results.items()}
    versions: dict[str, str] = {}
    for r in guest.results.values():
        versions.update(r.facts.get("versions", {}))
        versions.update(r.facts.get("tempest", {}))
    data: dict[str, Any] = {"job": ctx.job.name, "run_id": ctx.run_id,
                            "profile": ctx.job.tempest.profile, "steps": steps,
                            "versions": versions}
    peaks = [int(r.facts["memory_peak_mib"]) for r in guest.results.values()
             if "memory_peak_mib" in r.facts]
    if peaks:
        # The most RAM the guest used in any step (the squashfs it runs from included).
        data["guest_memory_peak_mib"] = max(peaks)
    drivers = [r.facts["virt_driver"] for r in guest.results.values() if "virt_driver" in r.facts]
    if drivers:
        # nova's: libvirt (nested KVM) or fake (nothing boots; tempest.conf says so too).
        data["virt_driver"] = drivers[-1]
    experimental = {name: versions for r in guest.results.values()
                    for name, versions in r.facts.get("experimental", {}).items()}
    if any("experimental" in r.facts for r in guest.results.values()):
        # guest.experimental: what came from experimental (every version that changed).
        data["experimental"] = experimental
    scaled = {key: value for r in guest.results.values()
              for key, value in r.facts.get("scaled_timeouts", {}).items()}
    if scaled:
        # tempest.conf's build timeouts, scaled for an accelerator slower than KVM.
        data["scaled_timeouts"] = scaled
    excluded = {regex: reason for r in guest.results.values()
                for regex, reason in r.facts.get("excluded_by_setup", {}).items()}
    if excluded:
        # Tests the guest's setup left out (scenario tests under the fake driver), with why.
        data["excluded_by_setup"] = excluded
    if "candidates" in ctx.facts:
        # The versions the guest really installed, in the report's Run section.
        data["candidates"] = {c["package"]: c.get("installed") or f"{c['version']} (not installed)"
                              for c in ctx.facts["candidates"]}
    return data


def _judge(ctx: RunContext, code: ExitCode, note: str | None) -> tuple[ExitCode, str | None]:
    """The results against the job's baseline, and the gate; after the guest's logs are home
    (packages.txt is what the package diff is made of)."""
    r = ctx.job.results
    if r.baseline is None or code not in (ExitCode.OK, ExitCode.TESTS_FAILED) \
            or not (ctx.output_dir / STREAM).is_file():
        return code, note
    with ctx.stage("baseline", "Comparing with the baseline"):
        baseline = find_baseline(r.baseline, ctx.job.name, r.baseline_job)
        log.info("baseline: %s", baseline or "none stored")
        judgement = judge_run(
            load_run(ctx.output_dir), read_summary(ctx.output_dir / SUMMARY), ctx.output_dir,
            baseline=baseline, gate=r.gate, job=r.baseline_job or ctx.job.name,
            candidates={c.package for c in ctx.candidates},
            image=ctx.facts.get("image", {}).get("hash"))
    b = judgement.baseline
    for title, key in (("regressions", "regressions"), ("fixed", "fixed"),
                       ("still failing", "still_failing"), ("flaky", "flaky"),
                       ("new tests", "new_tests"), ("removed tests", "removed_tests")):
        if b.get(key):
            log.info("%s: %d", title, len(b[key]))
            for test in b[key][:20]:
                (log.error if key == "regressions" else log.info)("  %s", test)
    log.info("%s (exit %d)", judgement.verdict, judgement.exit_code)
    return judgement.exit_code, judgement.verdict


def _guest_alive(vm: Any) -> None:
    if not vm.running():
        raise TestbedError("the guest stopped (its domain is no longer running)")


def _collect_guest_logs(ctx: RunContext, guest: Any) -> None:
    with ctx.stage("logs", "Collecting the guest's logs"):
        try:
            directory = guest.collect_logs()
        except TestbedError as e:
            log.warning("could not collect the guest's logs: %s", e.message)
            return
        if directory is None:
            return
        for name, source in (("tempest.conf", "etc/tempest/tempest.conf"),
                             ("tempest.log", "var/lib/tempest/tempest.log"),
                             ("packages.txt", "var/log/tempest-live-ci/packages.txt")):
            # The guest's files, as they are: never through a link it left there.
            if files.exists(directory / source) and not files.copy_beneath(
                    directory, source, ctx.output_dir / name):
                log.warning("%s: not a regular file, not copied", directory / source)
        ctx.facts["steps"] = {name: {"seconds": r.seconds, "parts": r.parts}
                              for name, r in guest.results.items()}


@click.command()
@click.argument("job_file", required=False, metavar="[JOB.yaml|NAME]")
@click.option("--candidate", "candidates", multiple=True,
              type=click.Path(path_type=Path),
              help="A .deb, a .changes or a directory of .debs to test (repeatable).")
@click.option("--candidate-source", "candidate_sources", multiple=True, metavar="'deb URL SUITE "
              "COMPONENT'", help="An extra apt source for the guest (repeatable).")
@click.option("--keyring", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Check the signature of signed .changes candidates with this keyring.")
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory, copied into the results store at the end "
                   "[default: the run's directory in the results store, RESULTS_DIR/JOB/RUN_ID].")
@click.option("--keep-on-failure", is_flag=True, help="Leave the guest running if the run fails.")
@click.option("--testbed-wait", type=click.FloatRange(min=0), default=0, show_default=True,
              metavar="SECONDS",
              help="With testbed.mode: persistent, wait this long for another run (or a kept "
                   "guest) to free the testbed; refused at once by default.")
@click.pass_context
def run(ctx: click.Context, job_file: str | None, candidates: tuple[Path, ...],
        candidate_sources: tuple[str, ...], keyring: Path | None, output: Path | None,
        keep_on_failure: bool, testbed_wait: float) -> int:
    """Run a job end to end (default job: smoke-trixie)."""
    job = load_job_or_default(job_file)
    job, found = resolve_candidates(job, candidates, candidate_sources, keyring)
    image_options(job)
    return run_job(job, candidates=found, output_dir=output,
                   keep_on_failure=keep_on_failure, debug=bool(ctx.obj and ctx.obj.get("debug")),
                   testbed_wait=testbed_wait)
