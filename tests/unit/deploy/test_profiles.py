"""Profiles: what the image build and the guest read from them."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from tempest_live_ci import paths, render
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
