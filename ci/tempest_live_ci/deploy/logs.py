"""The guest's logs and state, as one tar.gz on stdout (the host unpacks it into guest-logs/)."""

from __future__ import annotations

import glob
import io
import os
import sys
import tarfile
import time

from .util import LOG_DIR, run

SNAPSHOTS = {
    # The guest's wall clock, which also stamps the subunit stream and the services'
    # logs: the report puts a failure's journal lines beside it (results/servicelogs.py).
    "journal.txt": ["journalctl", "-b", "--no-pager", "-o", "short-iso-precise"],
    "packages.txt": ["dpkg", "-l"],
    "memory.txt": ["free", "-m"],
    "meminfo.txt": ["cat", "/proc/meminfo"],
    "disk.txt": ["df", "-h"],
    "processes.txt": ["ps", "-eo", "pid,ppid,rss,vsz,pcpu,etime,args", "--sort=-rss"],
    "failed-units.txt": ["systemctl", "--failed", "--no-pager"],
}
CONFIG_GLOBS = ("/etc/tempest/*.conf", "/var/lib/tempest/*.log",
                "/etc/apt/sources.list", "/etc/apt/sources.list.d/*", "/etc/apt/preferences.d/*",
                "/etc/apt/apt.conf.d/90tempest-live-ci",
                *(f"/etc/{service}/*.{suffix}"
                  for service in ("keystone", "glance", "placement", "nova", "neutron", "cinder",
                                  "heat")
                  for suffix in ("conf", "ini")))


def collect() -> None:
    """Snapshots of the guest's state, then /var/log and the configuration, as tar.gz on stdout."""
    os.makedirs(LOG_DIR, exist_ok=True)
    for name, argv in SNAPSHOTS.items():
        with open(os.path.join(LOG_DIR, name), "w") as out:
            # A snapshot that fails still says why, in its own file.
            result = run(argv, check=False, capture=True, env={"COLUMNS": "200"})
            out.write(result.stdout)
    stdout = sys.stdout.buffer
    with tarfile.open(fileobj=stdout, mode="w|gz") as tar:
        tar.add("/var/log", arcname="var/log", filter=_readable)
        for pattern in CONFIG_GLOBS:
            for path in sorted(glob.glob(pattern)):
                if os.path.isfile(path):
                    tar.add(path, arcname=path.lstrip("/"), filter=_readable)
        stamp = f"collected {time.strftime('%Y-%m-%dT%H:%M:%S%z')}\n".encode()
        info = tarfile.TarInfo("COLLECTED")
        info.size = len(stamp)
        tar.addfile(info, io.BytesIO(stamp))
    stdout.flush()


def _readable(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # Sockets, devices and the journal's binary files stay in the guest.
    if not (info.isfile() or info.isdir()):
        return None
    if info.name.startswith("var/log/journal/"):
        return None
    return info
