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
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from tempest_live_ci import paths
from tempest_live_ci.archives import parse_sources_list
from tempest_live_ci.candidates import (
    FULL,
    Candidate,
    collect_candidates,
    distinct,
    parse_source_line,
    profile_for,
)
from tempest_live_ci.deploy.params import DISCOVER_ALL, DISCOVER_AUTO
from tempest_live_ci.deploy.params import PACKAGE as _PACKAGE
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
from tempest_live_ci.log import format_duration, log
from tempest_live_ci.results.names import LATEST, STREAM, SUMMARY
from tempest_live_ci.schema import (
    POSITIVE,
    Rule,
    Setting,
    between,
    check_text,
    coerce,
    key_text,
    one_of,
    section,
    setting,
    setting_of,
)
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
# A regex for stestr; re.compile() of a longer one costs more than it tells.
MAX_REGEX = 4096


MEMORY_MUST_BE = f"a size such as 8G or 6144M, {MIN_MEMORY_MIB}M at least"


def _a_file(value: str) -> bool:
    return True


def _not_a_url(value: str) -> bool:
    return not _is_url(value)


def _not_latest(value: str) -> bool:
    return value != LATEST


@dataclass(frozen=True)
class TestbedSection:
    """The testbed keys a job may set; their defaults and rules are TestbedConfig's."""

    __test__ = False

    mode: str = setting(TestbedConfig.mode, rule=one_of(MODES), plan="{}")
    host_address: str = setting(TestbedConfig.host_address, plan="{}")
    host_ipv6: str | None = TestbedConfig.host_ipv6
    guest_address: str | None = TestbedConfig.guest_address
    guest_mac: str = setting(TestbedConfig.guest_mac, plan="guest {}")
    apt_proxy: bool = setting(TestbedConfig.apt_proxy, plan="archive through the apt proxy")
    nat: bool = setting(TestbedConfig.nat, plan="NAT")


@dataclass(frozen=True)
class ImageSection:
    suite: str = setting(DEFAULT_SUITE, rule=one_of(SUITES), plan="{}")
    mirror: str = setting(DEFAULT_MIRROR, site=True)
    packages: tuple[str, ...] = setting((), plan=lambda v: f"extra packages: {' '.join(v)}")
    compression: str = setting(DEFAULT_COMPRESSION, rule=one_of(list(COMPRESSION_LEVELS)),
                               plan="{} compression")
    compression_level: int | None = None
    ssh_key: str | None = setting(None, path=_a_file)
    # The profile's packages in the image (dpkg at native speed at build time),
    # or installed in the guest (the old tool's way; for hosts with real KVM).
    preinstall: bool = setting(True, plan=lambda v: "profile preinstalled" if v
                               else "profile installed in the guest")
    # false: the archive's Release may be past its Valid-Until (a snapshot
    # mirror, a copy frozen for a reproducible run); every apt reading it is
    # told so: the archive lookup, live-build, the guest and its candidates.
    check_valid_until: bool = setting(True, site=True, plan=lambda v: "" if v
                                      else "an expired Release accepted")


@dataclass(frozen=True)
class VmSection:
    # Default: what the job's profile needs (deploy/profiles.py, measured).
    memory: str | None = setting(None, rule=Rule(lambda v: _memory_ok(v), MEMORY_MUST_BE),
                                 plan="{}")
    vcpus: int | None = setting(None, rule=between(1, 256), plan="{} vCPUs")
    boot: str = setting(VMConfig.boot, rule=one_of(BOOT_MODES), plan="{} boot")
    nic_model: str = setting(VMConfig.nic_model, rule=one_of(NIC_MODELS))
    # Seconds from the start of the guest: the same defaults as `vm boot`'s.
    dhcp_timeout: int = setting(int(BootTimeouts.dhcp), rule=POSITIVE)
    kernel_timeout: int = setting(int(BootTimeouts.kernel), rule=POSITIVE)
    ssh_timeout: int = setting(int(BootTimeouts.ssh), rule=POSITIVE)

    @property
    def memory_mib(self) -> int:
        assert self.memory is not None  # the profile's default is filled in on load
        mib = memory_mib(self.memory)
        assert mib is not None  # validated on load
        return mib


