"""Wait for a daemon to listen, on a socket of its own.

/proc/PID/net/{tcp,udp} lists every socket of the network namespace PID
lives in, whoever holds it: another daemon on the same port (nginx on :80,
the host's apt-cacher-ng on :3142) would look like ours. So the sockets
counted are only those whose inode is among PID's open files
(/proc/PID/fd/* -> "socket:[INODE]"). This works the same for a daemon in the
host namespace and one inside a run's namespace, without entering it.
"""

from __future__ import annotations

import os
from pathlib import Path

from tempest_live_ci import proc
from tempest_live_ci.errors import TestbedError

_TCP_LISTEN = "0A"


def socket_inodes(pid: int) -> set[int]:
    """The inodes of the sockets `pid` holds open."""
    inodes: set[int] = set()
    fd_dir = Path(f"/proc/{pid}/fd")
    try:
        fds = os.listdir(fd_dir)
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd_dir / fd)
        except OSError:
            continue
        if target.startswith("socket:[") and target.endswith("]"):
            inodes.add(int(target[len("socket:["):-1]))
    return inodes


def listening_ports(pid: int, protocol: str = "tcp") -> set[int]:
    """Ports `pid` itself listens on (TCP) or is bound to (UDP)."""
    owned = socket_inodes(pid)
    ports: set[int] = set()
    if not owned:
        return ports
    for table in (protocol, protocol + "6"):
        try:
            lines = Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 10 or int(fields[9]) not in owned:
                continue
            if protocol == "tcp" and fields[3] != _TCP_LISTEN:
                continue
            ports.add(int(fields[1].rsplit(":", 1)[1], 16))
    return ports


def wait_listening(pid: int, port: int, *, protocol: str = "tcp", what: str,
                   timeout: float = 10.0) -> None:
    """Return once `pid` holds a socket listening on `port`; raise if it dies or times out."""
    def alive() -> None:
        if not proc.pid_alive(pid):
            raise TestbedError(f"{what} exited before listening on {protocol} port {port}")

    if proc.wait_until(lambda: port in listening_ports(pid, protocol), timeout, check=alive):
        return
    raise TestbedError(f"{what} does not listen on {protocol} port {port} after {timeout:.0f}s "
                       "(is another process holding the port?)")
