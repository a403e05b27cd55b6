"""The HTTP server of the testbed: boot script, kernel, initrd, squashfs, and
the candidate package repository.

Python's own http.server is enough here: one client, a few large files, and
its access log ("GET /img/vmlinuz ... 200") is the boot progress the VM
runner follows. It is bound to the bridge address only.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from tempest_live_ci import registry
from tempest_live_ci.testbed.journal import Journal
from tempest_live_ci.testbed.listen import wait_listening

# `python3 -m http.server --bind ADDRESS` as it is, less one step: its server_bind
# asks the resolver for the address's name (socket.getfqdn). Where a default route
# exists but no name server answers (a host whose DNS is down, the tests' stand-in
# host namespaces), that waits out the resolver's timeouts: 6 s of each `host setup`
# (tests/bench/bench_testbed.py); an empty namespace fails at once. The same handler,
# access log and threads; the name it would have found went nowhere but the server's
# own attributes.
SERVER = """\
import functools, http.server, socketserver, sys
address, root, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
class Server(http.server.ThreadingHTTPServer):
    def server_bind(self):
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = address, port
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=root)
with Server((address, port), handler) as server:
    server.serve_forever()
"""


def start_http_server(journal: Journal, netns: str | None, address: str, port: int,
                      root: Path, state_dir: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    log_file = state_dir / "http.log"
    pid = journal.start_daemon(
        "http.server", str(root),
        [sys.executable, "-u", "-c", SERVER, address, str(root), str(port)],
        netns=netns, log_file=log_file, pid_file=state_dir / "http.pid",
    )
    wait_listening(pid, port, what="HTTP server")
    return pid


@registry.kind("served")
@dataclass(kw_only=True)
class Served(registry.Resource):
    """What one run put under a testbed's HTTP root (its candidates' repository, its test
    image): a persistent testbed's server outlives the run, and would serve it to the next."""

    path: str
    what: str

    def undo(self) -> None:
        path = Path(self.path)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)

    def describe(self) -> str:
        return f"{self.what} {self.path}"
