"""tempest.conf from the running cloud (python3-tempestconf), and the tempest run.

The selection is turned into `tempest run` arguments here, as a pure
function the host's tests exercise with recorded data.
"""

from __future__ import annotations

import importlib.util
import os
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from .configure import KEYSTONE_PORT, SHARED_NETWORK, admin_environment
from .configure import virt_driver as configured_virt_driver
from .params import DISCOVER_ALL, DISCOVER_AUTO, Params, TempestParams
from .profiles import get_profile
from .util import StepError, facts, package_versions, part, run, say

# Seconds tempest waits for an API's answer (its default: 60).
HTTP_TIMEOUT = 300
WORKSPACE = "/var/lib/tempest"  # the tempest package's, with its .stestr.conf
TEMPEST_CONF = "/etc/tempest/tempest.conf"
# stestr's own tag for tempest's smoke tests is the attribute in the test id.
SMOKE = r"\[.*\bsmoke\b.*\]"
# tempest.discover: where stestr looks for the tests. The tempest package's
# .stestr.conf discovers every test of tempest and of its installed plugins,
# in the listing and again in each worker: minutes under TCG, for a job that
# runs three tests of one package.
# A regex that is a dotted name (escaped dots; maybe anchored, maybe ending in a dot).
_DOTTED_REGEX = re.compile(r"\^?([A-Za-z_][A-Za-z0-9_]*(?:\\\.[A-Za-z_][A-Za-z0-9_]*)*)(?:\\\.)?")
# Our own workspace when discovery is narrowed: tempest run uses the .stestr.conf of its
# working directory, and the package's, in WORKSPACE, stays as it is.
NARROW_WORKSPACE = "/var/lib/tempest-live-ci/tempest-workspace"
GROUP_REGEX = r"([^\.]*\.)*"  # the tempest package's: a worker takes a class's tests together


@dataclass(frozen=True)
class Selection:
    regex: str | None = None
    exclude_regex: str | None = None
    smoke: bool = False
    include_list: str | None = None  # a file in the guest
    exclude_list: str | None = None
    load_list: str | None = None
    concurrency: int = 1


def selection_arguments(s: Selection) -> list[str]:
    """`tempest run` arguments for a selection.

    tempest run takes --smoke or --regex, not both; smoke tests matching a
    regex are one regex: the smoke attribute ahead (a lookahead), then the
    job's regex anywhere after the start, as stestr's re.search would find it.
    Each value is one word with its option (--regex=VALUE): a value starting
    with "-" stays the option's value, never an option of its own.
    """
    args: list[str] = []
    if s.smoke and s.regex:
        args += [f"--regex=^(?={'.*'}{SMOKE}).*?(?:{s.regex})"]
    elif s.smoke:
        args += ["--smoke"]
    elif s.regex:
        args += [f"--regex={s.regex}"]
    if s.exclude_regex:
        args += [f"--exclude-regex={s.exclude_regex}"]
    if s.include_list:
        args += [f"--include-list={s.include_list}"]
    if s.exclude_list:
        args += [f"--exclude-list={s.exclude_list}"]
    if s.load_list:
        args += [f"--load-list={s.load_list}"]
    args += [f"--concurrency={s.concurrency}"]
    return args


# Nothing boots under nova's fake driver: servers become ACTIVE with no guest
# behind them, so nothing can be reached, consoled into or migrated.
FAKE_DRIVER_CONF = {
    "validation.run_validation": "false",
    "compute-feature-enabled.vnc_console": "false",
    "compute-feature-enabled.spice_console": "false",
    "compute-feature-enabled.serial_console": "false",
    "compute-feature-enabled.live_migration": "false",
    "compute-feature-enabled.cold_migration": "false",
    "compute-feature-enabled.resize": "false",
    "compute-feature-enabled.rescue": "false",
    "compute-feature-enabled.suspend": "false",
    "compute-feature-enabled.shelve": "false",
    "compute-feature-enabled.snapshot": "false",
    "compute-feature-enabled.attach_encrypted_volume": "false",
    "compute-feature-enabled.config_drive": "false",
    "compute-feature-enabled.interface_attach": "false",
}
# cinder here: LVM over iSCSI (tgt), no backup service.
VOLUME_CONF = {
    "volume.storage_protocol": "iSCSI",
    "volume.vendor_name": "Open Source",
    "volume.backend_names": "lvmdriver-1",
    "volume-feature-enabled.backup": "false",
}


# Tempest's dynamic credentials build a network, a subnet and a router with an
# interface for every test class ("isolated networks"). Under TCG that is
# minutes a class: one add_router_interface took 172.9 s in the full profile,
# POST /v2.0/networks 34 s, with the neutron API process CPU-bound. Under TCG
# the classes share one project network instead (made by network-resources);
# the network API tests still make and check their own networks and routers.
# With KVM the per-class networks are kept, as in upstream's gate.
SHARED_NETWORK_CONF = {
    "auth.create_isolated_networks": "false",
    "compute.fixed_network_name": SHARED_NETWORK,
}


