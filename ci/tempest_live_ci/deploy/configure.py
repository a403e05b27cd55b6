"""Configuration steps of the profiles, the Debian way: the packages' own files
edited in place, the services' own management commands, services started by
systemd once they are configured.

Every step is a function of the run's parameters, named in the profile's
`configure` list and run in that order. A service is started without waiting
(`systemctl start --no-block`) as soon as it is configured, so that its
imports (tens of seconds under TCG) overlap with the next service's database
sync; the `apis` step then waits for every API to answer.
"""

from __future__ import annotations

import json
import os
import pwd
import socket
import sqlite3
import sys
from collections.abc import Callable
from typing import Any

from .params import Params
from .profiles import get_profile
from .util import (
    StepError,
    facts,
    ini_set,
    log_tail,
    part,
    run,
    say,
    wait_for_port,
    wait_for_url,
    write_file,
)

KEYSTONE_PORT = 5000
KEYSTONE_DB = "/var/lib/keystone/keystone.db"
SQLITE_TIMEOUT = 120

# The API services: port, the path of their endpoint, their catalog types.
APIS: dict[str, tuple[int, str, tuple[str, ...]]] = {
    "glance": (9292, "", ("image",)),
    "placement": (8778, "", ("placement",)),
    "nova": (8774, "/v2.1", ("compute",)),
    "neutron": (9696, "", ("network",)),
    "cinder": (8776, "/v3", ("block-storage", "volumev3")),
    "heat": (8004, "/v1/%(project_id)s", ("orchestration",)),
    "swift": (8080, "/v1/AUTH_%(project_id)s", ("object-store",)),
}
# Where each configuration step's daemons log (quoted when the step fails).
LOG_DIRS: dict[str, tuple[str, ...]] = {
    "mariadb": ("/var/log/mysql",),
    "rabbitmq": ("/var/log/rabbitmq",),
    "keystone": ("/var/log/keystone",),
    "glance": ("/var/log/glance",),
    "placement": ("/var/log/placement",),
    "neutron": ("/var/log/neutron", "/var/log/ovn"),
    "nova": ("/var/log/nova",),
    "nova-cells": ("/var/log/nova",),
    "network-resources": ("/var/log/neutron",),
    "cinder": ("/var/log/cinder",),
    "heat": ("/var/log/heat",),
    "swift": ("/var/log/swift",),
}
# Each service's databases (MariaDB), by the name of the connection option.
DATABASES: dict[str, tuple[str, ...]] = {
    "keystone": ("keystone",),
    "glance": ("glance",),
    "placement": ("placement",),
    "nova": ("nova_api", "nova", "nova_cell0"),
    "neutron": ("neutron",),
    "cinder": ("cinder",),
    "heat": ("heat",),
}


# keystone on sqlite serves one request at a time: one uwsgi process, one thread.
# - Two processes: "database is locked" under tempest's parallel workers, even
#   in WAL mode with a 120 s busy timeout (a transaction that read before it
#   writes gets SQLITE_BUSY at once, without waiting).
# - Threads: keystone 2:27.0.0-3+deb13u6 mixes up concurrent requests on the
#   threads of one process: a member's application credential request was
#   checked against the roles of an admin request served at the same time
#   ("Could not find role assignment with role: <manager>"), 11 times out of 12
#   with three admin requests running alongside; with one thread, 0 out of 12.
# One process also imports keystone once instead of twice while it starts.
# On MariaDB two processes share the load the other services' token checks
# add; still one thread each, for the reason above.
KEYSTONE_THREADS = 1
# bcrypt's minimum cost (see keystone()).
PASSWORD_HASH_ROUNDS = 4

# The other APIs: Debian's uwsgi files start 8 to 16 processes each (with up to
# 32 threads), sized for a server. In a RAM guest one process of a few threads
# each holds tempest's few parallel workers; every process costs about 100 MB
# and, under TCG, half a minute of imports.
API_PROCESSES = 1
API_THREADS = 4


# How long nova and cinder wait for a service's heartbeat before counting it
# down (their default: 60 s, with a heartbeat every 10 s).
TCG_SERVICE_DOWN_TIME = 300


def db_url(p: Params, database: str) -> str:
    return (f"mysql+pymysql://{database}:{p.service_password}@127.0.0.1/{database}"
            "?charset=utf8")


# Debian's units give a service 90 s to tell systemd it is ready. Under TCG,
# with the other services starting alongside, nova-compute and friends need
# more: killed at 90 s, restarted, killed again, each restart costing the
# others CPU. A runtime drop-in (in /run: gone with the guest) gives them time.
# With KVM, 900 s. Under TCG, no limit: in the full profile on sid (eleven
# services importing at once on two emulated CPUs, the host loaded by other
# work) nova-conductor, -scheduler and -compute had used 2 min of CPU each
# when systemd killed them at 900 s, and each restart began the import anew;
# the step's own timeout (guest.configure_timeout) bounds the wait instead.
START_TIMEOUT = {"kvm": "900"}
TCG_START_TIMEOUT = "infinity"
# How long the apis step waits for each API: under TCG neutron-api's
# application took 596 s to load in that run, nova-api's over 900 s.
API_WAIT = {"kvm": 900}
TCG_API_WAIT = 2400


