"""The live image: live-build wrapper and content-addressed image store.

The orchestrator calls build_image(ImageOptions(...)) → Image, or
find_image(options) to look without building.

The names below are imported on first use (PEP 562): the command line loads
image.commands for --help and completion without live-build's machinery.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tempest_live_ci.lazy import package_attributes

if TYPE_CHECKING:
    from tempest_live_ci.image.cache import find_image, list_images, load_image, resolve_image
    from tempest_live_ci.image.livebuild import build_image
    from tempest_live_ci.image.model import Image, ImageOptions

_WHERE = {
    "find_image": "cache",
    "list_images": "cache",
    "load_image": "cache",
    "resolve_image": "cache",
    "build_image": "livebuild",
    "Image": "model",
    "ImageOptions": "model",
}

__all__ = ["Image", "ImageOptions", "build_image", "find_image", "list_images", "load_image",
           "resolve_image"]


__getattr__ = package_attributes(__name__, _WHERE)
