"""Wait for a daemon to listen, by reading its own view of the network.

/proc/PID/net/{tcp,udp} shows the sockets of the network namespace PID lives
in, so this works the same for a daemon in the host namespace and one inside
a run's namespace, without entering it.
"""

from __future__ import annotations

import time
from pathlib import Path

from tempest_live_ci import proc
from tempest_live_ci.errors import TestbedError

_TCP_LISTEN = "0A"


def _ports(pid: int, protocol: str) -> set[int]:
    ports: set[int] = set()
    for table in (protocol, protocol + "6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if protocol == "tcp" and fields[3] != _TCP_LISTEN:
                continue
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_listening(pid: int, port: int, *, protocol: str = "tcp", what: str,
                   timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.pid_alive(pid):
            raise TestbedError(f"{what} exited before listening on {protocol} port {port}")
        if port in _ports(pid, protocol):
            return
        time.sleep(0.05)
    raise TestbedError(f"{what} does not listen on {protocol} port {port} after {timeout:.0f}s")