@dataclass(frozen=True)
class GuestSection:
    # The suite the guest is upgraded to, when it is not the image's.
    suite: str | None = setting(None, rule=one_of(SUITES), plan="upgraded to {}")
    sources_list: str | None = setting(None, path=_a_file, plan="sources from {}")
    # Packages under test: .deb and .changes files, directories of .debs
    # (added to --candidate). Installed after the profile, pinned at 1001.
    candidates: tuple[str, ...] = setting(
        (), path=_a_file, option="--candidate",
        help="A .deb, a .changes or a directory of .debs to test (repeatable).")
    # Extra apt sources, "deb URL SUITE [COMPONENT...]" (added to --candidate-source).
    candidate_sources: tuple[str, ...] = setting(
        (), option="--candidate-source", metavar="'deb URL SUITE COMPONENT'",
        help="An extra apt source for the guest (repeatable).")
    # Checks the signature of signed .changes candidates (replaced by --keyring).
    keyring: str | None = setting(
        None, path=_a_file, option="--keyring",
        help="Check the signature of signed .changes candidates with this keyring.")
    # Shell commands run in the guest (never on the host) after apt-get update.
    setup_commands: tuple[str, ...] = setting(
        (), script=True, rule=Rule(lambda v: not any(c.startswith("-") for c in v),
                                   "a list of shell commands, none starting with -"),
        plan=lambda v: f"{len(v)} setup command{'s' if len(v) > 1 else ''}")
    # On sid: the profile's packages from experimental where it has newer ones
    # (the next release during a freeze), what they need with them, sid for
    # the rest (deploy/experimental.py).
    experimental: bool = setting(False, plan="experimental's versions of the profile")
    # Seconds each in-guest step may take: sized for TCG. The full profile's
    # configuration took 18 min alone on the host and over 30 with a second
    # guest booting beside it.
    prepare_timeout: int = setting(1200, rule=POSITIVE)
    install_timeout: int = setting(3600, rule=POSITIVE)
    configure_timeout: int = setting(3600, rule=POSITIVE)


_REGEX = Rule(lambda v: _is_regex(v), "a valid regular expression (not starting with -)")


@dataclass(frozen=True)
class TempestSection:
    # "auto": the profile that covers the candidates' source packages (candidates.py).
    profile: str = setting("identity", rule=Rule(lambda v: bool(v in PROFILES or v == AUTO),
                                                 " | ".join([*PROFILES, AUTO])),
                           plan="profile {}")
    regex: str | None = setting(None, rule=_REGEX, plan="regex {}")
    exclude_regex: str | None = setting(None, rule=_REGEX, plan="exclude regex {}")
    smoke: bool = setting(False, plan="smoke")
    # Where stestr looks for tests (deploy/tempest.py): "all" (tempest's own discovery, its
    # plugins' too), a package ("tempest.api.identity"), or "auto": the package the regex
    # names when it is a dotted name, else all.
    discover: str = setting(DISCOVER_AUTO, plan="discover {}", rule=Rule(
        lambda v: bool(v in (DISCOVER_AUTO, DISCOVER_ALL) or _PACKAGE.fullmatch(v)),
        f"{DISCOVER_AUTO} | {DISCOVER_ALL} | a package (tempest.api.identity)"))
    include_list: str | None = setting(None, path=_a_file, plan="include list {}")
    exclude_list: str | None = setting(None, path=_a_file, plan="exclude list {}")
    # Default: the guest's vCPUs.
    concurrency: int | None = setting(None, rule=between(1, 64), plan="concurrency {}")
    timeout: int = setting(7200, rule=POSITIVE, plan=lambda v: f"timeout {format_duration(v)}")
    rerun_failures: int = setting(0, rule=between(0, 5),
                                  plan="failures re-run up to {} times")
    # tempest.conf values over what discovery finds: {"section.key": value}
    conf: dict[str, str] = setting(factory=dict,
                                   plan=lambda v: f"{len(v)} tempest.conf value"
                                   f"{'s' if len(v) > 1 else ''}")
    # The disk image glance gets for tempest (compute.image_ref): a file on the
    # host or an http(s) URL. Default: a small raw image made on the host,
    # enough for nova's fake driver; instances that really boot need a real one.
    image: str | None = setting(None, path=_not_a_url, plan="test image {}",
                                rule=Rule(lambda v: bool(_IMAGE.fullmatch(v)),
                                          "a file or an http(s) URL (letters, digits and "
                                          "./_:~+%-)"))