def start_timeout_dropin(accelerator: str) -> str:
    return ("# Written by tempest-live-ci: services start slowly under TCG.\n[Service]\n"
            f"TimeoutStartSec={START_TIMEOUT.get(accelerator, TCG_START_TIMEOUT)}\n")


def allow_slow_starts(units: tuple[str, ...], accelerator: str) -> None:
    for unit in units:
        write_file(f"/run/systemd/system/{unit}.service.d/tempest-live-ci.conf",
                   start_timeout_dropin(accelerator))
    run(["systemctl", "daemon-reload"])


def owned_by(user: str, path: str) -> None:
    """`path` exists and belongs to `user` (and its group), its content kept."""
    entry = pwd.getpwnam(user)
    with open(path, "a"):
        pass
    os.chown(path, entry.pw_uid, entry.pw_gid)


def start(*units: str) -> None:
    """Start units without waiting for them: the next steps overlap with their start-up."""
    run(["systemctl", "start", "--no-block", *[f"{u}.service" for u in units]])


def as_user(user: str, argv: list[str]) -> list[str]:
    """A management command as the service's user, as the maintainer scripts run them."""
    return ["runuser", "-u", user, "--", *argv]


def authtoken(p: Params, username: str) -> dict[str, str]:
    """[keystone_authtoken]: the service checks tokens with keystone as its own user."""
    url = f"http://{p.guest_address}:{KEYSTONE_PORT}"
    return {
        "keystone_authtoken.www_authenticate_uri": url,
        "keystone_authtoken.auth_url": url,
        "keystone_authtoken.auth_type": "password",
        "keystone_authtoken.project_domain_name": "Default",
        "keystone_authtoken.user_domain_name": "Default",
        "keystone_authtoken.project_name": "service",
        "keystone_authtoken.username": username,
        "keystone_authtoken.password": p.service_password,
        "keystone_authtoken.region_name": p.region,
    }


def service_credentials(p: Params, section: str, username: str) -> dict[str, str]:
    """A section through which one service calls another as its own user."""
    return {
        f"{section}.auth_type": "password",
        f"{section}.auth_url": f"http://{p.guest_address}:{KEYSTONE_PORT}",
        f"{section}.project_domain_name": "Default",
        f"{section}.user_domain_name": "Default",
        f"{section}.project_name": "service",
        f"{section}.username": username,
        f"{section}.password": p.service_password,
        f"{section}.region_name": p.region,
    }


# RabbitMQ's own guest user: it is accepted from the loopback only, which is
# where every service is.
TRANSPORT_URL = "rabbit://guest:guest@127.0.0.1:5672/"


def uwsgi(path: str, processes: int = API_PROCESSES, threads: int = API_THREADS) -> None:
    ini_set(path, {"uwsgi.processes": processes, "uwsgi.threads": threads})


# --- infrastructure --------------------------------------------------------

MARIADB_CNF = "/etc/mysql/mariadb.conf.d/99-tempest-live-ci.cnf"


def mariadb(p: Params) -> None:
    """MariaDB on the loopback, sized for a RAM guest, with a database and user per service."""
    with part("mariadb start"):
        write_file(MARIADB_CNF, (
            "# Written by tempest-live-ci: a small server in the guest's RAM.\n"
            "[mysqld]\n"
            "bind-address = 127.0.0.1\n"
            "skip-name-resolve\n"
            # Every service process keeps a pool of connections.
            "max_connections = 1000\n"
            "innodb_buffer_pool_size = 128M\n"
            # The data is in RAM and lives as long as the guest: no flush
            # per commit, no doublewrite.
            "innodb_flush_log_at_trx_commit = 0\n"
            "innodb_doublewrite = 0\n"
            "performance_schema = off\n"
            # MariaDB 11.8 (trixie) checks snapshot isolation by default: a
            # row changed by another transaction since this one read it fails
            # the write ("Record has changed since last read", error 1020).
            # nova's concurrent instance_info_caches updates then failed and
            # servers stayed in BUILD; the services expect MySQL's repeatable
            # read. "loose-": older servers without the option start anyway.
            "loose-innodb_snapshot_isolation = OFF\n"))
        run(["systemctl", "start", "mariadb.service"])
    profile = get_profile(p.profile)
    databases = [db for step in profile.configure for db in DATABASES.get(step, ())]
    statements = []
    for db in databases:
        statements += [
            f"CREATE DATABASE IF NOT EXISTS {db} CHARACTER SET utf8mb4;",
            f"CREATE USER IF NOT EXISTS '{db}'@'localhost' IDENTIFIED BY "
            f"'{p.service_password}';",
            f"CREATE USER IF NOT EXISTS '{db}'@'127.0.0.1' IDENTIFIED BY "
            f"'{p.service_password}';",
            f"GRANT ALL PRIVILEGES ON {db}.* TO '{db}'@'localhost';",
            f"GRANT ALL PRIVILEGES ON {db}.* TO '{db}'@'127.0.0.1';",
        ]
    # nova's cell0 is reached with the nova user's credentials.
    if "nova" in profile.configure:
        statements.append("GRANT ALL PRIVILEGES ON nova_cell0.* TO 'nova'@'127.0.0.1';")
    with part(f"mariadb databases ({', '.join(databases)})"):
        # root logs in through the unix socket (Debian's unix_socket auth).
        run(["mariadb", "--batch"], input="\n".join(statements) + "\n")
    facts["database"] = "mariadb"


