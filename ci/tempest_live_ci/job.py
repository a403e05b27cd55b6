"""Job definitions: YAML → frozen dataclasses.

Each section is a dataclass, read by schema.py: the YAML keys are its field
names with dashes or underscores. Unknown keys, wrong types and bad values
are UsageErrors naming the file and the dotted key (`jobs/x.yaml: vm.memory:
...`), raised before anything is done on the host. The `job` commands are in
job_commands.py.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tempest_live_ci import paths
from tempest_live_ci.archives import parse_sources_list
from tempest_live_ci.candidates import collect_candidates, parse_source_line
from tempest_live_ci.deploy.profiles import PROFILES
from tempest_live_ci.errors import UsageError, shown
from tempest_live_ci.image.model import (
    COMPRESSION_LEVELS,
    DEFAULT_COMPRESSION,
    DEFAULT_MIRROR,
    DEFAULT_SUITE,
    SUITES,
    ImageOptions,
)
from tempest_live_ci.image.model import validate as validate_image
from tempest_live_ci.inputs import check_regular
from tempest_live_ci.results.names import LATEST, STREAM, SUMMARY
from tempest_live_ci.schema import Check, check_text, key_text, section
from tempest_live_ci.siteconfig import site_config
from tempest_live_ci.testbed.config import ISOLATED, MODES, TestbedConfig
from tempest_live_ci.testbed.config import validate as validate_testbed
from tempest_live_ci.vm.config import BOOT_MODES, MIN_MEMORY_MIB, NIC_MODELS, BootTimeouts, VMConfig
from tempest_live_ci.yamlfile import read_yaml

DEFAULT_JOB = "smoke-trixie"  # what `run` and `job show` take without a job

AUTO = "auto"  # tempest.profile: chosen from the candidates
# results.gate: "all": any failure fails the run (exit 4). "regressions": only
# a failure the baseline did not have and that failed again on re-run.
GATES = ("all", "regressions")
# Every validating pattern is applied with fullmatch(): with match() and `$`,
# a value ending in a newline would pass.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Seven digits at most: 9999999G is past any host, and int() stays cheap.
_MEMORY = re.compile(r"([0-9]{1,7}) ?([MG])(i?B)?", re.IGNORECASE)
_IMAGE = re.compile(r"(https?://)?[A-Za-z0-9./_:~+%-]+")
SCRIPTS = ("guest.setup_commands",)
# A regex for stestr; re.compile() of a longer one costs more than it tells.
MAX_REGEX = 4096


@dataclass(frozen=True)
class TestbedSection:
    """The testbed keys a job may set; their defaults are TestbedConfig's."""

    __test__ = False

    mode: str = TestbedConfig.mode
    host_address: str = TestbedConfig.host_address
    host_ipv6: str | None = TestbedConfig.host_ipv6
    guest_address: str | None = TestbedConfig.guest_address
    guest_mac: str = TestbedConfig.guest_mac
    apt_proxy: bool = TestbedConfig.apt_proxy
    nat: bool = TestbedConfig.nat


@dataclass(frozen=True)
class ImageSection:
    suite: str = DEFAULT_SUITE
    mirror: str = DEFAULT_MIRROR
    packages: tuple[str, ...] = ()
    compression: str = DEFAULT_COMPRESSION
    compression_level: int | None = None
    ssh_key: str | None = None
    # The profile's packages in the image (dpkg at native speed at build time),
    # or installed in the guest (the old tool's way; for hosts with real KVM).
    preinstall: bool = True
    # false: the archive's Release may be past its Valid-Until (a snapshot
    # mirror, a copy frozen for a reproducible run); every apt reading it is
    # told so: the archive lookup, live-build, the guest and its candidates.
    check_valid_until: bool = True


@dataclass(frozen=True)
class VmSection:
    # Default: what the job's profile needs (deploy/profiles.py, measured).
    memory: str | None = None
    vcpus: int | None = None
    boot: str = VMConfig.boot  # one of vm/config.py's BOOT_MODES
    nic_model: str = VMConfig.nic_model  # one of vm/config.py's NIC_MODELS
    # Seconds from the start of the guest: the same defaults as `vm boot`'s.
    dhcp_timeout: int = int(BootTimeouts.dhcp)
    kernel_timeout: int = int(BootTimeouts.kernel)
    ssh_timeout: int = int(BootTimeouts.ssh)

    @property
    def memory_mib(self) -> int:
        assert self.memory is not None  # the profile's default is filled in on load
        match = _MEMORY.fullmatch(self.memory)
        assert match is not None  # validated on load
        value = int(match.group(1))
        return value * 1024 if match.group(2).upper() == "G" else value


