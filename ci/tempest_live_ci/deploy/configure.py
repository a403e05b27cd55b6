"""Configuration steps of the profiles, the Debian way: the packages' own files
edited in place, the services' own management commands, services started by
systemd once they are configured."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Callable
from typing import Any

from .profiles import get_profile
from .util import facts, ini_set, part, run, wait_for_url, write_file

KEYSTONE_PORT = 5000
KEYSTONE_DB = "/var/lib/keystone/keystone.db"
SQLITE_TIMEOUT = 120


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
KEYSTONE_PROCESSES = 1
KEYSTONE_THREADS = 1


def keystone(p: dict[str, Any]) -> None:
    address = p["guest_address"]
    url = f"http://{address}:{KEYSTONE_PORT}/v3/"
    with part("keystone.conf"):
        ini_set("/etc/keystone/keystone.conf", {
            # A busy timeout: under TCG a writer holds the lock for seconds,
            # and keystone-manage and the API may overlap (the default 5 s gave
            # "database is locked" errors).
            "database.connection": f"sqlite:///{KEYSTONE_DB}?timeout={SQLITE_TIMEOUT}",
            # The guest's root is in RAM: an fsync per transaction buys nothing.
            "database.sqlite_synchronous": False,
            "token.provider": "fernet",
        })
        ini_set("/etc/keystone/keystone-uwsgi.ini", {
            "uwsgi.processes": KEYSTONE_PROCESSES,
            "uwsgi.threads": KEYSTONE_THREADS,
        })
    owner = ["--keystone-user", "keystone", "--keystone-group", "keystone"]
    commands = [
        ["db_sync"],
        ["fernet_setup", *owner],
        ["credential_setup", *owner],
        ["bootstrap", "--bootstrap-username", "admin", "--bootstrap-project-name", "admin",
         "--bootstrap-role-name", "admin", "--bootstrap-service-name", "keystone",
         "--bootstrap-region-id", p["region"], "--bootstrap-admin-url", url,
         "--bootstrap-public-url", url, "--bootstrap-internal-url", url],
    ]
    # uwsgi's workers import keystone for half a minute under TCG: that happens
    # while keystone-manage works. The API is not used before both are done,
    # and keystone reads the database and the keys only when asked.
    run(["systemctl", "start", "--no-block", "keystone.service"])
    with part("keystone-manage db_sync, fernet_setup, credential_setup, bootstrap"):
        run([sys.executable, "-m", "deploy.keystone_manage", json.dumps(commands)],
            env={"OS_BOOTSTRAP_PASSWORD": p["admin_password"]})
        # Readers go on while one writer commits.
        with sqlite3.connect(KEYSTONE_DB) as db:
            db.execute("PRAGMA journal_mode=WAL")
        run(["chown", "-R", "keystone:keystone", "/var/lib/keystone", "/var/log/keystone"])
    with part("keystone answers"):
        run(["systemctl", "start", "keystone.service"])
        waited = wait_for_url(url, 300, what="keystone")
        facts["keystone_answered_after"] = round(waited, 1)
    write_admin_credentials(p, url)


def write_admin_credentials(p: dict[str, Any], auth_url: str) -> None:
    """clouds.yaml and an openrc for the admin: for tempest.conf discovery, and a person."""
    write_file("/etc/openstack/clouds.yaml", (
        "clouds:\n"
        "  admin:\n"
        "    auth:\n"
        f"      auth_url: {auth_url}\n"
        "      username: admin\n"
        f"      password: {p['admin_password']}\n"
        "      project_name: admin\n"
        "      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
        f"    region_name: {p['region']}\n"
        "    identity_api_version: 3\n"), mode=0o600)
    write_file("/root/admin-openrc", "".join(
        f"export {key}={value}\n" for key, value in admin_environment(p, auth_url).items()),
        mode=0o600)


def admin_environment(p: dict[str, Any], auth_url: str) -> dict[str, str]:
    return {
        "OS_AUTH_URL": auth_url,
        "OS_USERNAME": "admin",
        "OS_PASSWORD": p["admin_password"],
        "OS_PROJECT_NAME": "admin",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_IDENTITY_API_VERSION": "3",
        "OS_REGION_NAME": p["region"],
    }


STEPS: dict[str, Callable[[dict[str, Any]], None]] = {
    "keystone": keystone,
}


def configure(p: dict[str, Any]) -> None:
    profile = get_profile(p["profile"])
    os.makedirs("/etc/openstack", exist_ok=True)
    for name in profile.configure:
        with part(f"configure {name}"):
            STEPS[name](p)
