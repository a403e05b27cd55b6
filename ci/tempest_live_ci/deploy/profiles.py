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
from typing import Any

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
    # The tests a job runs when it names none. The network and volume
    # profiles run their API's smoke tests: under TCG every network test
    # costs tens of seconds of neutron's time (all of them: nightly-sid).
    default_regex: str | None = None
    default_smoke: bool = False
    conf: dict[str, str] = field(default_factory=dict)
    # Where the services keep their data: sqlite files (one keystone process
    # at a time), or MariaDB, which holds under nova's and neutron's
    # concurrent writers.
    database: str = "sqlite"
    # What the guest needs, measured under TCG (the job's vm.memory and
    # vm.vcpus override them).
    memory_mib: int = 4096
    vcpus: int = 2
    # A disk image for glance (tempest's image_ref): made on the host and
    # served by the testbed, since nothing outside Debian's archive is reachable.
    needs_image: bool = False

    @property
    def all_packages(self) -> tuple[str, ...]:
        return (*self.packages, *TEMPEST_PACKAGES)

    def service_available(self) -> dict[str, bool]:
        return {name: name in self.services_available for name in TEMPEST_SERVICES}


IDENTITY_CONF = {
    "identity-feature-enabled.application_credentials": "true",
    "identity-feature-enabled.access_rules": "true",
    "identity-feature-enabled.project_tags": "true",
}

# The packages and units of each service, composed into the profiles below.
# MariaDB and RabbitMQ come first: the services' database syncs need them.
_MARIADB = (("mariadb-server", "python3-pymysql"), ("mariadb",))
_RABBITMQ = (("rabbitmq-server",), ("rabbitmq-server",))
_KEYSTONE = (("keystone",), ("keystone",))
_GLANCE = (("glance-api",), ("glance-api",))
_PLACEMENT = (("placement-api",), ("placement-api",))
# nova-compute needs a hypervisor package; nova-compute-kvm is Debian's
# default one (libvirt and qemu). It is used when the guest has a usable
# /dev/kvm (nested KVM); otherwise nova's fake driver runs and libvirt stays down.
_NOVA = (("nova-api", "nova-conductor", "nova-scheduler", "nova-compute", "nova-compute-kvm"),
         ("nova-api", "nova-api-metadata", "nova-conductor", "nova-scheduler", "nova-compute",
          "libvirtd", "virtlogd", "libvirt-guests"))
# Neutron with ML2/OVN, upstream's default: OVN's daemons are small C programs
# and do DHCP and routing themselves, where the OVS agent needs four more
# Python daemons (OVS, DHCP, L3 and metadata agents, 30 s of imports each
# under TCG, about 100 MB each) and RPC over RabbitMQ.
_NEUTRON = (("neutron-api", "neutron-rpc-server", "neutron-ovn-maintenance-worker",
             "ovn-central", "ovn-host"),
            ("neutron-api", "neutron-rpc-server", "neutron-ovn-maintenance-worker",
             "ovn-central", "ovn-host", "openvswitch-switch"))
# cinder with LVM on a loop file in the guest's RAM, exported by tgt.
_CINDER = (("cinder-api", "cinder-scheduler", "cinder-volume", "tgt"),
           ("cinder-api", "cinder-scheduler", "cinder-volume", "tgt"))
# heat's API and one engine; its tests are heat-tempest-plugin's (tempest's
# own orchestration tests moved there).
_HEAT = (("heat-api", "heat-engine", "heat-tempest-plugin"), ("heat-api", "heat-engine"))
# swift: a proxy with keystone's auth middleware, and one account, container
# and object server on an XFS loop file in RAM, one replica, and the
# container-sync daemon. The packages enable their replicators, auditors and
# updaters too: held like the servers, they stay down (one device, one
# replica: nothing to replicate or audit in a run of an hour). memcached
# holds the proxy's token cache.
_SWIFT_SERVERS = ("swift-proxy", "swift-account", "swift-container", "swift-object")
_SWIFT = (("swift-proxy", "swift-account", "swift-container", "swift-object",
           "python3-keystonemiddleware", "memcached", "xfsprogs"),
          ("memcached", *_SWIFT_SERVERS,
           "swift-account-auditor", "swift-account-reaper", "swift-account-replicator",
           "swift-container-auditor", "swift-container-reconciler",
           "swift-container-replicator", "swift-container-sharder", "swift-container-sync",
           "swift-container-updater", "swift-object-auditor", "swift-object-reconstructor",
           "swift-object-replicator", "swift-object-updater"))
# tempest's smoke tests, and heat-tempest-plugin's API tests (none is tagged smoke).
SMOKE_AND_HEAT_API = r"\[.*\bsmoke\b.*\]|^heat_tempest_plugin\.tests\.api\."


def _profile(name: str, parts: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...],
             **fields: Any) -> Profile:
    packages, services = _compose(*parts)
    return Profile(name=name, packages=packages, services=services, **fields)