@dataclass(frozen=True)
class GuestSection:
    # The suite the guest is upgraded to, when it is not the image's.
    suite: str | None = None
    sources_list: str | None = None
    # Packages under test: .deb and .changes files, directories of .debs
    # (added to --candidate). Installed after the profile, pinned at 1001.
    candidates: tuple[str, ...] = ()
    # Extra apt sources, "deb URL SUITE [COMPONENT...]" (added to --candidate-source).
    candidate_sources: tuple[str, ...] = ()
    # Checks the signature of signed .changes candidates (added to --keyring).
    keyring: str | None = None
    # Shell commands run in the guest (never on the host) after apt-get update.
    setup_commands: tuple[str, ...] = ()
    # On sid: the profile's packages from experimental where it has newer ones
    # (the next release during a freeze), what they need with them, sid for
    # the rest (deploy/experimental.py).
    experimental: bool = False
    # Seconds each in-guest step may take: sized for TCG. The full profile's
    # configuration took 18 min alone on the host and over 30 with a second
    # guest booting beside it.
    prepare_timeout: int = 1200
    install_timeout: int = 3600
    configure_timeout: int = 3600


@dataclass(frozen=True)
class TempestSection:
    # "auto": the profile that covers the candidates' source packages (candidates.py).
    profile: str = "identity"
    regex: str | None = None
    exclude_regex: str | None = None
    smoke: bool = False
    include_list: str | None = None
    exclude_list: str | None = None
    concurrency: int | None = None  # default: the guest's vCPUs
    timeout: int = 7200
    rerun_failures: int = 0
    # tempest.conf values over what discovery finds: {"section.key": value}
    conf: dict[str, str] = field(default_factory=dict)
    # The disk image glance gets for tempest (compute.image_ref): a file on the
    # host or an http(s) URL. Default: a small raw image made on the host,
    # enough for nova's fake driver; instances that really boot need a real one.
    image: str | None = None


@dataclass(frozen=True)
class ResultsSection:
    # "latest" (the newest stored run of baseline_job without candidates) or
    # the path of a run directory: what the results are compared with.
    baseline: str | None = None
    # Whose stored runs "latest" looks at: by default this job's own.
    baseline_job: str | None = None
    gate: str = GATES[0]  # see GATES


@dataclass(frozen=True)
class Job:
    name: str
    description: str = ""
    testbed: TestbedSection = field(default_factory=TestbedSection)
    image: ImageSection = field(default_factory=ImageSection)
    vm: VmSection = field(default_factory=VmSection)
    guest: GuestSection = field(default_factory=GuestSection)
    tempest: TempestSection = field(default_factory=TempestSection)
    results: ResultsSection = field(default_factory=ResultsSection)
    source: str = "<defaults>"


SECTIONS: dict[str, type[Any]] = {
    "testbed": TestbedSection,
    "image": ImageSection,
    "vm": VmSection,
    "guest": GuestSection,
    "tempest": TempestSection,
    "results": ResultsSection,
}

def _one_of(values: Sequence[str]) -> str:
    """'a, b or c'."""
    return f"{', '.join(values[:-1])} or {values[-1]}" if len(values) > 1 else values[0]


