"""apt and dpkg on directories of a test's own: they install for real, the host's packages stay."""

from __future__ import annotations

from pathlib import Path

from tempest_live_ci.image.archive import apt_config


def private_apt(root: Path, target: Path) -> dict[str, str]:
    """apt's state under root, dpkg's under target (its status, the files installed).

    Returns the environment apt-get, dpkg-query and the in-guest code then use:
    APT_CONFIG (read before the host's, every directory moved) and DPKG_ADMINDIR.
    """
    for sub in ("state/lists/partial", "cache/archives/partial", "etc/apt.conf.d",
                "etc/sources.list.d", "etc/preferences.d", "log"):
        (root / sub).mkdir(parents=True)
    for sub in ("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers", "var/log"):
        (target / sub).mkdir(parents=True)
    (target / "var/lib/dpkg/status").touch()
    config = apt_config(root, None).replace(f'"{root}/state/status"',
                                            f'"{target}/var/lib/dpkg/status"')
    # dpkg installs under target, logs there; the test packages have no maintainer scripts.
    config += (f'DPkg::Options {{ "--root={target}"; "--log={target}/var/log/dpkg.log"; '
               '"--force-script-chrootless"; };\n')
    (root / "apt.conf").write_text(config)
    return {"APT_CONFIG": str(root / "apt.conf"), "DPKG_ADMINDIR": str(target / "var/lib/dpkg"),
            "LC_ALL": "C.UTF-8"}