@dataclass(frozen=True)
class ResultsSection:
    # "latest" (the newest stored run of baseline_job without candidates) or
    # the path of a run directory: what the results are compared with.
    baseline: str | None = setting(
        None, path=_not_latest, plan="baseline {}", option="--baseline", metavar="latest|DIR",
        help="Compare with this run directory (its summary.json and tempest.subunit), or "
             "with the newest stored run: latest [default: the job's results.baseline].")
    # Whose stored runs "latest" looks at: by default this job's own.
    baseline_job: str | None = setting(None, rule=Rule(lambda v: bool(_NAME.fullmatch(v)),
                                                       "a job name"), plan="of job {}")
    gate: str = setting(GATES[0], rule=one_of(GATES), plan="gate {}")  # see GATES


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


def settings() -> Iterator[tuple[str, dataclasses.Field[Any], Setting]]:
    """Every job key as (section, field, Setting), in the order of the declarations."""
    for name, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            yield name, f, setting_of(f)



def memory_mib(value: str) -> int | None:
    """MiB of a size such as 8G or 6144M; None if it is none."""
    match = _MEMORY.fullmatch(value)
    if match is None:
        return None
    return int(match.group(1)) * (1024 if match.group(2).upper() == "G" else 1)


def _memory_ok(value: str) -> bool:
    """A size VmSection.memory_mib reads, and no less than a guest needs (vm/config.py)."""
    mib = memory_mib(value)
    return mib is not None and mib >= MIN_MEMORY_MIB


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
        sections = {key: section(key, cls, data.get(key))
                    for key, cls in SECTIONS.items()}
    except UsageError as e:
        raise fail(e) from None
    job = profile_defaults(Job(name=name, description=description, source=source, **sections))
    job = _site_defaults(job, data)
    if Path(source).is_file():
        job = _resolve_paths(job, Path(source).resolve().parent)
    try:
        _check_cross(job)
    except UsageError as e:
        raise fail(e) from None
    return job


def _site_defaults(job: Job, data: dict[str, Any]) -> Job:
    """The site's config.yaml values (setting(site=True)) for the keys the job file leaves out."""
    site = site_config()
    changed: dict[str, dict[str, Any]] = {}
    for name, f, declared in settings():
        given = data.get(name)
        named = {str(key).replace("-", "_") for key in given} if isinstance(given, dict) else set()
        value = getattr(getattr(site, name, None), f.name, None)
        if declared.site and f.name not in named and value is not None:
            changed.setdefault(name, {})[f.name] = value
    return _replaced(job, changed)


def _replaced(job: Job, changed: dict[str, dict[str, Any]]) -> Job:
    """The job with {section: {key: value}} replaced."""
    return dataclasses.replace(job, **{
        name: dataclasses.replace(getattr(job, name), **values)
        for name, values in changed.items()})


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
    """Relative paths in a job file name files beside it, wherever the tool is run from
    (setting(path=...))."""
    def resolved(is_file: typing.Callable[[str], bool], value: Any) -> Any:
        if isinstance(value, tuple):
            return tuple(resolved(is_file, v) for v in value)
        return str(base / value) if isinstance(value, str) and is_file(value) else value

    changed: dict[str, dict[str, Any]] = {}
    for name, f, declared in settings():
        if declared.path is not None:
            value = getattr(getattr(job, name), f.name)
            changed.setdefault(name, {})[f.name] = resolved(declared.path, value)
    return _replaced(job, changed)


