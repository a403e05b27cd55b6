"""`tempest-live-ci run`, `job validate|list|show`, `cleanup`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from tempest_live_ci.errors import ExitCode
from tempest_live_ci.log import log

if TYPE_CHECKING:
    from tempest_live_ci.job import Job

DEFAULT_JOB = "smoke-trixie"


def _load(job_file: str | None) -> Job:
    from tempest_live_ci.job import load_job, parse_job
    from tempest_live_ci.errors import UsageError

    if job_file is None:
        try:
            return load_job(DEFAULT_JOB)
        except UsageError:
            # The defaults are embedded too, so a bare checkout or package runs.
            return parse_job({}, "<embedded>", DEFAULT_JOB)
    return load_job(job_file)


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
    from tempest_live_ci.run import image_options, resolve_candidates, run_job

    job = _load(job_file)
    job, found = resolve_candidates(job, candidates, candidate_sources, keyring)
    image_options(job)
    return run_job(job, candidates=found, output_dir=output,
                   keep_on_failure=keep_on_failure, debug=bool(ctx.obj and ctx.obj.get("debug")),
                   testbed_wait=testbed_wait)


@click.group()
def job() -> None:
    """Validate, list and show job definitions."""


@job.command("validate")
@click.argument("job_files", nargs=-1, required=True, metavar="JOB.yaml...")
def validate_command(job_files: tuple[str, ...]) -> int:
    """Check job files; exit 20 at the first invalid one, naming file and key."""
    from tempest_live_ci.job import load_job
    from tempest_live_ci.run import image_options

    for job_file in job_files:
        loaded = load_job(job_file)
        image_options(loaded)
        log.info("%s: valid job %s", loaded.source, loaded.name)
    return ExitCode.OK


@job.command("list")
def list_command() -> int:
    """The jobs a name can mean: the site's (/etc/tempest-live-ci/jobs) and the shipped ones.

    A site job named like a shipped one replaces it; the shipped one is
    listed as overridden.
    """
    from tempest_live_ci.job import job_files, load_job

    files = job_files()
    width = max([16, *(len(f.name) for f in files)])
    for f in files:
        loaded = load_job(f.path)
        origin = f"{f.origin}, overridden" if f.overridden else f.origin
        click.echo(f"{f.name:{width}} {origin:19} {loaded.description}")
    return ExitCode.OK


@job.command("show")
@click.argument("job_file", required=False, metavar="[JOB.yaml|NAME]")
@click.option("--json", "as_json", is_flag=True)
def show_command(job_file: str | None, as_json: bool) -> int:
    """Print a job with every default filled in."""
    import yaml

    from tempest_live_ci.job import job_as_dict

    loaded = _load(job_file)
    data = job_as_dict(loaded)
    click.echo(json.dumps(data, indent=1) if as_json else yaml.safe_dump(data, sort_keys=False),
               nl=as_json)
    return ExitCode.OK


@click.command()
@click.option("--dry-run", is_flag=True, help="Only say what would be removed.")
@click.option("--include-kept", is_flag=True,
              help="Also remove runs kept on purpose (--keep-on-failure, vm boot).")
def cleanup(dry_run: bool, include_kept: bool) -> int:
    """Remove what killed runs left behind (namespaces, daemons, domains, state)."""
    from tempest_live_ci.cleanup import cleanup as do_cleanup
    from tempest_live_ci.testbed.config import require_root

    require_root()
    lines = do_cleanup(dry_run=dry_run, include_kept=include_kept)
    for line in lines:
        click.echo(line)
    if not lines:
        log.info("nothing to clean up")
    return ExitCode.OK
