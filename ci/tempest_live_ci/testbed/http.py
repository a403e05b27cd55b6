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


def start_http_server(journal: Journal, netns: str | None, address: str, port: int,
                      root: Path, state_dir: Path) -> int:
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    log_file = state_dir / "http.log"
    pid = journal.start_daemon(
        "http.server", str(root),
        [sys.executable, "-u", "-m", "http.server", "--bind", address,
         "--directory", str(root), str(port)],
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