# Per-key checks beyond the type: (predicate, what the value must be). The
# allowed values are those of the modules that use them.
CHECKS: dict[str, Check] = {
    "testbed.mode": (lambda v: bool(v in MODES), _one_of(MODES)),
    "image.compression": (lambda v: bool(v in COMPRESSION_LEVELS), _one_of(list(COMPRESSION_LEVELS))),
    "vm.memory": (lambda v: _memory_ok(v), f"a size such as 8G or 6144M, {MIN_MEMORY_MIB}M at least"),
    "vm.vcpus": (lambda v: bool(1 <= v <= 256), "between 1 and 256"),
    "vm.boot": (lambda v: bool(v in BOOT_MODES), _one_of(BOOT_MODES)),
    "vm.nic_model": (lambda v: bool(v in NIC_MODELS), _one_of(NIC_MODELS)),
    "vm.dhcp_timeout": (lambda v: bool(v > 0), "positive"),
    "vm.kernel_timeout": (lambda v: bool(v > 0), "positive"),
    "vm.ssh_timeout": (lambda v: bool(v > 0), "positive"),
    "image.suite": (lambda v: bool(v in SUITES), _one_of(SUITES)),
    "guest.suite": (lambda v: bool(v in SUITES), _one_of(SUITES)),
    "guest.setup_commands": (lambda v: not any(c.startswith("-") for c in v),
                             "a list of shell commands, none starting with -"),
    "guest.prepare_timeout": (lambda v: bool(v > 0), "positive"),
    "guest.install_timeout": (lambda v: bool(v > 0), "positive"),
    "guest.configure_timeout": (lambda v: bool(v > 0), "positive"),
    "tempest.profile": (lambda v: bool(v in PROFILES or v == AUTO), " | ".join([*PROFILES, AUTO])),
    "tempest.regex": (lambda v: _is_regex(v), "a valid regular expression (not starting "
                      "with -)"),
    "tempest.exclude_regex": (lambda v: _is_regex(v), "a valid regular expression (not "
                              "starting with -)"),
    "results.baseline_job": (lambda v: bool(_NAME.fullmatch(v)), "a job name"),
    "results.gate": (lambda v: bool(v in GATES), _one_of(GATES)),
    "tempest.concurrency": (lambda v: bool(1 <= v <= 64), "between 1 and 64"),
    "tempest.image": (lambda v: bool(_IMAGE.fullmatch(v)),
                      "a file or an http(s) URL (letters, digits and ./_:~+%-)"),
    "tempest.timeout": (lambda v: bool(v > 0), "positive"),
    "tempest.rerun_failures": (lambda v: bool(0 <= v <= 5), "between 0 and 5"),
}


def _memory_ok(value: str) -> bool:
    """A size VmSection.memory_mib reads, and no less than a guest needs (vm/config.py)."""
    match = _MEMORY.fullmatch(value)
    if match is None:
        return False
    mib = int(match.group(1)) * (1024 if match.group(2).upper() == "G" else 1)
    return mib >= MIN_MEMORY_MIB


def _is_regex(value: str) -> bool:
    """A regex `tempest run --regex` takes: it compiles, and no option starts with it."""
    if value.startswith("-") or len(value) > MAX_REGEX:
        return False
    try:
        re.compile(value)
    except (re.error, RecursionError, OverflowError, ValueError):
        # "((((...": the parser's recursion; "a{9999999999}": a repeat too large.
        return False
    return True


def parse_job(data: Any, source: str, default_name: str) -> Job:
    def fail(e: UsageError) -> UsageError:
        return UsageError(f"{source}: {e.message}", hint=e.hint)

    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UsageError(f"{source}: a job is a mapping of sections, got {type(data).__name__}")
    known = {"name", "description", *SECTIONS}
    for key in data:
        if key not in known:
            raise UsageError(f"{source}: {key_text(key)}: unknown key "
                             f"(known: {', '.join(sorted(known))})")
    name = data.get("name", default_name)
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(f"{source}: name: {shown(name)} is not a valid job name "
                         "(letters, digits, . _ -; 64 at most)")
    description = data.get("description", "")
    if not isinstance(description, str):
        raise UsageError(f"{source}: description: expected a string")
    try:
        check_text("description", description)
    except UsageError as e:
        raise fail(e) from None
    try:
        sections = {key: section(key, cls, data.get(key), checks=CHECKS, scripts=SCRIPTS)
                    for key, cls in SECTIONS.items()}
    except UsageError as e:
        raise fail(e) from None
    job = profile_defaults(Job(name=name, description=description, source=source, **sections))
    job = _site_image_defaults(job, data.get("image"))
    if Path(source).is_file():
        job = _resolve_paths(job, Path(source).resolve().parent)
    try:
        _check_cross(job)
    except UsageError as e:
        raise fail(e) from None
    return job


def _site_image_defaults(job: Job, image: Any) -> Job:
    """The site's image.mirror and image.check_valid_until (config.yaml) where the job says none."""
    named = {str(key).replace("-", "_") for key in image} if isinstance(image, dict) else set()
    site = site_config().image
    values: dict[str, Any] = {}
    if "mirror" not in named and site.mirror:
        values["mirror"] = site.mirror
    if "check_valid_until" not in named and site.check_valid_until is not None:
        values["check_valid_until"] = site.check_valid_until
    if not values:
        return job
    return dataclasses.replace(job, image=dataclasses.replace(job.image, **values))


