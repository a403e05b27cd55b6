"""run_job(): one job, end to end, as one ExitStack over the stages.

    job      load + validate (job.py), print the plan, write job.yaml
    machine  a backend opens a machine (machine/): libvirt builds or takes the
             cached image, sets up the testbed (isolated, or the persistent
             one) and boots the guest from the network; ssh logs in to a
             machine someone else booted
    guest    deploy/ pushed into the machine and run step by step:
             prepare (apt sources, update, setup commands), install (the
             profile's packages), candidates (the packages under test, from
             a repository the machine serves, pinned at 1001; only when there
             are some), configure (the services, the Debian way),
             tempest-conf (discover-tempest-config), tempest (the subunit
             stream comes home as it is produced)
    results  process_run(): summary.json, junit.xml, report.html; exit code
    baseline judge_run(): the test diff against the baseline, what changed
             beside it, the gate (results.baseline, results.gate)

Every stage is undone in reverse order on success, error, Ctrl-C and
SIGTERM; the guest's logs are collected first, so that a failed run
explains itself.
"""

from __future__ import annotations

import contextlib
import io
import json
import tempfile
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from tempest_live_ci import __version__, files
from tempest_live_ci.candidates import REPO_DIR, Candidate, build_repository
from tempest_live_ci.errors import CandidateError, ExitCode, TestbedError, TLCError, UsageError
from tempest_live_ci.guest.plan import guest_files, guest_params, guest_sources, make_test_image
from tempest_live_ci.guest.steps import GUEST_STATE, Guest, StepFailed
from tempest_live_ci.job import (
    Job,
    job_as_dict,
    job_options,
    load_job_or_default,
    plan_lines,
    resolve_candidates,
    with_options,
)
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import add_file_log, format_duration, log, step
from tempest_live_ci.machine import DEFAULT, Backend, Machine, MachineOptions, Opening, open_backend
from tempest_live_ci.results.actions import refresh_reports
from tempest_live_ci.results.baseline import find_baseline, judge_run
from tempest_live_ci.results.metadata import run_metadata
from tempest_live_ci.results.names import HTML, STREAM, SUMMARY
from tempest_live_ci.results.run import load_run, print_summary, process_run
from tempest_live_ci.results.store import job_dir, store_run
from tempest_live_ci.results.summary import read_summary
from tempest_live_ci.testbed.config import new_run_id, require_root

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

    def opening(self, serve: dict[str, Path]) -> Opening:
        """What the backend is told: its stages and facts are the run's own."""
        return Opening(self.run_id, self.output_dir, self.stage, self.facts,
                       keep_on_failure=self.keep_on_failure, debug=self.debug,
                       testbed_wait=self.testbed_wait, serve=serve)


def default_output_dir(job: Job, run_id: str) -> Path:
    """The run's own directory in the results store: stored where it is written, no copy."""

    return job_dir(job.name) / run_id


def print_plan(ctx: RunContext, backend: Backend) -> None:
    job = ctx.job
    log.info("job %s (%s): %s", job.name, job.source, job.description or "no description")
    log.info("  run id %s, output %s", ctx.run_id, ctx.output_dir)
    for line in backend.plan(job):
        log.info("  %s", line)
    for line in plan_lines(job, ("guest", "tempest", "results")):
        log.info("  %s", line)
    for c in ctx.candidates:
        log.info("  candidate: %s %s (%s, source %s)", c.package, c.version, c.filename, c.source)


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
            testbed_wait: float = 0.0, backend: Backend | None = None) -> ExitCode:
    """Run `job` end to end on the backend's machine (the libvirt backend's by default);
    return the exit code (DESIGN.md's table)."""

    require_root()

    backend = backend or open_backend(DEFAULT)
    backend.check(job)
    run_id = new_run_id()
    ctx = RunContext(job, run_id, (output_dir or default_output_dir(job, run_id)).resolve(),
                     candidates, keep_on_failure, debug, testbed_wait)
    if ctx.output_dir.exists() and any(ctx.output_dir.iterdir()):
        raise UsageError(f"--output: {ctx.output_dir} exists and is not empty")
    # Everything up to here changed nothing on the host.
    ctx.output_dir.mkdir(parents=True, exist_ok=True)
    add_file_log(str(ctx.output_dir / "run.log"))
    (ctx.output_dir / "job.yaml").write_text(yaml.safe_dump(job_as_dict(job), sort_keys=False))
    print_plan(ctx, backend)
    started = time.monotonic()
    code: ExitCode = ExitCode.TESTBED
    note: str | None = None
    if candidates:
        ctx.facts["candidates"] = [c.as_json() for c in candidates]
    try:
        code, note = _run_stages(ctx, backend)
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
        _refresh_reports(ctx)
        _store(ctx)
        log.info("run %s ended with exit code %d after %s; results in %s", run_id, code,
                 format_duration(ctx.stages["total"]), summary.parent)


