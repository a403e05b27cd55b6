"""Several keystone-manage commands, then the services' users and catalog, in one Python process.

Under TCG most of a keystone-manage call is importing keystone (about 19 s
each): db_sync, fernet_setup, credential_setup and bootstrap as four calls
cost a minute more than as one. Each command goes through keystone's own
entry point, with oslo.config's parsed state cleared in between, exactly as
keystone-manage would run it.

The other services' users (in project "service", with the admin and service
roles, as Debian's maintainer scripts make them) and their endpoints are
then made with keystone's own backend API, the one `keystone-manage
bootstrap` makes the admin and the identity endpoint with. Through the REST
API the same work is about a hundred requests of 1.5 to 3.5 s each under TCG.

    python3 -m deploy.keystone_manage '[["db_sync"], ["fernet_setup", ...]]' ['{catalog}']

catalog: {"password": ..., "region": ..., "users": [names],
          "endpoints": [{"name": ..., "type": ..., "url": ...}],
          "roles": [more role names], "domains": [{"name": ..., "admin": user name}]}
A domain's admin (heat's stack domain) has the admin role on that domain.
Run again, it finds what it made.
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
import uuid
from typing import Any


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def catalog(spec: dict[str, Any]) -> None:
    # deferred: keystone is the guest's; only a catalog needs its backends, after the commands ran
    from keystone import exception  # type: ignore[import-not-found]
    from keystone.common import driver_hints, provider_api  # type: ignore[import-not-found]
    from keystone.server import backends  # type: ignore[import-not-found]

    providers = provider_api.ProviderAPIs
    try:
        providers.resource_api  # noqa: B018 - loaded by bootstrap, in this process
    except AttributeError:
        backends.load_backends()
    domain_id = "default"

    def by_name(lister: Any, **filters: Any) -> list[Any]:
        hints = driver_hints.Hints()
        for key, value in filters.items():
            hints.add_filter(key, value)
        return list(lister(hints))

    try:
        project = providers.resource_api.get_project_by_name("service", domain_id)
    except exception.ProjectNotFound:
        project_id = uuid.uuid4().hex
        project = providers.resource_api.create_project(project_id, {
            "id": project_id, "name": "service", "domain_id": domain_id, "enabled": True,
            "description": "OpenStack services"})
    roles = {}
    for name in ("admin", "service"):
        found = by_name(providers.role_api.list_roles, name=name, domain_id=None)
        if found:
            roles[name] = found[0]
        else:
            role_id = uuid.uuid4().hex
            roles[name] = providers.role_api.create_role(role_id, {"id": role_id, "name": name})
    for name in spec["users"]:
        try:
            user = providers.identity_api.get_user_by_name(name, domain_id)
            providers.identity_api.update_user(user["id"], {"password": spec["password"]})
        except exception.UserNotFound:
            user = providers.identity_api.create_user({
                "name": name, "domain_id": domain_id, "enabled": True,
                "password": spec["password"], "default_project_id": project["id"]})
        for role in roles.values():
            with contextlib.suppress(exception.Conflict):
                providers.assignment_api.add_role_to_user_and_project(
                    user_id=user["id"], project_id=project["id"], role_id=role["id"])
        say(f"user {name}: admin and service on project service")
    for name in spec.get("roles", ()):
        if not by_name(providers.role_api.list_roles, name=name, domain_id=None):
            role_id = uuid.uuid4().hex
            providers.role_api.create_role(role_id, {"id": role_id, "name": name})
            say(f"role {name}")
    for domain in spec.get("domains", ()):
        try:
            ref = providers.resource_api.get_domain_by_name(domain["name"])
        except exception.DomainNotFound:
            ref_id = uuid.uuid4().hex
            ref = providers.resource_api.create_domain(ref_id, {
                "id": ref_id, "name": domain["name"], "enabled": True,
                "description": f"made by tempest-live-ci for {domain['admin']}"})
        try:
            admin = providers.identity_api.get_user_by_name(domain["admin"], ref["id"])
            providers.identity_api.update_user(admin["id"], {"password": spec["password"]})
        except exception.UserNotFound:
            admin = providers.identity_api.create_user({
                "name": domain["admin"], "domain_id": ref["id"], "enabled": True,
                "password": spec["password"]})
        with contextlib.suppress(exception.Conflict):
            providers.assignment_api.create_grant(roles["admin"]["id"], user_id=admin["id"],
                                                  domain_id=ref["id"])
        say(f"domain {domain['name']}: {domain['admin']} is its admin")
    for endpoint in spec["endpoints"]:
        services = by_name(providers.catalog_api.list_services, type=endpoint["type"])
        if services:
            service = services[0]
        else:
            service_id = uuid.uuid4().hex
            service = providers.catalog_api.create_service(service_id, {
                "id": service_id, "name": endpoint["name"], "type": endpoint["type"],
                "enabled": True})
        existing = {e["interface"]: e for e in by_name(
            providers.catalog_api.list_endpoints, service_id=service["id"])}
        for interface in ("public", "internal", "admin"):
            ref = existing.get(interface)
            if ref is None:
                endpoint_id = uuid.uuid4().hex
                providers.catalog_api.create_endpoint(endpoint_id, {
                    "id": endpoint_id, "interface": interface, "url": endpoint["url"],
                    "service_id": service["id"], "region_id": spec["region"], "enabled": True})
            elif ref["url"] != endpoint["url"]:
                providers.catalog_api.update_endpoint(ref["id"], {**ref, "url": endpoint["url"]})
        say(f"endpoint {endpoint['type']} ({endpoint['name']}): {endpoint['url']}")


def main() -> int:
    commands = json.loads(sys.argv[1])
    # deferred: keystone is the guest's, its import 19 s under TCG: not before the arguments parse
    from keystone.cmd import cli  # type: ignore[import-not-found]
    from oslo_config import cfg  # type: ignore[import-not-found]

    for argv in commands:
        start = time.monotonic()
        say(f"+ keystone-manage {' '.join(argv)}")
        cfg.CONF.clear()
        status = cli.main(argv=["keystone-manage", *argv])
        if status:
            say(f"keystone-manage {argv[0]} exited with status {status}")
            return int(status)
        say(f"  ({time.monotonic() - start:.1f} s)")
    if len(sys.argv) > 2:
        start = time.monotonic()
        say("+ service users and endpoints")
        catalog(json.loads(sys.argv[2]))
        say(f"  ({time.monotonic() - start:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
