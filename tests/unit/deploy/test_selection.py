"""Selection → `tempest run` arguments, checked against real tempest test ids with stestr's matching."""

from __future__ import annotations

import argparse
import re
import subprocess
from pathlib import Path

import pytest

from tempest_live_ci.deploy.configure import SHARED_NETWORK
from tempest_live_ci.deploy.tempest import (
    Selection,
    combined_exclude,
    conf_overrides,
    discover_arguments,
    exclusions,
    scaled_timeouts,
    selection_arguments,
)

# Test ids as `tempest run --list-tests` prints them (tempest 43, trixie).
IDS = [
    "tempest.api.identity.v3.test_tokens.TokensV3Test.test_create_token"
    "[id-6f8e4436-fc96-4282-8122-e41df57197a9,smoke]",
    "tempest.api.identity.v3.test_users.IdentityV3UsersTest.test_user_update_own_password"
    "[id-ad71bd23-12ad-426b-bb8b-195d2b635f27]",
    "tempest.api.identity.admin.v3.test_domains.DomainsTestJSON.test_create_update_delete_domain"
    "[id-f2f5b44a-82e8-4dad-8084-0661ea3b18cf,smoke]",
    "tempest.api.compute.servers.test_create_server.ServersTestJSON.test_list_servers"
    "[id-9a438d88-10c6-4bcd-8b5b-5b6e25e1346f,smoke]",
]


def selected(args: list[str]) -> list[str]:
    """What stestr would pick from IDS for a --regex / --smoke argument list (re.search)."""
    if "--smoke" in args:
        pattern = r"\[.*\bsmoke\b.*\]"
    elif any(a.startswith("--regex=") for a in args):
        pattern = next(a for a in args if a.startswith("--regex=")).removeprefix("--regex=")
    else:
        return list(IDS)
    return [i for i in IDS if re.search(pattern, i)]


def test_regex_alone() -> None:
    args = selection_arguments(Selection(regex=r"tempest\.api\.identity\.v3", concurrency=2))
    assert args == [r"--regex=tempest\.api\.identity\.v3", "--concurrency=2"]
    assert selected(args) == IDS[:2]


def test_smoke_alone() -> None:
    args = selection_arguments(Selection(smoke=True))
    assert args[:1] == ["--smoke"]
    assert selected(args) == [IDS[0], IDS[2], IDS[3]]


def test_smoke_and_regex_are_one_regex_meaning_both() -> None:
    args = selection_arguments(Selection(smoke=True, regex=r"tempest\.api\.identity"))
    assert "--smoke" not in args
    assert selected(args) == [IDS[0], IDS[2]]
    anchored = selection_arguments(Selection(smoke=True, regex=r"^tempest\.api\.compute"))
    assert selected(anchored) == [IDS[3]]


def test_lists_exclusions_and_load_list_pass_through() -> None:
    args = selection_arguments(Selection(
        regex="identity", exclude_regex="test_domains", include_list="/l/in",
        exclude_list="/l/out", load_list="/l/load", concurrency=4))
    assert args == ["--regex=identity", "--exclude-regex=test_domains",
                    "--include-list=/l/in", "--exclude-list=/l/out",
                    "--load-list=/l/load", "--concurrency=4"]


def test_conf_overrides_turn_off_what_the_profile_lacks_and_the_job_wins() -> None:
    values = conf_overrides("identity", {"service_available.glance": "true",
                                         "identity.user_lockout_duration": "5"})
    assert values["service_available.keystone"] == "true"
    assert values["service_available.nova"] == "false"
    assert values["service_available.glance"] == "true"  # the job's
    assert values["identity.user_lockout_duration"] == "5"
    assert values["auth.use_dynamic_credentials"] == "true"
    assert int(values["service-clients.http_timeout"]) > 60  # see HTTP_TIMEOUT


def test_conf_overrides_follow_the_virt_driver_and_the_profile_services() -> None:
    fake = conf_overrides("full", {}, virt_driver="fake")
    assert fake["service_available.nova"] == "true"
    assert fake["service_available.cinder"] == "true"
    # Nothing boots under the fake driver: nothing to reach over SSH.
    assert fake["validation.run_validation"] == "false"
    assert fake["volume-feature-enabled.backup"] == "false"
    libvirt = conf_overrides("full", {}, virt_driver="libvirt")
    assert "validation.run_validation" not in libvirt
    image = conf_overrides("image", {})
    assert image["service_available.glance"] == "true"
    assert image["service_available.nova"] == "false"
    assert not any(key.startswith(("compute-feature-enabled.", "volume")) for key in image)


def test_waiting_for_a_port_sees_a_listener_and_names_a_missing_one() -> None:
    import socket

    from tempest_live_ci.deploy.util import StepError, wait_for_port

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        wait_for_port(listener.getsockname()[1], 5, what="test daemon")
        port = listener.getsockname()[1]
    with pytest.raises(StepError, match=rf"rabbit: nothing listens on 127.0.0.1:{port} after 1 s"):
        wait_for_port(port, 1, what="rabbit")