def rabbitmq(p: Params) -> None:
    """RabbitMQ starts now (tens of seconds of Erlang under TCG); the services wait for it."""
    start("rabbitmq-server")


# --- keystone ----------------------------------------------------------------

def keystone(p: Params) -> None:
    address = p.guest_address
    url = f"http://{address}:{KEYSTONE_PORT}/v3/"
    on_sqlite = get_profile(p.profile).database == "sqlite"
    with part("keystone.conf"):
        if on_sqlite:
            # A busy timeout: under TCG a writer holds the lock for seconds,
            # and keystone-manage and the API may overlap (the default 5 s
            # gave "database is locked" errors).
            connection = f"sqlite:///{KEYSTONE_DB}?timeout={SQLITE_TIMEOUT}"
        else:
            connection = db_url(p, "keystone")
        ini_set("/etc/keystone/keystone.conf", {
            "database.connection": connection,
            # The guest's root is in RAM: an fsync per transaction buys nothing.
            "database.sqlite_synchronous": False,
            "token.provider": "fernet",
            # bcrypt's cost: every password checked (each token tempest and
            # the services ask for) and every user made hashes once. At
            # keystone's default 12 rounds that is 2.1 s of a vCPU under TCG,
            # 0.03 s at bcrypt's minimum of 4. Measured in the guest; token
            # requests took 12 to 19 s with two guests sharing the host.
            # These passwords live for one run in RAM.
            "identity.password_hash_rounds": PASSWORD_HASH_ROUNDS,
        })
        uwsgi("/etc/keystone/keystone-uwsgi.ini", processes=1 if on_sqlite else 2,
              threads=KEYSTONE_THREADS)
    owner = ["--keystone-user", "keystone", "--keystone-group", "keystone"]
    commands = [
        ["db_sync"],
        ["fernet_setup", *owner],
        ["credential_setup", *owner],
        ["bootstrap", "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
         "--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone",
         "--bootstrap-region-id", p.region, "--bootstrap-admin-url", url,
         "--bootstrap-public-url", url, "--bootstrap-internal-url", url],
    ]
    argv = [sys.executable, "-m", "deploy.keystone_manage", json.dumps(commands)]
    services = service_users(p)
    if services:
        argv.append(json.dumps(catalog_spec(p, services)))
    # uwsgi's workers import keystone for half a minute under TCG: that happens
    # while keystone-manage works. The API is not used before both are done,
    # and keystone reads the database and the keys only when asked.
    # Both write keystone.log: uwsgi as keystone, keystone-manage as root. The
    # file is keystone's before either starts; made by keystone-manage first,
    # it was root's, and uwsgi crash-looped into systemd's start limit.
    owned_by("keystone", "/var/log/keystone/keystone.log")
    start("keystone")
    what = "keystone-manage db_sync, fernet_setup, credential_setup, bootstrap" + (
        f"; users and endpoints of {', '.join(services)}" if services else "")
    with part(what):
        run(argv, env={"OS_BOOTSTRAP_PASSWORD": p.admin_password})
        if on_sqlite:
            # Readers go on while one writer commits.
            with sqlite3.connect(KEYSTONE_DB) as db:
                db.execute("PRAGMA journal_mode=WAL")
        run(["chown", "-R", "keystone:keystone", "/var/lib/keystone", "/var/log/keystone"])
    with part("keystone answers"):
        run(["systemctl", "start", "keystone.service"])
        waited = wait_for_url(url, 300, what="keystone")
        facts["keystone_answered_after"] = round(waited, 1)
    write_admin_credentials(p, url)


def write_admin_credentials(p: Params, auth_url: str) -> None:
    """clouds.yaml and an openrc for the admin: for tempest.conf discovery, and a person."""
    write_file("/etc/openstack/clouds.yaml", (
        "clouds:\n"
        "  admin:\n"
        "    auth:\n"
        f"      auth_url: {auth_url}\n"
        "      username: admin\n"
        f"      password: {p.admin_password}\n"
        "      project_name: admin\n"
        "      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
        f"    region_name: {p.region}\n"
        "    identity_api_version: 3\n"), mode=0o600)
    write_file("/root/admin-openrc", "".join(
        f"export {key}={value}\n" for key, value in admin_environment(p, auth_url).items()),
        mode=0o600)


def admin_environment(p: Params, auth_url: str) -> dict[str, str]:
    return {
        "OS_AUTH_URL": auth_url,
        "OS_USERNAME": "admin",
        "OS_PASSWORD": p.admin_password,
        "OS_PROJECT_NAME": "admin",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_IDENTITY_API_VERSION": "3",
        "OS_REGION_NAME": p.region,
    }


# --- glance, placement -------------------------------------------------------

# Where glance-common keeps the metadata definitions.
GLANCE_METADEFS = ("/usr/share/glance-common/metadefs", "/etc/glance/metadefs")
# glance-api's uwsgi file, since glance 2:33 (sid); trixie's runs its own server.
GLANCE_UWSGI = "/etc/glance/glance-api-uwsgi.ini"
# glance's two file stores, the default first. Their names sort in that order:
# tempest's waiter for an import to several stores (waiters.py,
# wait_for_image_imported_to_stores, tempest 1:47) compares the image's
# "stores" (glance's order, the configured one) with the sorted store ids as
# one string. With "file,copies" the glance-direct import tests on sid
# timed out although both stores had the image.
GLANCE_STORES = ("file", "file_copies")