def profile_defaults(job: Job) -> Job:
    """vm.memory and vm.vcpus the job leaves out: what its profile needs."""
    profile = PROFILES.get(job.tempest.profile)
    if profile is None:
        return job
    return dataclasses.replace(job, vm=dataclasses.replace(
        job.vm,
        memory=job.vm.memory or f"{profile.memory_mib}M",
        vcpus=job.vm.vcpus or profile.vcpus))


def _is_url(value: str) -> bool:
    return value.startswith(("http://", "https://"))


def _resolve_paths(job: Job, base: Path) -> Job:
    """Relative paths in a job file name files beside it, wherever the tool is run from."""
    def resolved(value: str | None) -> str | None:
        return None if value is None else str(base / value)

    return dataclasses.replace(
        job,
        image=dataclasses.replace(job.image, ssh_key=resolved(job.image.ssh_key)),
        guest=dataclasses.replace(
            job.guest, sources_list=resolved(job.guest.sources_list),
            candidates=tuple(str(base / c) for c in job.guest.candidates),
            keyring=resolved(job.guest.keyring)),
        tempest=dataclasses.replace(
            job.tempest, include_list=resolved(job.tempest.include_list),
            exclude_list=resolved(job.tempest.exclude_list),
            image=job.tempest.image if job.tempest.image is None or _is_url(job.tempest.image)
            else resolved(job.tempest.image)),
        results=dataclasses.replace(
            job.results, baseline=job.results.baseline if job.results.baseline in (None, LATEST)
            else resolved(job.results.baseline)),
    )


def _check_cross(job: Job) -> None:
    """Checks that involve the testbed's own rules, and files the job names."""
    # The same rules as the command line's, each message naming the job's key.
    validate_testbed(testbed_config(job, "tlc-check"),
             option=lambda key: f"testbed.{key.replace('-', '_')}")
    image = job.image
    validate_image(ImageOptions(
        suite=image.suite, mirror=image.mirror, packages=image.packages,
        profile=job.tempest.profile if image.preinstall and job.tempest.profile != AUTO else None,
        compression=image.compression, compression_level=image.compression_level,
        ssh_key=Path(image.ssh_key) if image.ssh_key else None,
    ), option=lambda key: "tempest.profile" if key == "profile" else f"image.{key.replace('-', '_')}")
    check_candidates(job, job.guest.candidates, job.guest.candidate_sources, job.guest.keyring,
                     keys=("guest.candidates", "guest.candidate_sources", "guest.keyring"))
    check_results(job.results)
    for key, value in (("guest.sources_list", job.guest.sources_list),
                       ("tempest.include_list", job.tempest.include_list),
                       ("tempest.exclude_list", job.tempest.exclude_list),
                       ("tempest.image", None if job.tempest.image is None
                        or _is_url(job.tempest.image) else job.tempest.image)):
        if value is not None:
            # A regular file, not a link: what the run copies to the guest or
            # publishes on the testbed is what the job's author could name.
            check_regular(value, key)
    if job.guest.sources_list is not None:
        # Each line checked, like candidate_sources: what the apt proxy passes.
        parse_sources_list(Path(job.guest.sources_list), "guest.sources_list",
                           apt_proxy=job.testbed.apt_proxy)
    suite = job.guest.suite or job.image.suite
    if job.guest.experimental and suite != "sid":
        raise UsageError(f"guest.experimental: experimental is built on sid, the job's suite is "
                         f"{suite} (image.suite or guest.suite: sid)")
    if job.tempest.smoke and job.tempest.include_list:
        raise UsageError("tempest.smoke: cannot be combined with tempest.include_list")


def check_candidates(job: Job, candidates: Sequence[str], sources: Sequence[str],
                     keyring: str | None, *, keys: tuple[str, str, str]) -> tuple[Any, ...]:
    """The candidates and sources of the job or the command line, checked; the Candidates."""
    if keyring is not None:
        check_regular(keyring, keys[2])
    found = collect_candidates(candidates, option=lambda i: f"{keys[0]}[{i}]",
                               keyring=Path(keyring) if keyring else None)
    for i, line in enumerate(sources):
        parse_source_line(line, f"{keys[1]}[{i}]", apt_proxy=job.testbed.apt_proxy)
    return found