def plan_lines(job: Job, sections: Sequence[str] = tuple(SECTIONS)) -> list[str]:
    """The job's values as the run's plan shows them: a line per section, from the
    declarations' plan formats; unset and false values are left out."""
    lines = []
    for name in sections:
        cls = SECTIONS[name]
        said = []
        for f in dataclasses.fields(cls):
            plan = setting_of(f).plan
            value = getattr(getattr(job, name), f.name)
            # 0 of a count (re-runs) and empty lists say nothing either.
            if plan is None or value is None or value is False or value in ((), {}, 0):
                continue
            text = plan(value) if callable(plan) else \
                plan if isinstance(value, bool) else plan.format(value)
            if text:
                said.append(text)
        if said:
            lines.append(f"{name}: {', '.join(said)}")
    return lines


def image_options(job: Job) -> ImageOptions:
    """The image a job boots, checked by the image's own rules, each error naming the job's key."""

    image = job.image
    options = ImageOptions(
        suite=image.suite, mirror=image.mirror, apt_proxy=site_config().image_apt_proxy(),
        packages=image.packages,
        # "auto" is resolved by the run, from its candidates (resolve_candidates).
        profile=job.tempest.profile if image.preinstall and job.tempest.profile != AUTO
        else None,
        compression=image.compression, compression_level=image.compression_level,
        ssh_key=Path(image.ssh_key) if image.ssh_key else None,
        check_valid_until=image.check_valid_until,
    )
    validate_image(options, option=lambda key: "tempest.profile" if key == "profile"
                   else f"image.{key.replace('-', '_')}")
    return options


# The candidates' options are merged by the run after it has inspected each once
# (candidates.py): which keyring checks which .changes, the names in errors.
INSPECTED = ("guest.candidates", "guest.candidate_sources", "guest.keyring")


def job_options(command: typing.Callable[..., Any]) -> typing.Callable[..., Any]:
    """`run`'s options for the job keys that declare one (setting(option=...))."""
    for name, f, declared in reversed(list(settings())):
        if declared.option is None:
            continue
        many = typing.get_origin(typing.get_type_hints(SECTIONS[name])[f.name]) is tuple
        kind = click.Path(path_type=Path) if declared.path is _a_file else str
        command = click.option(declared.option, f"{name}_{f.name}", multiple=many, type=kind,
                               default=None, metavar=declared.metavar,
                               help=declared.help)(command)
    return command


def _from_here(is_file: typing.Callable[[str], bool], value: str) -> str:
    """A file named on the command line: relative to the current directory."""
    return str(Path(value).resolve()) if is_file(value) else value


def with_options(job: Job, given: dict[str, Any]) -> Job:
    """The job with what `run`'s declared options gave (job_options): a list is added to,
    a value replaced; a file is named relative to the current directory. Checked as the
    job file's values are, each error naming the option."""
    changed: dict[str, dict[str, Any]] = {}
    for name, f, declared in settings():
        value = given.get(f"{name}_{f.name}")
        if declared.option is None or f"{name}.{f.name}" in INSPECTED or value in (None, ()):
            continue
        hints = typing.get_type_hints(SECTIONS[name])
        value = coerce(declared.option, hints[f.name], list(value) if isinstance(value, tuple)
                        else str(value))
        rule = declared.rule
        if rule is not None and not rule.ok(value):
            raise UsageError(f"{declared.option}: {shown(value)} is not {rule.must_be}")
        is_file = declared.path
        if is_file is not None:
            value = tuple(_from_here(is_file, v) for v in value) if isinstance(value, tuple) \
                else _from_here(is_file, value)
        if isinstance(value, tuple):
            value = (*getattr(getattr(job, name), f.name), *value)
        changed.setdefault(name, {})[f.name] = value
    job = _replaced(job, changed)
    if "results" in changed:
        try:
            check_results(job.results)
        except UsageError as e:
            raise UsageError(e.message.replace("results.baseline:", "--baseline:", 1),
                             hint=e.hint) from None
    return job


def _check_cross(job: Job) -> None:
    """Checks that involve the testbed's own rules, and files the job names."""
    # The same rules as the command line's, each message naming the job's key.
    validate_testbed(testbed_config(job, "tlc-check"),
             option=lambda key: f"testbed.{key.replace('-', '_')}")
    image_options(job)
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
