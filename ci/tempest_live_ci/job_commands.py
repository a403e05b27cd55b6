"""`job validate|list|show`: the job files (job.py) from the command line."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click

from tempest_live_ci.errors import ExitCode
from tempest_live_ci.job import job_as_dict, job_files, load_job, load_job_or_default
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import log

if TYPE_CHECKING:
    import yaml
else:
    yaml = lazy_module("yaml")


@click.group()
def job() -> None:
    """Validate, list and show job definitions."""


@job.command("validate")
@click.argument("job_files", nargs=-1, required=True, metavar="JOB.yaml...")
def validate_command(job_files: tuple[str, ...]) -> int:
    """Check job files; exit 20 at the first invalid one, naming file and key."""
    for job_file in job_files:
        loaded = load_job(job_file)
        log.info("%s: valid job %s", loaded.source, loaded.name)
    return ExitCode.OK


@job.command("list")
def list_command() -> int:
    """The jobs a name can mean: the site's (/etc/tempest-live-ci/jobs) and the shipped ones.

    A site job named like a shipped one replaces it; the shipped one is
    listed as overridden.
    """
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
    loaded = load_job_or_default(job_file)
    data = job_as_dict(loaded)
    click.echo(json.dumps(data, indent=1) if as_json else yaml.safe_dump(data, sort_keys=False),
               nl=as_json)
    return ExitCode.OK
