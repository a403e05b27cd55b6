"""Tiny real Debian packages for the tests: built by dpkg-deb, listed in real .changes files."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Sequence
from pathlib import Path


def build_deb(directory: Path, package: str, version: str, *, depends: str | None = None,
              source: str | None = None, architecture: str = "all",
              files: dict[str, str] | None = None) -> Path:
    """A binary package made by `dpkg-deb --build`, with `files` (path → text) in it."""
    root = directory / f"build-{package}-{version.replace(':', '_')}"
    (root / "DEBIAN").mkdir(parents=True)
    control = [f"Package: {package}", f"Version: {version}", f"Architecture: {architecture}",
               "Maintainer: Test <test@example.org>", f"Description: {package} for the tests"]
    if source:
        control.insert(1, f"Source: {source}")
    if depends:
        control.append(f"Depends: {depends}")
    (root / "DEBIAN" / "control").write_text("\n".join(control) + "\n")
    for name, text in (files or {f"usr/share/doc/{package}/README": f"{package} {version}\n"}
                       ).items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    deb = directory / f"{package}_{version.split(':')[-1]}_{architecture}.deb"
    subprocess.run(["dpkg-deb", "--root-owner-group", "-Zgzip", "--build", str(root), str(deb)],
                   check=True, capture_output=True)
    return deb


def write_changes(path: Path, debs: Sequence[Path], *, source: str = "keystone",
                  version: str = "2:27.0.0-2") -> Path:
    """A .changes listing `debs` (Checksums-Sha256 and Files), as dpkg-genchanges writes one."""
    sha, md5 = [], []
    for deb in debs:
        data = deb.read_bytes()
        sha.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {deb.name}")
        md5.append(f" {hashlib.md5(data).hexdigest()} {len(data)} python optional {deb.name}")
    path.write_text("\n".join([
        "Format: 1.8", "Date: Mon, 02 Mar 2026 10:00:00 +0000", f"Source: {source}",
        "Binary: " + " ".join(d.name.split("_")[0] for d in debs), "Architecture: all",
        f"Version: {version}", "Distribution: unstable", "Urgency: medium",
        "Maintainer: Test <test@example.org>", "Description: test upload", "Changes:",
        f" {source} ({version}) unstable; urgency=medium", " .", "   * Test.",
        "Checksums-Sha256:", *sha, "Files:", *md5]) + "\n")
    return path