def _refresh_reports(ctx: RunContext) -> None:
    """The reports again, now that guest-logs/ and every stage's time are there."""

    if not ((ctx.output_dir / STREAM).is_file() and (ctx.output_dir / HTML).is_file()):
        return
    try:
        refresh_reports(ctx.output_dir)
    except (OSError, TLCError) as e:
        log.warning("could not write the reports again with the guest's logs: %s", e)


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


def _run_stages(ctx: RunContext, backend: Backend) -> tuple[ExitCode, str | None]:
    """The machine, then the in-guest stages on it; the guest's logs in every case."""
    with contextlib.ExitStack() as stack:
        serve = {}
        if ctx.candidates:
            # Made before the machine: a repository apt-ftparchive cannot make costs no boot.
            work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tlc-repo-")))
            serve[REPO_DIR] = build_repository(ctx.candidates, work / REPO_DIR)
        machine = stack.enter_context(backend.open(ctx.job, ctx.opening(serve)))
        guest = Guest(machine, ctx.output_dir)
        # Registered after the machine: runs before it is closed, also on failure.
        stack.callback(_collect_guest_logs, ctx, guest)
        prepare_guest(ctx, stack, guest, machine)
        install_profile(ctx, guest)
        if ctx.candidates or ctx.job.guest.candidate_sources:
            install_candidates(ctx, stack, guest, machine)
        configure_cloud(ctx, guest)
        outcome = _run_tempest(ctx, guest)
    return outcome


def prepare_guest(ctx: RunContext, stack: contextlib.ExitStack, guest: Guest,
                  machine: Machine) -> None:
    """deploy/ and params.json pushed; the guest checked; apt sources, update, setup commands."""
    job = ctx.job
    with ctx.stage("prepare", "Preparing the guest"):
        guest.push(guest_params(job, machine.network, guest_state=GUEST_STATE,
                                image_url=serve_test_image(job, stack, machine),
                                accelerator=ctx.facts.get("accelerator", "tcg")).as_dict(),
                   guest_files(job))
        ctx.facts["guest"] = guest.step("check", 120).facts
        guest.step("prepare", job.guest.prepare_timeout)


def serve_test_image(job: Job, stack: contextlib.ExitStack, machine: Machine) -> str | None:
    """The disk image glance gets for tempest, as the guest reaches it (None: none needed)."""
    directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tlc-image-")))
    image = make_test_image(job, directory)
    if image is None or isinstance(image, str):
        return image
    return machine.serve(image, f"tempest/{image.name}")


def install_profile(ctx: RunContext, guest: Guest) -> None:
    with ctx.stage("install", f"Installing OpenStack (profile {ctx.job.tempest.profile})"):
        guest.step("install", ctx.job.guest.install_timeout)