def glance(p: Params) -> None:
    """glance-api with its file store in the guest's RAM."""
    with part("glance-api.conf"):
        ini_set("/etc/glance/glance-api.conf", {
            "database.connection": db_url(p, "glance"),
            **authtoken(p, "glance"),
            "paste_deploy.flavor": "keystone",
            # Debian's glance-api runs its own server (not uwsgi), one worker
            # per CPU by default.
            "DEFAULT.workers": 1,
            # Two stores, both in RAM: tempest's copy-image test assumes more
            # than one (with one, glance leaves os_glance_importing_to_stores
            # unset and tempest waits for it until its build_timeout).
            # Images land in the first; only the copy tests write the second.
            "DEFAULT.enabled_backends": ",".join(f"{store}:file" for store in GLANCE_STORES),
            "glance_store.default_backend": GLANCE_STORES[0],
            f"{GLANCE_STORES[0]}.filesystem_store_datadir": "/var/lib/glance/images/",
            f"{GLANCE_STORES[1]}.filesystem_store_datadir": "/var/lib/glance/copies/",
            "os_glance_staging_store.filesystem_store_datadir": "/var/lib/glance/staging/",
            "os_glance_tasks_store.filesystem_store_datadir": "/var/lib/glance/tasks_work_dir/",
        })
        if os.path.exists(GLANCE_UWSGI):
            # glance 2:33 (sid) runs glance-api under uwsgi, whose file starts
            # 8 processes: DEFAULT.workers no longer counts. With those 8 the
            # API answered after 321 s under TCG (trixie's one worker: 18 s).
            uwsgi(GLANCE_UWSGI)
    with part("glance-manage db_sync, db_load_metadefs"):
        run(as_user("glance", ["glance-manage", "db_sync"]))
        # The metadata definitions tempest's metadefs tests read (resource
        # types, namespaces): Debian ships them, db_sync does not load them.
        metadefs = next((d for d in GLANCE_METADEFS if os.path.isdir(d)), None)
        if metadefs is not None:
            run(as_user("glance", ["glance-manage", "db_load_metadefs", metadefs]))
    start("glance-api")


def placement(p: Params) -> None:
    with part("placement.conf"):
        ini_set("/etc/placement/placement.conf", {
            "placement_database.connection": db_url(p, "placement"),
            "api.auth_strategy": "keystone",
            **authtoken(p, "placement"),
        })
        uwsgi("/etc/placement/placement-api-uwsgi.ini")
    with part("placement-manage db sync"):
        run(as_user("placement", ["placement-manage", "db", "sync"]))
    start("placement-api")


# --- neutron with ML2/OVN ----------------------------------------------------

OVN_NB = "tcp:127.0.0.1:6641"
OVN_SB = "tcp:127.0.0.1:6642"
# ovsdb-server's passive form puts the port first.
OVN_NB_LISTEN = "ptcp:6641:127.0.0.1"
OVN_SB_LISTEN = "ptcp:6642:127.0.0.1"
ML2_CONF = "/etc/neutron/plugins/ml2/ml2_conf.ini"
# The physical network of the external network tempest's router tests use:
# a bridge of its own, connected to nothing.
PHYSNET = "public"
EXTERNAL_BRIDGE = "br-ex"


def ovn(p: Params) -> None:
    """OVN's databases and northd, Open vSwitch and ovn-controller for this host."""
    hostname = socket.gethostname()
    with part("ovn-central, openvswitch"):
        run(["systemctl", "start", "ovn-central.service", "openvswitch-switch.service"])
        run(["ovn-nbctl", "set-connection", OVN_NB_LISTEN])
        run(["ovn-sbctl", "set-connection", OVN_SB_LISTEN])
        run(["ovs-vsctl", "set", "open_vswitch", ".",
             f"external_ids:ovn-remote={OVN_SB}",
             "external_ids:ovn-encap-type=geneve",
             "external_ids:ovn-encap-ip=127.0.0.1",
             f"external_ids:system-id={hostname}",
             f"external_ids:hostname={hostname}",
             f"external_ids:ovn-bridge-mappings={PHYSNET}:{EXTERNAL_BRIDGE}",
             "external_ids:ovn-cms-options=enable-chassis-as-gw"])
        run(["ovs-vsctl", "--may-exist", "add-br", EXTERNAL_BRIDGE])
    start("ovn-host")


# neutron's daemons that start after its API answers (see neutron()).
NEUTRON_AFTER_API = ("neutron-rpc-server", "neutron-ovn-maintenance-worker")