def _compose(*parts: tuple[tuple[str, ...], tuple[str, ...]]
             ) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The packages and the units of several services, each once, in order."""
    packages: list[str] = []
    services: list[str] = []
    for part_packages, part_services in parts:
        packages.extend(p for p in part_packages if p not in packages)
        services.extend(s for s in part_services if s not in services)
    return tuple(packages), tuple(services)


PROFILES: dict[str, Profile] = {
    "identity": Profile(
        name="identity",
        description="keystone (sqlite, fernet tokens, uwsgi) and its tempest plugin",
        packages=("keystone", "keystone-tempest-plugin"),
        services=("keystone",),
        configure=("keystone",),
        services_available=("keystone",),
        default_regex=r"tempest\.api\.identity",
        conf=IDENTITY_CONF,
    ),
    "image": _profile(
        "image", (_MARIADB, _KEYSTONE, _GLANCE),
        description="keystone and glance (file store in RAM) on MariaDB",
        configure=("mariadb", "keystone", "glance", "apis"),
        services_available=("keystone", "glance"),
        default_regex=r"tempest\.api\.image",
        database="mariadb",
        memory_mib=4096,
        needs_image=True,
        conf=IDENTITY_CONF,
    ),
    # nova needs a network service: nova-network is gone, every server's
    # ports come from neutron.
    "compute": _profile(
        "compute", (_MARIADB, _RABBITMQ, _KEYSTONE, _GLANCE, _PLACEMENT, _NEUTRON, _NOVA),
        description="keystone, glance, placement, nova (fake or libvirt driver) and neutron "
                    "(ML2/OVN), with MariaDB and RabbitMQ",
        configure=("mariadb", "rabbitmq", "keystone", "glance", "placement", "neutron", "nova",
                   "apis", "nova-cells", "network-resources"),
        services_available=("keystone", "glance", "nova", "neutron", "placement"),
        default_smoke=True,
        database="mariadb",
        memory_mib=8192,
        needs_image=True,
        conf=IDENTITY_CONF,
    ),
    "network": _profile(
        "network", (_MARIADB, _RABBITMQ, _KEYSTONE, _NEUTRON),
        description="keystone and neutron (ML2/OVN), with MariaDB and RabbitMQ",
        configure=("mariadb", "rabbitmq", "keystone", "neutron", "apis", "network-resources"),
        services_available=("keystone", "neutron"),
        default_regex=r"tempest\.api\.network",
        default_smoke=True,
        database="mariadb",
        memory_mib=6144,
        conf=IDENTITY_CONF,
    ),
    "volume": _profile(
        "volume", (_MARIADB, _RABBITMQ, _KEYSTONE, _GLANCE, _CINDER),
        description="keystone, glance and cinder (LVM on a loop file in RAM), with MariaDB "
                    "and RabbitMQ",
        configure=("mariadb", "rabbitmq", "keystone", "glance", "cinder", "apis"),
        services_available=("keystone", "glance", "cinder"),
        default_regex=r"tempest\.api\.volume",
        default_smoke=True,
        database="mariadb",
        memory_mib=6144,
        needs_image=True,
        conf=IDENTITY_CONF,
    ),
    "object": _profile(
        "object", (_MARIADB, _KEYSTONE, _SWIFT),
        description="keystone and swift (proxy with keystone auth; account, container and "
                    "object servers on an XFS loop file in RAM), on MariaDB",
        configure=("mariadb", "keystone", "swift", "apis"),
        services_available=("keystone", "swift"),
        default_regex=r"tempest\.api\.object_storage",
        database="mariadb",
        memory_mib=4096,
        conf=IDENTITY_CONF,
    ),
    "orchestration": _profile(
        "orchestration", (_MARIADB, _RABBITMQ, _KEYSTONE, _HEAT),
        description="keystone and heat (API and engine), with MariaDB and RabbitMQ",
        configure=("mariadb", "rabbitmq", "keystone", "heat", "apis"),
        services_available=("keystone", "heat"),
        default_regex=r"heat_tempest_plugin\.tests\.api\.",
        database="mariadb",
        memory_mib=4096,
        conf=IDENTITY_CONF,
    ),
    "full": _profile(
        "full", (_MARIADB, _RABBITMQ, _KEYSTONE, _GLANCE, _PLACEMENT, _NEUTRON, _NOVA, _CINDER,
                 _HEAT, _SWIFT),
        description="keystone, glance, placement, nova, neutron, cinder, heat and swift, with "
                    "MariaDB and RabbitMQ",
        configure=("mariadb", "rabbitmq", "keystone", "glance", "placement", "neutron", "nova",
                   "cinder", "heat", "swift", "apis", "nova-cells", "network-resources"),
        services_available=("keystone", "glance", "nova", "neutron", "placement", "cinder",
                            "heat", "swift"),
        default_regex=SMOKE_AND_HEAT_API,
        database="mariadb",
        memory_mib=10240,
        needs_image=True,
        conf=IDENTITY_CONF,
    ),
}


def get_profile(name: str) -> Profile:
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown profile {name!r} (known: {', '.join(PROFILES)})") from None


def held_services(profile: str) -> tuple[str, ...]:
    """The units a profile's preinstalled image keeps from starting at boot."""
    return get_profile(profile).services
