"""Profiles: which OpenStack services a run installs, configures and tests.

Standard library only: this module runs in the guest (pushed with the rest
of deploy/) and is imported on the host, where the image build reads the
package lists and the run reads the default test selection.

A profile names its packages, the services it holds until they are
configured, its configuration steps (functions of deploy/configure.py, run in
order), the tempest [service_available] flags it sets, and the tests it runs
when the job does not choose.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Every profile: tempest itself (the `tempest` package carries /var/lib/tempest
# with its .stestr.conf), tempest.conf discovery, and crudini for editing the
# services' ini files the way Debian's own scripts do (in place, comments kept).
TEMPEST_PACKAGES = ("tempest", "python3-tempest", "python3-tempestconf", "crudini")

# Tempest's services, all True in tempest's own defaults: a profile turns off
# every one it does not deploy.
TEMPEST_SERVICES = ("keystone", "glance", "nova", "neutron", "cinder", "swift", "horizon",
                    "placement", "heat")


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    packages: tuple[str, ...]
    # systemd units the packages enable: kept from starting at boot in a
    # preinstalled image, started by the configuration steps.
    services: tuple[str, ...]
    configure: tuple[str, ...]
    services_available: tuple[str, ...]
    default_regex: str | None = None
    default_smoke: bool = False
    conf: dict[str, str] = field(default_factory=dict)

    @property
    def all_packages(self) -> tuple[str, ...]:
        return (*self.packages, *TEMPEST_PACKAGES)

    def service_available(self) -> dict[str, bool]:
        return {name: name in self.services_available for name in TEMPEST_SERVICES}


PROFILES: dict[str, Profile] = {
    "identity": Profile(
        name="identity",
        description="keystone (sqlite, fernet tokens, uwsgi) and its tempest plugin",
        packages=("keystone", "keystone-tempest-plugin"),
        services=("keystone",),
        configure=("keystone",),
        services_available=("keystone",),
        default_regex=r"tempest\.api\.identity",
        conf={
            "identity-feature-enabled.application_credentials": "true",
            "identity-feature-enabled.access_rules": "true",
            "identity-feature-enabled.project_tags": "true",
        },
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None


def held_services() -> tuple[str, ...]:
    """Every unit any profile holds: what the image keeps from starting at boot."""
    units: list[str] = []
    for profile in PROFILES.values():
        units.extend(u for u in profile.services if u not in units)
    return tuple(units)
