"""The live image: live-build wrapper and content-addressed image store.

The orchestrator calls build_image(ImageOptions(...)) → Image, or
find_image(options) to look without building.
"""

from tempest_live_ci.image.cache import find_image, list_images, load_image, resolve_image
from tempest_live_ci.image.livebuild import build_image
from tempest_live_ci.image.model import Image, ImageOptions

__all__ = ["Image", "ImageOptions", "build_image", "find_image", "list_images", "load_image",
           "resolve_image"]