def neutron(p: Params) -> None:
    ovn(p)
    with part("neutron.conf, ml2_conf.ini"):
        ini_set("/etc/neutron/neutron.conf", {
            "DEFAULT.core_plugin": "ml2",
            "DEFAULT.service_plugins": "ovn-router",
            "DEFAULT.auth_strategy": "keystone",
            "DEFAULT.transport_url": TRANSPORT_URL,
            "DEFAULT.rpc_workers": 1,
            "DEFAULT.rpc_state_report_workers": 1,
            "DEFAULT.api_workers": 1,
            "DEFAULT.notify_nova_on_port_status_changes": "nova" in get_profile(
                p.profile).configure,
            "DEFAULT.notify_nova_on_port_data_changes": "nova" in get_profile(
                p.profile).configure,
            "database.connection": db_url(p, "neutron"),
            **authtoken(p, "neutron"),
            **service_credentials(p, "nova", "nova"),
            "oslo_concurrency.lock_path": "/var/lib/neutron/lock",
        })
        ini_set(ML2_CONF, {
            "ml2.mechanism_drivers": "ovn",
            "ml2.type_drivers": "local,flat,vlan,geneve",
            "ml2.tenant_network_types": "geneve",
            "ml2.extension_drivers": "port_security",
            "ml2.overlay_ip_version": 4,
            "ml2_type_geneve.vni_ranges": "1:65536",
            "ml2_type_geneve.max_header_size": 38,
            "ml2_type_flat.flat_networks": PHYSNET,
            "ovn.ovn_nb_connection": OVN_NB,
            "ovn.ovn_sb_connection": OVN_SB,
            "ovn.ovn_l3_scheduler": "leastloaded",
            # Instances get their metadata from a config drive (see nova).
            "ovn.ovn_metadata_enabled": False,
            "securitygroup.enable_security_group": True,
        })
        uwsgi("/etc/neutron/neutron-api-uwsgi.ini")
    with part("neutron-db-manage upgrade heads"):
        run(as_user("neutron", ["neutron-db-manage", "--config-file", "/etc/neutron/neutron.conf",
                                "--config-file", ML2_CONF, "upgrade", "heads"]))
    # The RPC server and the maintenance worker start once the API answers
    # (in apis): OVN events are handled by the API workers registered in
    # neutron's hash ring, which they join as their app loads. Started
    # together, the RPC server read OVN's databases 20 s before the API
    # worker joined (under TCG), and logged the events of that time as lost
    # ("HashRing is empty").
    start("neutron-api")


# --- nova ---------------------------------------------------------------------

def virt_driver(p: Params) -> str:
    """libvirt with KVM when this guest can run instances (nested KVM), else fake.

    Both must hold: the host runs the guest with KVM (under TCG, qemu shows
    the guest an SVM CPU and kvm_amd gives it a /dev/kvm that opens, but an
    instance on it would crawl), and /dev/kvm opens here.
    """
    if p.host_accelerator != "kvm":
        return "fake"
    try:
        fd = os.open("/dev/kvm", os.O_RDWR)
    except OSError:
        return "fake"
    os.close(fd)
    return "libvirt"


def nova(p: Params) -> None:
    """placement's client, the API, conductor, scheduler and compute in one cell.

    The virt driver: libvirt with KVM when the guest has a usable /dev/kvm,
    else nova's fake driver (servers become ACTIVE without a hypervisor;
    nothing boots, so tempest's validation and scenario tests are off).
    """
    driver = virt_driver(p)
    facts["virt_driver"] = driver
    say(f"virt driver: {driver}")
    address = p.guest_address
    with part("nova.conf"):
        ini_set("/etc/nova/nova.conf", {
            "DEFAULT.transport_url": TRANSPORT_URL,
            "DEFAULT.my_ip": address,
            # Instances read their metadata from a config drive: no metadata
            # API, no OVN metadata agent.
            "DEFAULT.force_config_drive": True,
            "api.auth_strategy": "keystone",
            "database.connection": db_url(p, "nova"),
            "api_database.connection": db_url(p, "nova_api"),
            **authtoken(p, "nova"),
            **service_credentials(p, "placement", "placement"),
            **service_credentials(p, "neutron", "neutron"),
            "service_user.send_service_user_token": True,
            **service_credentials(p, "service_user", "nova"),
            "conductor.workers": 1,
            "scheduler.workers": 1,
            # Under TCG a busy nova-compute can miss a few 10 s heartbeats;
            # counted down after 60 s it would get no servers (NoValidHost).
            "DEFAULT.service_down_time": TCG_SERVICE_DOWN_TIME,
            # The scheduler maps new compute hosts itself: no nova-manage
            # process (20 s of imports under TCG) after nova-compute starts.
            "scheduler.discover_hosts_in_cells_interval": 10,
            "oslo_concurrency.lock_path": "/var/lib/nova/lock",
            "vnc.enabled": False,
            "spice.enabled": False,
            "glance.region_name": p.region,
            "cinder.os_region_name": p.region,
        })
        if driver == "fake":
            ini_set("/etc/nova/nova-compute.conf", {
                "DEFAULT.compute_driver": "fake.FakeDriverWithoutFakeNodes",
            })
            # Fake servers use no resources: quotas would only stop tempest.
            ini_set("/etc/nova/nova.conf", {"quota.driver": "nova.quota.NoopQuotaDriver"})
        else:
            ini_set("/etc/nova/nova-compute.conf", {
                "DEFAULT.compute_driver": "libvirt.LibvirtDriver",
                "libvirt.virt_type": "kvm",
            })
        uwsgi("/etc/nova/nova-api-uwsgi.ini")
    cell0 = db_url(p, "nova_cell0").replace("nova_cell0:", "nova:", 1)
    # One nova-manage process each: nova's database engines start once per
    # process (oslo.db refuses to configure a started one), so these cannot
    # share one process the way keystone-manage's commands do.
    with part("nova-manage api_db sync"):
        run(as_user("nova", ["nova-manage", "api_db", "sync"]))
    with part("nova-manage cell_v2 map_cell0"):
        run(as_user("nova", ["nova-manage", "cell_v2", "map_cell0",
                             "--database_connection", cell0]))
    with part("nova-manage cell_v2 create_cell"):
        # Status 2: the cell exists (the step is run again).
        result = run(as_user("nova", ["nova-manage", "cell_v2", "create_cell", "--name", "cell1"]),
                     check=False)
        if result.returncode not in (0, 2):
            raise StepError(f"nova-manage cell_v2 create_cell exited with status "
                            f"{result.returncode}")
    with part("nova-manage db sync"):
        run(as_user("nova", ["nova-manage", "db", "sync"]))
    if driver == "libvirt":
        run(["systemctl", "start", "libvirtd.service"])
    with part("rabbitmq answers"):
        wait_for_port(5672, 300, what="rabbitmq-server")
    start("nova-api", "nova-conductor", "nova-scheduler", "nova-compute")