# Seconds tempest waits for a server or a volume to become ready (its
# [compute] and [volume] build_timeout, default 300). Under TCG that is not
# the same wait: in a full-profile run on trixie a volume made from an image
# stayed "downloading" past 300 s while the unit tests shared the cores, and
# ServersTestBootFromVolume's setUpClass failed. Without KVM the waits are
# three times tempest's, and summary.json says so (scaled_timeouts).
BUILD_TIMEOUT = 300
TCG_TIMEOUT_FACTOR = 3
_BUILD_TIMEOUTS = {"nova": "compute.build_timeout", "cinder": "volume.build_timeout"}


def scaled_timeouts(profile_name: str, accelerator: str | None) -> dict[str, str]:
    """tempest.conf's build timeouts this accelerator needs, "section.key" → seconds."""
    if accelerator == "kvm":
        return {}
    available = get_profile(profile_name).service_available()
    return {key: str(BUILD_TIMEOUT * TCG_TIMEOUT_FACTOR)
            for service, key in _BUILD_TIMEOUTS.items() if available.get(service)}


def conf_overrides(profile_name: str, job_conf: Mapping[str, str],
                   virt_driver: str | None = None,
                   accelerator: str | None = None) -> dict[str, str]:
    """What discover-tempest-config is told, "section.key" → value; the job's win."""
    profile = get_profile(profile_name)
    values: dict[str, str] = {
        f"service_available.{name}": "true" if available else "false"
        for name, available in profile.service_available().items()
    }
    values.update({
        "auth.use_dynamic_credentials": "true",
        # In the workspace, where tempest run starts its workers.
        "DEFAULT.log_file": f"{WORKSPACE}/tempest.log",
        "oslo_concurrency.lock_path": f"{WORKSPACE}/lock",
        # tempest gives up on a request after 60 s. Under TCG neutron's
        # add_router_interface took 172.9 s in the full profile: with 60 s one
        # class got the read timeout, others "Cidr X of subnet S overlaps with
        # cidr X of subnet S", neutron's answer to the PUT urllib3 sent again
        # after the first had added the interface.
        "service-clients.http_timeout": str(HTTP_TIMEOUT),
    })
    if profile.service_available().get("nova") and virt_driver == "fake":
        values.update(FAKE_DRIVER_CONF)
    if profile.service_available().get("cinder"):
        values.update(VOLUME_CONF)
    if profile.service_available().get("neutron") and accelerator != "kvm":
        values.update(SHARED_NETWORK_CONF)
    values.update(scaled_timeouts(profile_name, accelerator))
    values.update(profile.conf)
    values.update(job_conf)
    return values


def discover_arguments(overrides: Mapping[str, str], *, image_url: str | None,
                       create: bool) -> list[str]:
    """discover-tempest-config's command line.

    The overrides are positional "section.key value" pairs, after "--": none
    of them is read as an option, whatever it starts with.
    """
    argv = ["discover-tempest-config", "--no-default-deployer", f"--out={TEMPEST_CONF}"]
    if create:
        argv += ["--create"]
    if image_url:
        # Copied up by the ssh backend: discover-tempest-config downloads only
        # http(s):// and copies anything else as a path.
        image_url = image_url.removeprefix("file://")
        # Uploaded to glance twice (image_ref, image_ref_alt). Under the fake
        # driver its content does not matter: the default is raw, no RNG device.
        argv += [f"--image={image_url}", "--image-disk-format="
                 + ("qcow2" if image_url.endswith((".qcow2", ".img")) else "raw"), "--no-rng"]
    argv += ["--"]
    for key, value in overrides.items():
        argv += [key, value]
    return argv


def tempest_conf(p: Params) -> None:
    auth_url = f"http://{p.guest_address}:{KEYSTONE_PORT}/v3/"
    profile = get_profile(p.profile)
    virt_driver = None
    if "nova" in profile.configure:
        virt_driver = configured_virt_driver(p)
        facts["virt_driver"] = virt_driver
    overrides = conf_overrides(p.profile, p.tempest.conf, virt_driver,
                               p.host_accelerator)
    # The scaled waits the job did not set itself, for summary.json.
    facts["scaled_timeouts"] = {key: value for key, value
                                in scaled_timeouts(p.profile, p.host_accelerator).items()
                                if overrides.get(key) == value}
    os.makedirs(f"{WORKSPACE}/lock", exist_ok=True)
    # The two small flavors tempest needs (m1.nano, m1.micro); the user and
    # project heat-tempest-plugin logs in as ([heat_plugin] username, not a
    # dynamic credential).
    create = "nova" in profile.configure or "heat" in profile.configure
    argv = discover_arguments(overrides, image_url=p.image_url, create=create)
    with part("discover-tempest-config"):
        run(argv, env=admin_environment(p, auth_url), cwd=WORKSPACE)
    facts["tempest"] = package_versions(["python3-tempest", "python3-tempestconf"])


