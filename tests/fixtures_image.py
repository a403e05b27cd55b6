"""The default live image, built once per test session (pytest plugin).

Load it from tests/conftest.py with `pytest_plugins = ["tests.fixtures_image"]`.
The image lives in a fixed cache directory that survives the session, so the
build is a cache hit on every later run until live-build/ or the code's
inputs change; VM tests reuse the same image.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

TOP = Path(__file__).resolve().parents[1]
# Also usable with `pytest -p tests.fixtures_image`, before conftest set the path.
if str(TOP / "ci") not in sys.path:
    sys.path.insert(0, str(TOP / "ci"))

from tempest_live_ci.image import Image, load_image  # noqa: E402

# A fixed place (not a per-test tmp dir): the image and the apt cache are reused across sessions.
TEST_CACHE_DIR = Path(os.environ.get("TEMPEST_LIVE_CI_TEST_CACHE_DIR",
                                     "/var/tmp/tempest-live-ci-test-cache"))


def image_env(state_dir: Path) -> dict[str, str]:
    """Environment for the CLI to build into the shared test cache."""
    return {**os.environ, "TEMPEST_LIVE_CI_CACHE_DIR": str(TEST_CACHE_DIR),
            "TEMPEST_LIVE_CI_STATE_DIR": str(state_dir)}


# The default job's image: the identity profile preinstalled. One image serves
# the boot tests and the end-to-end runs.
PROFILE = ("--profile", "identity")


def build_through_cli(state_dir: Path, *args: str,
                      timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TOP / "bin" / "tempest-live-ci"), "image", "build", *args],
        capture_output=True, text=True, timeout=timeout, env=image_env(state_dir),
    )


@pytest.fixture(scope="session")
def live_image_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("image-state")


@pytest.fixture(scope="session")
def live_image(live_image_state_dir: Path) -> Image:
    """The default job's image (trixie, zstd, identity preinstalled), built through the
    apt proxy, in TEST_CACHE_DIR."""
    if os.geteuid() != 0:
        pytest.skip("building an image needs root")
    started = time.monotonic()
    result = build_through_cli(live_image_state_dir, *PROFILE)
    if result.returncode != 0:
        pytest.fail(f"image build exited {result.returncode}:\n{result.stderr[-4000:]}")
    image = load_image(Path(result.stdout.strip()))
    sys.stderr.write(f"\nlive image {image.hash} ready in {time.monotonic() - started:.1f}s: "
                     f"{image.directory}\n")
    return image
