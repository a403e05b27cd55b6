"""Several keystone-manage commands in one Python process.

Under TCG most of a keystone-manage call is importing keystone (about 19 s
each): db_sync, fernet_setup, credential_setup and bootstrap as four calls
cost a minute more than as one. Each command goes through keystone's own
entry point, with oslo.config's parsed state cleared in between, exactly as
keystone-manage would run it.

    python3 -m deploy.keystone_manage '[["db_sync"], ["fernet_setup", ...]]'
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    commands = json.loads(sys.argv[1])
    from keystone.cmd import cli  # type: ignore[import-not-found]
    from oslo_config import cfg  # type: ignore[import-not-found]

    for argv in commands:
        start = time.monotonic()
        print(f"+ keystone-manage {' '.join(argv)}", file=sys.stderr, flush=True)
        cfg.CONF.clear()
        status = cli.main(argv=["keystone-manage", *argv])
        if status:
            print(f"keystone-manage {argv[0]} exited with status {status}", file=sys.stderr)
            return int(status)
        print(f"  ({time.monotonic() - start:.1f} s)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
