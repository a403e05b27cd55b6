"""Profiles: what the image build and the guest read from them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tempest_live_ci import paths, render
from tempest_live_ci.deploy.configure import GLANCE_STORES
from tempest_live_ci.deploy.params import Params
from tempest_live_ci.deploy.profiles import PROFILES, TEMPEST_SERVICES, held_services

HOOK = "live-build/config/hooks/normal/0600-tempest-live-ci-hold-services.hook.chroot.j2"


def test_every_profile_is_complete_and_names_real_things() -> None:
    from tempest_live_ci.deploy.configure import STEPS

    for name, profile in PROFILES.items():
        assert profile.name == name
        assert profile.packages and profile.services and profile.configure
        assert set(profile.configure) <= set(STEPS), name
        assert set(profile.services_available) <= set(TEMPEST_SERVICES), name
        for package in profile.all_packages:
            assert re.fullmatch(r"[a-z0-9][a-z0-9+.-]+", package), package
        if profile.default_regex:
            re.compile(profile.default_regex)


def test_the_hold_hook_is_shell_before_and_after_rendering(tmp_path: Path) -> None:
    units = held_services("full")
    assert "keystone" in units and "nova-compute" in units
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9@._-]*", unit) for unit in units)
    rendered = tmp_path / "hook"
    rendered.write_text(render.render(HOOK, held_services=list(units)))
    template = paths.data_dir() / HOOK
    for script in (template, rendered):
        subprocess.run(["sh", "-n", str(script)], check=True)
    # The rendered hook disables exactly the held units that exist.
    text = rendered.read_text()
    assert [line for line in text.split("<<'UNITS'\n")[1].splitlines()
            if line and line != "UNITS"] == list(units)


def test_heat_and_swift_are_in_the_whole_cloud_and_have_profiles_of_their_own() -> None:
    """The full profile deploys every service tempest knows but horizon; heat's and swift's
    own profiles turn on their tempest flags and run their API tests."""
    import re as regex

    from tempest_live_ci.deploy.configure import catalog_spec

    full = PROFILES["full"]
    assert set(full.services_available) == set(TEMPEST_SERVICES) - {"horizon"}
    assert {"heat", "swift"} <= set(full.configure)
    assert full.configure.index("heat") < full.configure.index("apis")
    assert PROFILES["orchestration"].service_available()["heat"] is True
    assert PROFILES["object"].service_available()["swift"] is True
    # The full profile's default: tempest's smoke tests and heat's API tests.
    default = regex.compile(full.default_regex or "")
    assert default.search("tempest.api.object_storage.test_object_services.ObjectTest."
                          "test_create_object[id-5b4ce26f-3545-46c9-a2ba-5754358a4c62,smoke]")
    assert default.search("heat_tempest_plugin.tests.api.test_heat_api.stacks_create_stack")
    assert not default.search("tempest.api.compute.servers.test_servers.ServersTestJSON."
                              "test_update_server_name[id-5e6ccff8]")
    # The units the servers need stay held in the image, and so do those nothing starts.
    assert {"swift-proxy", "swift-object-replicator", "memcached", "heat-engine"} <= \
        set(held_services("full"))
    params = Params(profile="full", suite="sid", image_suite="sid",
                    mirror="http://deb.debian.org/debian", guest_address="192.168.100.2",
                    admin_password="admin", service_password="pw")
    spec = catalog_spec(params, ["heat", "swift"])
    assert spec["domains"] == [{"name": "heat", "admin": "heat_domain_admin"}]
    assert set(spec["roles"]) == {"heat_stack_owner", "heat_stack_user", "ResellerAdmin"}
    assert {e["url"] for e in spec["endpoints"]} == {
        "http://192.168.100.2:8004/v1/%(project_id)s",
        "http://192.168.100.2:8080/v1/AUTH_%(project_id)s"}


def test_glance_stores_sort_in_their_configured_order() -> None:
    # tempest compares the image's stores (the configured order) with the sorted ids.
    assert list(GLANCE_STORES) == sorted(GLANCE_STORES) and len(set(GLANCE_STORES)) > 1