# --- cinder ---------------------------------------------------------------------

VOLUME_GROUP = "cinder-volumes"
VOLUME_FILE = "/var/lib/cinder/cinder-volumes.img"
VOLUME_FILE_SIZE = "20G"  # sparse: only what volumes write takes RAM


def cinder(p: Params) -> None:
    """cinder with LVM on a sparse loop file in the guest's RAM, exported by tgt."""
    with part(f"LVM volume group {VOLUME_GROUP} on a loop file"):
        if run(["vgs", VOLUME_GROUP], check=False, capture=True).returncode != 0:
            run(["truncate", "-s", VOLUME_FILE_SIZE, VOLUME_FILE])
            device = run(["losetup", "--find", "--show", VOLUME_FILE],
                         capture=True).stdout.strip()
            run(["pvcreate", device])
            run(["vgcreate", VOLUME_GROUP, device])
    with part("cinder.conf"):
        ini_set("/etc/cinder/cinder.conf", {
            "DEFAULT.transport_url": TRANSPORT_URL,
            "DEFAULT.my_ip": p.guest_address,
            "DEFAULT.auth_strategy": "keystone",
            "DEFAULT.enabled_backends": "lvm",
            # No default_volume_type: the type cinder's db sync makes
            # (__DEFAULT__) lands on the one backend. Naming "lvmdriver-1"
            # without making that type failed every volume create ("the
            # default volume type lvmdriver-1 cannot be found").
            "DEFAULT.osapi_volume_workers": 1,
            "DEFAULT.service_down_time": TCG_SERVICE_DOWN_TIME,
            # Each capacity report runs `vgs` through cinder-rootwrap: 13 s of
            # a vCPU under TCG, every minute by default. The volume group is
            # sparse and far bigger than tempest's volumes.
            "DEFAULT.backend_stats_polling_interval": 600,
            "database.connection": db_url(p, "cinder"),
            **authtoken(p, "cinder"),
            **service_credentials(p, "nova", "nova"),
            "oslo_concurrency.lock_path": "/var/lib/cinder/lock",
            "lvm.volume_driver": "cinder.volume.drivers.lvm.LVMVolumeDriver",
            "lvm.volume_group": VOLUME_GROUP,
            "lvm.volume_backend_name": "lvmdriver-1",
            "lvm.target_protocol": "iscsi",
            "lvm.target_helper": "tgtadm",
            # Zeroing a deleted volume would write it whole into RAM.
            "lvm.volume_clear": "none",
        })
        uwsgi("/etc/cinder/cinder-api-uwsgi.ini")
    with part("cinder-manage db sync"):
        run(as_user("cinder", ["cinder-manage", "db", "sync"]))
    with part("rabbitmq answers"):
        wait_for_port(5672, 300, what="rabbitmq-server")
    start("tgt", "cinder-api", "cinder-scheduler", "cinder-volume")


# --- heat --------------------------------------------------------------------

# The domain heat makes its stacks' users in, and that domain's admin.
HEAT_DOMAIN = "heat"
HEAT_DOMAIN_ADMIN = "heat_domain_admin"
# Roles heat's policy and heat-tempest-plugin name (heat_stack_user: the
# users heat makes for a stack's instances).
HEAT_ROLES = ("heat_stack_owner", "heat_stack_user")


def heat(p: Params) -> None:
    """heat-api (uwsgi) and one heat-engine; its users, domain and roles came with keystone's."""
    address = p.guest_address
    keystone_url = f"http://{address}:{KEYSTONE_PORT}"
    with part("heat.conf"):
        ini_set("/etc/heat/heat.conf", {
            "DEFAULT.transport_url": TRANSPORT_URL,
            # One engine process (Debian's default: one per CPU).
            "DEFAULT.num_engine_workers": 1,
            "DEFAULT.region_name_for_services": p.region,
            "DEFAULT.stack_user_domain_name": HEAT_DOMAIN,
            "DEFAULT.stack_domain_admin": HEAT_DOMAIN_ADMIN,
            "DEFAULT.stack_domain_admin_password": p.service_password,
            "database.connection": db_url(p, "heat"),
            **authtoken(p, "heat"),
            # Deferred operations run as heat, through a trust: no project
            # here (a trust scopes the token itself).
            "trustee.auth_type": "password",
            "trustee.auth_url": keystone_url,
            "trustee.username": "heat",
            "trustee.password": p.service_password,
            "trustee.user_domain_name": "Default",
            "clients_keystone.auth_uri": keystone_url,
        })
        uwsgi("/etc/heat/heat-api-uwsgi.ini")
    with part("heat-manage db_sync"):
        run(as_user("heat", ["heat-manage", "db_sync"]))
    with part("rabbitmq answers"):
        wait_for_port(5672, 300, what="rabbitmq-server")
    start("heat-api", "heat-engine")