def check_results(results: ResultsSection) -> None:
    baseline = results.baseline
    if baseline is not None and baseline != LATEST:
        path = Path(baseline)
        if not ((path / SUMMARY).is_file() or (path / STREAM).is_file()):
            raise UsageError(f"results.baseline: {baseline}: not a run directory (no {SUMMARY} "
                             f"or {STREAM}); 'latest' or the path of a run's output")
    if results.gate == "regressions" and baseline is None:
        raise UsageError("results.gate: regressions needs a results.baseline to tell them "
                         "from known failures")
    if results.baseline_job is not None and baseline != LATEST:
        raise UsageError("results.baseline_job: only used with results.baseline: latest")


def testbed_config(job: Job, run_id: str) -> TestbedConfig:
    t = job.testbed
    return TestbedConfig(
        name=run_id if t.mode == ISOLATED else TestbedConfig.name,
        mode=t.mode,
        host_address=t.host_address,
        host_ipv6=t.host_ipv6,
        guest_address=t.guest_address,
        guest_mac=t.guest_mac.lower(),
        apt_proxy=t.apt_proxy,
        nat=t.nat,
    )


SHIPPED = "shipped"
SITE = "site"


@dataclass(frozen=True)
class JobFile:
    """A job `job list` shows: shipped with the tool, or the site's own (/etc)."""

    path: Path
    origin: str  # SHIPPED or SITE
    # A shipped job a site job of the same file name replaces.
    overridden: bool = False

    @property
    def name(self) -> str:
        return self.path.stem


def find_job(name: str) -> Path:
    """The job file a bare name means: the site's jobs/NAME.yaml, else the shipped one.

    The site's wins, as a file in /etc wins over the package's in /usr/share:
    a site changes a shipped job (the nightly one, say) by copying it there.
    """
    if not _NAME.fullmatch(name):
        raise UsageError(f"{shown(name)}: not a job name (letters, digits, . _ -; 64 at most) "
                         "nor a job file", hint="a job file is named by its path: ./NAME.yaml")
    for directory in (paths.site_jobs_dir(), paths.jobs_dir()):
        path = directory / f"{name}.yaml"
        if path.is_file():
            return path
    raise UsageError(f"{name}: no such job file (neither {paths.site_jobs_dir()}/{name}.yaml "
                     f"nor {paths.jobs_dir()}/{name}.yaml)", hint="tempest-live-ci job list")


def load_job(path: str | Path) -> Job:
    """Load a job file; a bare name means the site's or the shipped job of that name (find_job).

    A bare name is a word (a str) without a slash or a suffix that names no
    file here; it must be a job name in full. Anything else is a path: the
    text as given (./NAME stays a path), or a Path.
    """
    if isinstance(path, str) and "/" not in path and not Path(path).suffix \
            and not os.path.lexists(path):
        path = find_job(path)
    if not os.path.lexists(path):
        raise UsageError(f"{os.fspath(path)}: no such job file")
    path = Path(path)
    return parse_job(read_yaml(path), str(path), path.stem)


def job_as_dict(job: Job) -> dict[str, Any]:
    data = dataclasses.asdict(job)
    data.pop("source")
    return data


def list_jobs() -> list[Path]:
    """The jobs shipped with the tool."""
    directory = paths.jobs_dir()
    return sorted(directory.glob("*.yaml")) if directory.is_dir() else []


def job_files() -> list[JobFile]:
    """Every job a bare name can mean, the site's and the shipped ones, by name."""
    site_dir = paths.site_jobs_dir()
    site = sorted(site_dir.glob("*.yaml")) if site_dir.is_dir() else []
    names = {p.stem for p in site}
    found = [JobFile(p, SITE) for p in site]
    found += [JobFile(p, SHIPPED, overridden=p.stem in names) for p in list_jobs()]
    return sorted(found, key=lambda f: (f.name, f.origin != SITE))


def load_job_or_default(job_file: str | None) -> Job:
    """The job a command names, or without one the default job (DEFAULT_JOB)."""
    if job_file is None:
        try:
            return load_job(DEFAULT_JOB)
        except UsageError:
            # The defaults are embedded too, so a bare checkout or package runs.
            return parse_job({}, "<embedded>", DEFAULT_JOB)
    return load_job(job_file)