def install_candidates(ctx: RunContext, stack: contextlib.ExitStack, guest: Guest,
                       machine: Machine) -> None:
    """The candidates' repository served to the guest, then the guest's candidates step.

    apt's refusal (unmet dependency, conflict, a downgrade) is the candidates'
    fault: exit 12 with apt's reason, not a testbed failure.
    """
    with ctx.stage("candidates", "Installing the candidates"):
        wanted: dict[str, Any] = {"packages": {c.package: c.version for c in ctx.candidates},
                                  # Extra archives through the proxy: by their prefix there.
                                  "sources": guest_sources(ctx.job, machine.network)[1]}
        if ctx.candidates:
            url = machine.urls[REPO_DIR]
            wanted["repository"] = url
            host = urllib.parse.urlsplit(url).hostname
            if machine.network.apt_proxy and host:
                # The host's own HTTP server, not through the apt proxy (Debian's archive only).
                wanted["direct_host"] = host
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


def configure_cloud(ctx: RunContext, guest: Guest) -> None:
    with ctx.stage("configure", "Configuring OpenStack"):
        guest.step("configure", ctx.job.guest.configure_timeout)
        guest.step("tempest-conf", ctx.job.guest.configure_timeout)


def candidate_failure(error: StepFailed) -> CandidateError | None:
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


def _run_tempest(ctx: RunContext, guest: Guest) -> tuple[ExitCode, str | None]:
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
        metadata = run_metadata(job.name, ctx.run_id, job.tempest.profile, guest.results,
                                ctx.facts.get("candidates"))
        result = process_run(ctx.output_dir / STREAM, ctx.output_dir, metadata,
                             rerun=rerun if job.tempest.rerun_failures and not signalled
                             else None,
                             rerun_attempts=job.tempest.rerun_failures, interrupted=interrupted)
    print_summary(result)
    if signalled:
        raise KeyboardInterrupt("interrupted while tempest ran")
    return result.exit_code, str(result.summary["verdict"])


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


def _collect_guest_logs(ctx: RunContext, guest: Guest) -> None:
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
@job_options
@click.option("--output", "-o", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Output directory, copied into the results store at the end "
                   "[default: the run's directory in the results store, RESULTS_DIR/JOB/RUN_ID].")
@click.option("--keep-on-failure", is_flag=True, help="Leave the guest running if the run fails.")
@click.option("--testbed-wait", type=click.FloatRange(min=0), default=0, show_default=True,
              metavar="SECONDS",
              help="With testbed.mode: persistent, wait this long for another run (or a kept "
                   "guest) to free the testbed; refused at once by default.")
@click.option("--machine", default=DEFAULT, show_default=True, metavar="libvirt|ssh:USER@HOST:PORT",
              help="Where the guest stages run: a guest booted on the job's testbed (libvirt), "
                   "or a machine that is already up, reached over SSH (USER root and PORT 22 "
                   "when left out); the job's image, testbed and vm settings are then unused.")
@click.option("--ssh-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --machine ssh: the private key to log in with.")
@click.option("--host-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="With --machine ssh: the machine's public host key (a .pub file or a "
                   "known_hosts line); any other key is refused.")
@click.option("--ssh-netns", default=None, metavar="NAME",
              help="With --machine ssh: reach the machine from network namespace NAME (a kept "
                   "guest's testbed).")
@click.pass_context
def run(ctx: click.Context, job_file: str | None, output: Path | None,
        keep_on_failure: bool, testbed_wait: float, machine: str, ssh_key: Path | None,
        host_key: Path | None, ssh_netns: str | None, **given: Any) -> int:
    """Run a job end to end (default job: smoke-trixie)."""

    backend = open_backend(machine, MachineOptions(ssh_key, host_key, ssh_netns))
    # The keys that declare an option (job.py's setting(option=...)); the candidates'
    # are merged where they are inspected.
    job = with_options(load_job_or_default(job_file), given)
    job, found = resolve_candidates(job, given["guest_candidates"] or (),
                                    given["guest_candidate_sources"] or (),
                                    given["guest_keyring"])
    backend.check(job)
    return run_job(job, candidates=found, output_dir=output,
                   keep_on_failure=keep_on_failure, debug=bool(ctx.obj and ctx.obj.get("debug")),
                   testbed_wait=testbed_wait, backend=backend)