# --- swift ----------------------------------------------------------------------

SWIFT_DEVICES = "/srv/node"
SWIFT_DEVICE = "d1"
SWIFT_DISK = "/var/lib/swift/d1.img"
SWIFT_DISK_SIZE = "8G"  # sparse: only what objects write takes RAM
# Each ring's server port (swift's defaults), one device, one replica.
SWIFT_RINGS = {"account": 6202, "container": 6201, "object": 6200}
SWIFT_PART_POWER = 8
# swift's daemons its step starts (its other units stay held: see profiles.py).
# swift-container-sync copies containers that ask for it to another (here:
# this one): tempest's container sync tests wait for it.
SWIFT_SERVERS = ("swift-account", "swift-container", "swift-object", "swift-proxy",
                 "swift-container-sync")
# tempest's object-storage realm_name and cluster_name defaults.
SWIFT_SYNC_REALM = "realm1"
SWIFT_SYNC_CLUSTER = "name1"
# Seconds between the container-sync daemon's passes (its default: 300);
# tempest waits 600 s at most for a container to be synced.
SWIFT_SYNC_INTERVAL = 10
# The proxy's pipeline: Debian's, with keystone's auth_token and swift's
# keystoneauth where it has tempauth, and the middlewares tempest's object
# storage tests use that Debian's leaves out (crossdomain, formpost,
# staticweb: 8 tests skipped on sid without them), where swift's sample puts them.
SWIFT_PIPELINE = ("catch_errors gatekeeper healthcheck proxy-logging cache listing_formats "
                  "container_sync bulk tempurl ratelimit crossdomain formpost authtoken "
                  "keystoneauth staticweb copy container-quotas account-quotas slo dlo "
                  "versioned_writes symlink proxy-logging proxy-server")


def swift(p: Params) -> None:
    """A swift proxy (keystone auth) and its account, container and object servers on an
    XFS loop file in RAM: one device, one replica."""
    device = f"{SWIFT_DEVICES}/{SWIFT_DEVICE}"
    with part(f"XFS on a loop file at {device}"):
        os.makedirs(device, exist_ok=True)
        if run(["mountpoint", "-q", device], check=False).returncode != 0:
            os.makedirs(os.path.dirname(SWIFT_DISK), exist_ok=True)
            run(["truncate", "-s", SWIFT_DISK_SIZE, SWIFT_DISK])
            run(["mkfs.xfs", "-q", "-f", SWIFT_DISK])
            run(["mount", "-o", "loop,noatime", SWIFT_DISK, device])
        run(["chown", "-R", "swift:swift", SWIFT_DEVICES, "/var/lib/swift"])
    with part("swift rings"):
        for ring, port in SWIFT_RINGS.items():
            builder = f"/etc/swift/{ring}.builder"
            if not os.path.exists(builder):
                run(["swift-ring-builder", builder, "create", str(SWIFT_PART_POWER), "1", "1"])
                run(["swift-ring-builder", builder, "add",
                     f"r1z1-127.0.0.1:{port}/{SWIFT_DEVICE}", "100"])
                run(["swift-ring-builder", builder, "rebalance"])
        run(["chown", "-R", "swift:swift", "/etc/swift"])
    with part("swift configuration"):
        ini_set("/etc/swift/swift.conf", {
            # The paths objects hash to: secret, and this run's own.
            "swift-hash.swift_hash_path_suffix": p.service_password,
            "swift-hash.swift_hash_path_prefix": p.admin_password,
        })
        proxy = f"http://{p.guest_address}:{APIS['swift'][0]}/v1/"
        for ring, port in SWIFT_RINGS.items():
            ini_set(f"/etc/swift/{ring}-server.conf", {
                "DEFAULT.bind_ip": "127.0.0.1",
                "DEFAULT.bind_port": port,
                "DEFAULT.devices": SWIFT_DEVICES,
                # The device is the loop file's mount, made just above.
                "DEFAULT.mount_check": False,
                "DEFAULT.workers": 1,
                **({"DEFAULT.allowed_sync_hosts": f"127.0.0.1,{p.guest_address}",
                    "container-sync.interval": SWIFT_SYNC_INTERVAL}
                   if ring == "container" else {}),
            })
        # The cluster container sync may copy to: this one, by tempest's names.
        ini_set("/etc/swift/container-sync-realms.conf", {
            f"{SWIFT_SYNC_REALM}.key": p.service_password,
            f"{SWIFT_SYNC_REALM}.cluster_{SWIFT_SYNC_CLUSTER}": proxy,
        })
        url = f"http://{p.guest_address}:{KEYSTONE_PORT}"
        ini_set("/etc/swift/proxy-server.conf", {
            "DEFAULT.bind_port": APIS["swift"][0],
            "DEFAULT.workers": 1,
            "pipeline:main.pipeline": SWIFT_PIPELINE,
            "app:proxy-server.account_autocreate": True,
            "app:proxy-server.allow_account_management": True,
            "filter:cache.memcache_servers": "127.0.0.1:11211",
            "filter:authtoken.paste.filter_factory": "keystonemiddleware.auth_token:filter_factory",
            "filter:authtoken.www_authenticate_uri": url,
            "filter:authtoken.auth_url": url,
            "filter:authtoken.auth_type": "password",
            "filter:authtoken.project_domain_name": "Default",
            "filter:authtoken.user_domain_name": "Default",
            "filter:authtoken.project_name": "service",
            "filter:authtoken.username": "swift",
            "filter:authtoken.password": p.service_password,
            # keystoneauth decides, also for anonymous requests (public containers, tempurl).
            "filter:authtoken.delay_auth_decision": True,
            "filter:authtoken.memcached_servers": "127.0.0.1:11211",
            "filter:keystoneauth.use": "egg:swift#keystoneauth",
            "filter:keystoneauth.operator_roles": "admin, member",
            "filter:keystoneauth.reseller_admin_role": "ResellerAdmin",
            "filter:crossdomain.use": "egg:swift#crossdomain",
            # Both ways of keeping an object's old versions (X-Versions-Location,
            # and X-Versions-Enabled): off by default, and tempest's
            # test_versioned_container failed on sid without the first.
            "filter:versioned_writes.allow_versioned_writes": True,
            "filter:versioned_writes.allow_object_versioning": True,
        })
    start("memcached", *SWIFT_SERVERS)