def test_under_tcg_tempest_shares_one_project_network() -> None:
    tcg = conf_overrides("full", {}, virt_driver="fake", accelerator="tcg")
    assert tcg["auth.create_isolated_networks"] == "false"
    assert tcg["compute.fixed_network_name"] == SHARED_NETWORK
    assert conf_overrides("network", {}, accelerator="tcg")[
        "auth.create_isolated_networks"] == "false"
    # With KVM, tempest's per-class networks, as in upstream's gate; a job may ask either way.
    kvm = conf_overrides("full", {}, virt_driver="libvirt", accelerator="kvm")
    assert "auth.create_isolated_networks" not in kvm
    asked = conf_overrides("full", {"auth.create_isolated_networks": "true"}, accelerator="tcg")
    assert asked["auth.create_isolated_networks"] == "true"
    # No neutron, nothing to share.
    assert "compute.fixed_network_name" not in conf_overrides("image", {}, accelerator="tcg")


def test_under_tcg_tempests_build_timeouts_are_scaled_for_the_services_deployed() -> None:
    full = conf_overrides("full", {}, virt_driver="fake", accelerator="tcg")
    assert full["compute.build_timeout"] == full["volume.build_timeout"] == "900"
    volume = conf_overrides("volume", {}, accelerator="tcg")
    assert volume["volume.build_timeout"] == "900" and "compute.build_timeout" not in volume
    assert scaled_timeouts("identity", "tcg") == {}
    # With KVM tempest's own 300 s stand; the job's value wins over ours.
    kvm = conf_overrides("full", {}, virt_driver="libvirt", accelerator="kvm")
    assert "compute.build_timeout" not in kvm and "volume.build_timeout" not in kvm
    asked = conf_overrides("full", {"volume.build_timeout": "1800"}, accelerator="tcg")
    assert asked["volume.build_timeout"] == "1800"


def test_the_fake_driver_leaves_scenario_tests_out_and_says_why() -> None:
    excluded = exclusions("fake")
    assert list(excluded) == [r"^tempest\.scenario\."] and "fake driver" in excluded[
        r"^tempest\.scenario\."]
    assert exclusions("libvirt") == {} and exclusions(None) == {}
    regex = combined_exclude(r"test_foo", excluded)
    assert regex is not None
    for test_id in ("tempest.scenario.test_server_basic_ops.TestServerBasicOps.test_x",
                    "tempest.api.compute.test_foo.T.test_y"):
        assert re.search(regex, test_id), test_id
    assert not re.search(regex, "tempest.api.compute.servers.test_create_server.T.test_list")
    assert combined_exclude(None, {}) is None
    assert combined_exclude("a", {}) == "a"


def _tempest_run_parser() -> argparse.ArgumentParser:
    """argparse as `tempest run` declares the options the selection uses (tempest/cmd/run.py)."""
    parser = argparse.ArgumentParser(prog="tempest run", exit_on_error=False)
    for option in ("--regex", "--exclude-regex", "--include-list", "--exclude-list",
                   "--load-list", "--concurrency", "--config-file"):
        parser.add_argument(option)
    for flag in ("--smoke", "--subunit", "--serial", "--debug"):
        parser.add_argument(flag, action="store_true")
    return parser


def test_a_regex_starting_with_a_dash_stays_the_value_of_its_option() -> None:
    # Refused on load (job.py); were it not, argparse still reads it as the value.
    args = selection_arguments(Selection(regex="--debug", exclude_regex="-x",
                                         include_list="--serial", concurrency=1))
    parsed = _tempest_run_parser().parse_args(args)
    assert (parsed.regex, parsed.exclude_regex, parsed.include_list) == ("--debug", "-x", "--serial")
    assert not parsed.debug and not parsed.serial
    # The form this replaces: argparse takes such a value for an option.
    with pytest.raises(argparse.ArgumentError):
        _tempest_run_parser().parse_args(["--regex", "-x"])


def test_tempest_conf_overrides_are_never_options_of_discover_tempest_config() -> None:
    # python-tempestconf's parser: options, then `overrides`, positional, nargs="*".
    parser = argparse.ArgumentParser(prog="discover-tempest-config", exit_on_error=False)
    parser.add_argument("--out")
    parser.add_argument("--image")
    parser.add_argument("--image-disk-format")
    for flag in ("--no-default-deployer", "--create", "--no-rng", "--debug", "--remove"):
        parser.add_argument(flag, action="store_true")
    parser.add_argument("overrides", nargs="*", default=[])
    overrides = {"identity.uri": "--debug", "compute.flavor_ref": "-1", "DEFAULT.x": "--remove"}
    argv = discover_arguments(overrides, image_url="http://192.0.2.1/tempest/-x.img", create=True)
    assert argv[0] == "discover-tempest-config"
    parsed = parser.parse_args(argv[1:])
    assert parsed.overrides == ["identity.uri", "--debug", "compute.flavor_ref", "-1",
                                "DEFAULT.x", "--remove"]
    assert not parsed.debug and not parsed.remove and parsed.create
    assert (parsed.out, parsed.image, parsed.image_disk_format) == (
        "/etc/tempest/tempest.conf", "http://192.0.2.1/tempest/-x.img", "qcow2")


def test_a_setup_command_is_the_shells_command_whatever_it_starts_with(tmp_path: Path) -> None:
    from tempest_live_ci.deploy.apt import setup_command

    # Refused on load (job.py); were it not, sh runs it as a command, not as `sh -x`.
    script = tmp_path / "-x"
    script.write_text("echo ran as a command\n")
    script.chmod(0o755)
    result = subprocess.run(setup_command("-x"), cwd=tmp_path, capture_output=True, text=True,
                            env={"PATH": f"{tmp_path}:/usr/bin:/bin"})
    assert (result.returncode, result.stdout) == (0, "ran as a command\n"), result.stderr
    assert subprocess.run(setup_command("echo a; echo b"), capture_output=True,
                          text=True).stdout == "a\nb\n"