# Tests left out because of how this guest runs, with the reason.
# Scenario tests log into the servers they boot (or check what runs in them);
# under nova's fake driver nothing boots.
FAKE_DRIVER_EXCLUDE = (r"^tempest\.scenario\.",
                       "nova's fake driver boots nothing: scenario tests log into their servers")


def exclusions(virt_driver: str | None) -> dict[str, str]:
    """The regexes this guest's setup leaves out of the run → why."""
    if virt_driver == "fake":
        regex, reason = FAKE_DRIVER_EXCLUDE
        return {regex: reason}
    return {}


def combined_exclude(job_regex: str | None, extra: Mapping[str, str]) -> str | None:
    """The job's exclude regex and the setup's, as one (stestr takes one)."""
    parts = ([job_regex] if job_regex else []) + list(extra)
    if len(parts) <= 1:
        return parts[0] if parts else None
    return "|".join(f"(?:{part})" for part in parts)


def discovery_package(discover: str, regex: str | None, include_list: str | None) -> str | None:
    """The package stestr discovers tests in, or None: tempest's own discovery.

    "auto" narrows to the package a regex names when the regex is a dotted
    name (tempest\\.api\\.identity\\.v3): the tests it selects are in it. Not
    with an include list, whose tests may be anywhere; a job whose regex names a
    package that other test ids merely contain sets "all".
    """
    if discover != DISCOVER_AUTO:
        return None if discover == DISCOVER_ALL else discover
    match = _DOTTED_REGEX.fullmatch(regex or "")
    if include_list or match is None:
        return None
    return match.group(1).replace("\\.", ".")


def discovery_paths(package: str) -> tuple[str, str] | None:
    """(test_path, top_dir) for stestr: the deepest package directory on the way to
    `package` (a module or a class named in it: its package), or None if its top
    package is not installed."""
    parts = package.split(".")
    spec = importlib.util.find_spec(parts[0])
    if spec is None or not spec.submodule_search_locations:
        return None
    top_dir = os.path.dirname(next(iter(spec.submodule_search_locations)))
    path = os.path.join(top_dir, parts[0])
    for name in parts[1:]:
        deeper = os.path.join(path, name)
        if not os.path.isfile(os.path.join(deeper, "__init__.py")):
            break
        path = deeper
    return path, top_dir


def stestr_conf(test_path: str, top_dir: str) -> str:
    return f"[DEFAULT]\ntest_path={test_path}\ntop_dir={top_dir}\ngroup_regex={GROUP_REGEX}\n"


def tempest_workspace(t: TempestParams) -> str:
    """Where `tempest run` starts: tempest's workspace, or ours with a narrowed
    .stestr.conf (its path in the step's facts: summary.json says what was discovered)."""
    package = discovery_package(t.discover, t.regex, t.include_list)
    found = discovery_paths(package) if package else None
    if package and found is None:
        if t.discover != DISCOVER_AUTO:
            raise StepError(f"tempest.discover: no package {package} in the guest")
        say(f"discovering every test: {package.split('.')[0]} is not installed")
    if found is None:
        facts["discovered"] = DISCOVER_ALL
        return WORKSPACE
    os.makedirs(NARROW_WORKSPACE, exist_ok=True)
    with open(f"{NARROW_WORKSPACE}/.stestr.conf", "w") as conf:
        conf.write(stestr_conf(*found))
    facts["discovered"] = found[0]
    say(f"discovering tests in {found[0]} only (tempest.discover: {t.discover})")
    return NARROW_WORKSPACE


def run_tempest(p: Params, load_list: str | None = None) -> None:
    """`tempest run --subunit`: the stream on stdout, as stestr flushes it, packet by packet."""
    t = p.tempest
    extra: dict[str, str] = {}
    if "nova" in get_profile(p.profile).configure:
        extra = exclusions(configured_virt_driver(p))
    for regex, reason in extra.items():
        say(f"excluded: {regex} ({reason})")
    facts["excluded_by_setup"] = extra
    selection = Selection(
        regex=t.regex, exclude_regex=combined_exclude(t.exclude_regex, extra),
        smoke=t.smoke,
        include_list=t.include_list, exclude_list=t.exclude_list,
        load_list=load_list, concurrency=t.concurrency)
    argv = ["tempest", "run", "--subunit", "--config-file", TEMPEST_CONF,
            *selection_arguments(selection)]
    workspace = tempest_workspace(t)
    say(f"tempest workspace {workspace}")
    sys.stdout.flush()
    # stestr exits 0 with --subunit even when tests fail: the host judges the stream.
    result = run(argv, cwd=workspace, stdout=sys.stdout, check=False)
    if result.returncode != 0:
        raise StepError(f"tempest run exited with status {result.returncode}")
