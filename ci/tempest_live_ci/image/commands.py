"""`tempest-live-ci image ...`: build, list, show and prune live images."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from tempest_live_ci.errors import ExitCode, UsageError
from tempest_live_ci.image.cache import list_images, prune_images, resolve_image
from tempest_live_ci.image.livebuild import build_image
from tempest_live_ci.image.model import (
    APT_PROXY_AUTO,
    COMPRESSION_LEVELS,
    DEFAULT_COMPRESSION,
    DEFAULT_MIRROR,
    DEFAULT_SUITE,
    SUITES,
    Image,
    ImageOptions,
    images_dir,
    split_packages,
)
from tempest_live_ci.options import Renamed
from tempest_live_ci.siteconfig import site_config

# The image store; --output is its old spelling (--output names a directory
# a command writes its results into everywhere else).
_store_option = click.option(
    "--store", "--output", "store", cls=Renamed, type=click.Path(file_okay=False, path_type=Path),
    default=None, help="Directory holding the images (default: CACHE_DIR/images).")


@click.group()
def image() -> None:
    """Build and manage the live images guests boot."""


@image.command("build")
@click.option("--suite", default=DEFAULT_SUITE, show_default=True,
              help=f"Debian suite: {', '.join(SUITES)}.")
@click.option("--mirror", default=None,
              help=f"Debian mirror [default: the site's image.mirror, else {DEFAULT_MIRROR}].")
@click.option("--apt-proxy", default=None,
              help="'auto': a shared apt-cacher-ng (repeated builds are fast); "
                   "'none': straight to the mirror; or an HTTP proxy URL "
                   f"[default: the site's image.apt_proxy, else {APT_PROXY_AUTO}].")
@click.option("--packages", multiple=True,
              help="Extra packages, comma or space separated (repeatable).")
@click.option("--profile", default=None,
              help="Preinstall an OpenStack profile's packages (identity, ...); "
                   "its services stay unconfigured.")
@click.option("--compression", default=DEFAULT_COMPRESSION, show_default=True,
              help=f"squashfs compression: {', '.join(COMPRESSION_LEVELS)}.")
@click.option("--compression-level", type=int, default=None,
              help="zstd 1-22 (default 3), gzip 1-9.")
@_store_option
@click.option("--ssh-key", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Private key for root (its .pub next to it); "
                   "default: a new ed25519 pair kept with the image.")
@click.option("--rebuild", is_flag=True, help="Build even if an identical image is stored.")
@click.option("--check-valid-until/--no-check-valid-until", "check_valid_until", default=None,
              help="--no-check-valid-until accepts an archive whose Release is past its "
                   "Valid-Until (a snapshot, a frozen mirror) [default: the site's "
                   "image.check_valid_until, else checked].")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest on stdout.")
def build(suite: str, mirror: str | None, apt_proxy: str | None, packages: tuple[str, ...],
          profile: str | None, compression: str, compression_level: int | None, store: Path | None,
          ssh_key: Path | None, rebuild: bool, check_valid_until: bool | None,
          as_json: bool) -> int:
    """Build the live image (or find it in the cache) and print its directory."""
    site = site_config()
    options = ImageOptions(
        suite=suite, mirror=mirror or site.image.mirror or DEFAULT_MIRROR,
        apt_proxy=site.image_apt_proxy() if apt_proxy is None
        else None if apt_proxy == "none" else apt_proxy,
        packages=split_packages(packages), profile=profile, compression=compression,
        compression_level=compression_level, output=store, ssh_key=ssh_key,
        rebuild=rebuild,
        check_valid_until=check_valid_until if check_valid_until is not None
        else site.image.check_valid_until is not False,
    )
    return build_command(options, as_json=as_json)


def build_command(options: ImageOptions, *, as_json: bool = False) -> int:
    """Build (or find) the image; print its directory, or its manifest with as_json."""
    built = build_image(options)
    _print(built, as_json)
    return ExitCode.OK


def _print(built: Image, as_json: bool) -> None:
    if as_json:
        json.dump({**built.manifest, "directory": str(built.directory)}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        click.echo(str(built.directory))


@image.command("list")
@_store_option
@click.option("--json", "as_json", is_flag=True, help="One JSON array on stdout.")
def list_(store: Path | None, as_json: bool) -> int:
    """List the stored images, newest first."""
    return list_command(store or images_dir(), as_json=as_json)


def list_command(store: Path, *, as_json: bool = False) -> int:
    images = list_images(store)
    if as_json:
        rows = [{"hash": i.hash, "directory": str(i.directory), "suite": i.manifest["suite"],
                 "built_at": i.manifest["built_at"],
                 "size": sum(a["size"] for a in i.manifest["artifacts"].values())}
                for i in images]
        json.dump(rows, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return ExitCode.OK
    for i in images:
        size = sum(a["size"] for a in i.manifest["artifacts"].values())
        extra = ",".join(i.manifest["inputs"]["packages"]) or "-"
        click.echo(f"{i.hash}  {i.manifest['built_at']}  {i.manifest['suite']:<8}  "
                   f"{size / 1e6:7.1f} MB  {i.manifest['inputs']['compression']:<4}  {extra}")
    return ExitCode.OK


@image.command("show")
@click.argument("ref", default="latest")
@_store_option
def show(ref: str, store: Path | None) -> int:
    """Print the manifest of an image (by hash or prefix, or 'latest')."""
    return show_command(store or images_dir(), ref)


def show_command(store: Path, ref: str) -> int:
    _print(resolve_image(store, ref), as_json=True)
    return ExitCode.OK


@image.command("prune")
@click.option("--keep", type=int, default=2, show_default=True,
              help="How many of the newest images to keep.")
@_store_option
def prune(keep: int, store: Path | None) -> int:
    """Remove old images and the logs of failed builds."""
    if keep < 0:
        raise UsageError(f"--keep {keep}: must be 0 or more")
    prune_images(store or images_dir(), keep)
    return ExitCode.OK
