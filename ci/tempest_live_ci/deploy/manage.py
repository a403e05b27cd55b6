"""Several management commands of one service in one Python process.

Under TCG most of a `keystone-manage` or `nova-manage` call is importing the
service (about 20 s each): keystone's db_sync, fernet_setup, credential_setup
and bootstrap, or nova's api_db sync, map_cell0, create_cell and db sync, as
separate calls cost a minute or more each service. Each command goes through
the service's own entry point, with oslo.config's parsed state cleared in
between, exactly as the command line tool would run it.

    python3 -m deploy.manage keystone '[["db_sync"], ["fernet_setup", ...]]'
    python3 -m deploy.manage nova '[["api_db", "sync"], {"argv": [...], "ok": [0, 2]}]'

A command given as {"argv": ..., "ok": [...]} may end with any of those
statuses (nova-manage cell_v2 create_cell says 2 when the cell exists: a step
run again goes on).
"""

from __future__ import annotations

import importlib
import json
import sys
import time
from collections.abc import Callable

# The tool each service's commands belong to, and its entry point.
TOOLS = {
    "keystone": ("keystone-manage", "keystone.cmd.manage"),
    "nova": ("nova-manage", "nova.cmd.manage"),
}


def entry_point(service: str) -> Callable[[list[str]], int]:
    tool, module_name = TOOLS[service]
    if service == "keystone":
        from keystone.cmd import cli  # type: ignore[import-not-found]

        def keystone(argv: list[str]) -> int:
            return int(cli.main(argv=[tool, *argv]) or 0)
        return keystone
    module = importlib.import_module(module_name)

    def by_sys_argv(argv: list[str]) -> int:
        # nova-manage reads sys.argv; it may also end with SystemExit.
        sys.argv = [tool, *argv]
        try:
            return int(module.main() or 0)
        except SystemExit as e:
            return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    return by_sys_argv


def main() -> int:
    service, commands = sys.argv[1], json.loads(sys.argv[2])
    tool = TOOLS[service][0]
    run = entry_point(service)
    from oslo_config import cfg  # type: ignore[import-not-found]

    for command in commands:
        argv, ok = (command["argv"], command["ok"]) if isinstance(command, dict) \
            else (command, [0])
        start = time.monotonic()
        print(f"+ {tool} {' '.join(argv)}", file=sys.stderr, flush=True)
        cfg.CONF.clear()
        status = run(argv)
        if status not in ok:
            print(f"{tool} {' '.join(argv)} exited with status {status}", file=sys.stderr)
            return status
        print(f"  ({time.monotonic() - start:.1f} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