# --- the cloud: users, catalog, compute host, networks ------------------------

def _cloud(action: str, p: Params, spec: dict[str, Any]) -> None:
    run([sys.executable, "-m", "deploy.cloud", action, json.dumps(spec)])


def service_users(p: Params) -> list[str]:
    """The profile's API services: each has a keystone user and endpoints."""
    profile = get_profile(p.profile)
    return [name for name in APIS if name in profile.configure]


def catalog_spec(p: Params, services: list[str]) -> dict[str, Any]:
    roles: list[str] = []
    domains: list[dict[str, str]] = []
    if "heat" in services:
        roles += HEAT_ROLES
        domains.append({"name": HEAT_DOMAIN, "admin": HEAT_DOMAIN_ADMIN})
    if "swift" in services:
        # keystoneauth's reseller admin (tempest's object-storage.reseller_admin_role).
        roles.append("ResellerAdmin")
    return {
        "password": p.service_password,
        "region": p.region,
        "users": services,
        "roles": roles,
        "domains": domains,
        "endpoints": [
            {"name": name, "type": kind,
             "url": f"http://{p.guest_address}:{APIS[name][0]}{APIS[name][1]}"}
            for name in services for kind in APIS[name][2]
        ],
    }


def apis(p: Params) -> None:
    """Every API of the profile answers (their users and endpoints came with keystone's)."""
    for name in service_users(p):
        port, _, _ = APIS[name]
        with part(f"{name} answers"):
            waited = wait_for_url(f"http://{p.guest_address}:{port}/",
                                  API_WAIT.get(p.host_accelerator, TCG_API_WAIT), what=name)
            facts.setdefault("answered_after", {})[name] = round(waited, 1)
        if name == "neutron":
            start(*NEUTRON_AFTER_API)


def nova_cells(p: Params) -> None:
    """Wait until nova-compute has registered and the scheduler has mapped it to cell1."""
    with part("nova-compute mapped and in placement"):
        _cloud("wait-compute", p, {"timeout": 600})


# The project network every project sees (tempest's compute.fixed_network_name
# when it does not build networks per test class; see deploy/tempest.py).
SHARED_NETWORK = "shared"


def network_resources(p: Params) -> None:
    """The external network tempest's router and floating IP tests attach to, and a shared one."""
    with part("external and shared networks"):
        _cloud("network-resources", p, {
            "external": {"name": "public", "physnet": PHYSNET, "cidr": "172.24.4.0/24",
                         "gateway": "172.24.4.1"},
            "shared": {"name": SHARED_NETWORK, "cidr": "10.1.0.0/24"},
        })


STEPS: dict[str, Callable[[Params], None]] = {
    "mariadb": mariadb,
    "rabbitmq": rabbitmq,
    "keystone": keystone,
    "glance": glance,
    "placement": placement,
    "neutron": neutron,
    "nova": nova,
    "cinder": cinder,
    "heat": heat,
    "swift": swift,
    "apis": apis,
    "nova-cells": nova_cells,
    "network-resources": network_resources,
}


def configure(p: Params, *only: str) -> None:
    """The profile's configuration steps in order; or only the named ones (to redo one)."""
    profile = get_profile(p.profile)
    unknown = [name for name in only if name not in profile.configure]
    if unknown:
        raise StepError(f"not a configuration step of profile {profile.name}: "
                        f"{', '.join(unknown)} (its steps: {', '.join(profile.configure)})")
    os.makedirs("/etc/openstack", exist_ok=True)
    allow_slow_starts(profile.services, p.host_accelerator)
    for name in profile.configure:
        if not only or name in only:
            with part(f"configure {name}"):
                try:
                    STEPS[name](p)
                except Exception as e:
                    raise StepError(failure(name, e)) from e


def failure(step: str, error: Exception) -> str:
    """What a failed configuration step says: the step, the error, the service's log."""
    message = str(error) if isinstance(error, StepError) else f"{type(error).__name__}: {error}"
    # The apis step fails on the one API that did not answer: its name leads the message.
    service = message.split(":", 1)[0] if step == "apis" else step
    tail = log_tail(LOG_DIRS.get(service, ()))
    return f"configure {step}: {message}" + (f"\n{tail}" if tail else "")
