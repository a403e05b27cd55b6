"""Real subunit streams, made by really running stestr on tiny tempest-like test trees.

Test ids look like tempest's (tempest.api.identity.v3.test_tokens...), so the
per-service breakdown is exercised. The trees are built once per session.
"""

from __future__ import annotations

import os
import subprocess
import textwrap
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.subunitgen import subunit_stats  # noqa: F401 - for the tests here

from tempest_live_ci.results.stream import read_stream

STESTR_CONF = "[DEFAULT]\ntest_path=./tempest\ntop_dir=./\n"
# tempest's own .stestr.conf groups the tests of a class on one worker, so a
# class fixture runs once. Without it (STESTR_CONF), two workers may each run it.
TEMPEST_STESTR_CONF = STESTR_CONF + "group_regex=([^\\.]*\\.)*\n"

# How tempest skips a whole class (tempest/test.py, BaseTestCase): setUpClass
# calls skip_checks(), which raises skipException (unittest.SkipTest). unittest
# then reports one skip of the pseudo-test "setUpClass (module.Class)", and
# none for the class's tests, which a live stream has listed ("exists").
TEMPEST_BASE = """
    import testtools


    class BaseTestCase(testtools.testcase.WithAttributes, testtools.TestCase):
        @classmethod
        def skip_checks(cls):
            pass

        @classmethod
        def setUpClass(cls):
            super().setUpClass()
            cls.skip_checks()
"""

MIXED = {
    "tempest/test.py": TEMPEST_BASE,
    "tempest/api/compute/admin/test_migrations.py": """
        from tempest import test


        class MigrationsAdminTest(test.BaseTestCase):
            @classmethod
            def skip_checks(cls):
                super().skip_checks()
                raise cls.skipException("Less than 2 compute nodes, skipping migration test.")

            def test_cold_migration(self):
                pass

            def test_live_block_migration(self):
                pass
    """,
    "tempest/api/identity/v3/test_tokens.py": """
        import unittest

        import testtools
        from testtools.testcase import attr


        class TokensV3Test(testtools.testcase.WithAttributes, testtools.TestCase):
            @attr("smoke")
            def test_create_token(self):
                pass

            def test_validate_token(self):
                self.assertEqual("abc", "abd", "token mismatch")

            def test_token_v2(self):
                self.skipTest("identity v2 API is disabled")

            @unittest.expectedFailure
            def test_known_bug(self):
                self.fail("bug 1234")

            @unittest.expectedFailure
            def test_bug_fixed(self):
                pass
    """,
    "tempest/api/identity/v3/test_users.py": """
        import unittest


        class UsersV3Test(unittest.TestCase):
            def test_list_users(self):
                pass

            def test_update_user(self):
                raise RuntimeError("keystone returned 500")
    """,
    "tempest/api/compute/servers/test_servers.py": """
        import unittest


        @unittest.skip("compute service is not available")
        class ServersTest(unittest.TestCase):
            def test_create_server(self):
                pass

            def test_delete_server(self):
                pass
    """,
    "tempest/api/network/test_ports.py": """
        import time
        import unittest


        class PortsTest(unittest.TestCase):
            def test_create_port(self):
                time.sleep(0.3)

            def test_list_ports(self):
                self.skipTest("identity v2 API is disabled")
    """,
    "tempest/scenario/test_network_basic_ops.py": """
        import unittest


        class TestNetworkBasicOps(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                raise ValueError("cannot create router: quota exceeded")

            def test_network_basic_ops(self):
                pass

            def test_hotplug_nic(self):
                pass
    """,
}

PASSING = {
    "tempest/test.py": TEMPEST_BASE,
    "tempest/api/network/admin/test_routers_dvr.py": """
        from tempest import test


        class RoutersTestDVR(test.BaseTestCase):
            @classmethod
            def skip_checks(cls):
                super().skip_checks()
                raise cls.skipException("DVR extension is not enabled")

            def test_centralized_router_creation(self):
                pass
    """,
    "tempest/api/identity/v3/test_domains.py": """
        import unittest


        class DomainsTest(unittest.TestCase):
            def test_list_domains(self):
                pass

            def test_get_domain(self):
                pass
    """,
    "tempest/api/image/v2/test_images.py": """
        import unittest


        class ImagesTest(unittest.TestCase):
            def test_list_images(self):
                pass

            def test_image_skip(self):
                self.skipTest("image import is disabled")
    """,
}

ALL_SKIPPED = {
    "tempest/test.py": TEMPEST_BASE,
    "tempest/api/object_storage/test_containers.py": """
        from tempest import test


        class ContainersTest(test.BaseTestCase):
            @classmethod
            def skip_checks(cls):
                super().skip_checks()
                raise cls.skipException("swift is not enabled")

            def test_create_container(self):
                pass

            def test_delete_container(self):
                pass
    """,
    "tempest/api/object_storage/test_objects.py": """
        import unittest


        @unittest.skip("swift is not enabled")
        class ObjectsTest(unittest.TestCase):
            def test_create_object(self):
                pass
    """,
    # A module that skips itself as a whole: "setUpModule (module)".
    "tempest/api/orchestration/test_stacks.py": """
        import unittest


        def setUpModule():
            raise unittest.SkipTest("heat is not enabled")


        class StacksTest(unittest.TestCase):
            def test_create_stack(self):
                pass
    """,
}

IMPORT_ERROR = {
    "tempest/api/identity/v3/test_ok.py": """
        import unittest


        class OkTest(unittest.TestCase):
            def test_ok(self):
                pass
    """,
    "tempest/scenario/test_broken.py": """
        import tempest_no_such_module  # noqa: F401
    """,
}

# The worker dies in the middle of a test, like a guest that is powered off.
WORKER_DIES = {
    "tempest/api/network/test_routers.py": """
        import os
        import sys
        import time
        import unittest


        class RoutersTest(unittest.TestCase):
            def test_a_create_router(self):
                pass

            def test_b_update_router(self):
                sys.stdout.flush()
                time.sleep(0.1)
                os._exit(137)

            def test_c_delete_router(self):
                pass
    """,
}

# A test that fails the first time it runs and passes afterwards (a marker
# file remembers), next to one that always fails.
FLAKY = {
    "tempest/api/volume/test_volumes.py": """
        import os
        import unittest

        MARKER = os.path.join(os.path.dirname(__file__), "ran-once")


        class VolumesTest(unittest.TestCase):
            def test_attach_volume(self):
                if not os.path.exists(MARKER):
                    open(MARKER, "w").close()
                    self.fail("volume stuck in 'attaching'")

            def test_extend_volume(self):
                self.fail("extend is broken")

            def test_list_volumes(self):
                pass
    """,
    "tempest/scenario/test_volume_boot.py": """
        import os
        import unittest

        MARKER = os.path.join(os.path.dirname(__file__), "set-up-once")


        class VolumeBootTest(unittest.TestCase):
            @classmethod
            def setUpClass(cls):
                if not os.path.exists(MARKER):
                    open(MARKER, "w").close()
                    raise RuntimeError("timed out waiting for the volume service")

            def test_boot_from_volume(self):
                pass

            def test_snapshot_boot(self):
                pass
    """,
}

# One tree whose tests change between two runs (SAMPLE_VARIANT=1 or 2):
# one test breaks, one is fixed, one becomes skipped, one appears, one goes.
EVOLVING = {
    "tempest/api/compute/test_flavors.py": """
        import os
        import unittest

        V2 = os.environ.get("SAMPLE_VARIANT") == "2"


        class FlavorsTest(unittest.TestCase):
            def test_list_flavors(self):
                if V2:
                    self.fail("flavor list is empty")

            def test_get_flavor(self):
                if not V2:
                    self.fail("flavor 42 not found")

            def test_flavor_extra_specs(self):
                if V2:
                    self.skipTest("extra specs are disabled")

            def test_always_broken(self):
                self.fail("still broken")

            if V2:
                def test_new_in_v2(self):
                    pass
            else:
                def test_removed_in_v2(self):
                    pass
    """,
}


def make_tree(root: Path, files: Mapping[str, str], conf: str = STESTR_CONF) -> Path:
    """A test tree with packages (__init__.py) and a .stestr.conf."""
    root.mkdir(parents=True)
    (root / ".stestr.conf").write_text(conf)
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
        for parent in path.relative_to(root).parents:
            if parent != Path("."):
                (root / parent / "__init__.py").touch()
    return root


def stestr(tree: Path, *args: str, env: Mapping[str, str] | None = None,
           check: bool = False) -> subprocess.CompletedProcess[bytes]:
    result: subprocess.CompletedProcess[bytes] = subprocess.run(
        ["stestr", *args], cwd=tree, capture_output=True, timeout=300,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **(env or {})},
    )
    if check and result.returncode != 0:
        raise AssertionError(f"stestr {' '.join(args)}: {result.stderr.decode()}")
    return result


def recorded_run(tree: Path, *args: str, env: Mapping[str, str] | None = None) -> bytes:
    """`stestr init; stestr run; stestr last --subunit`: what a finished run leaves."""
    if not (tree / ".stestr").exists():
        stestr(tree, "init", check=True)
    stestr(tree, "run", *args, env=env)
    return stestr(tree, "last", "--subunit", check=True).stdout


def live_run(tree: Path, *args: str, env: Mapping[str, str] | None = None) -> bytes:
    """`stestr run --subunit`: the stream as it flows during the run (as tempest sends it)."""
    if not (tree / ".stestr").exists():
        stestr(tree, "init", check=True)
    return stestr(tree, "run", "--subunit", *args, env=env).stdout


def cut_inside_final_packet(stream: bytes, test_id: str) -> bytes:
    """The stream cut in the middle of the packet that would have ended `test_id`."""
    last = stream.rindex(test_id.encode())
    return stream[: last + len(test_id) // 2]


@dataclass(frozen=True)
class Streams:
    root: Path
    mixed: Path
    mixed_live: Path
    passing: Path
    passing_live: Path
    all_skipped: Path
    all_skipped_live: Path
    import_error_stestr: Path
    import_error_subunit_run: Path
    worker_died: Path
    cut: Path
    evolving_v1: Path
    evolving_v2: Path
    flaky_tree: Callable[[str], Path]
    cut_test: str  # the test whose final packet `cut` cuts


@pytest.fixture(scope="session")
def streams(tmp_path_factory: pytest.TempPathFactory) -> Streams:
    root = tmp_path_factory.mktemp("streams")
    out = root / "streams"
    out.mkdir()

    def save(name: str, data: bytes) -> Path:
        path = out / f"{name}.subunit"
        path.write_bytes(data)
        return path

    mixed = make_tree(root / "mixed", MIXED)
    mixed_path = save("mixed", recorded_run(mixed))
    mixed_live = save("mixed-live", live_run(mixed))
    passing_tree = make_tree(root / "passing", PASSING, TEMPEST_STESTR_CONF)
    passing = save("passing", recorded_run(passing_tree))
    passing_live = save("passing-live", live_run(passing_tree))
    skipped_tree = make_tree(root / "skipped", ALL_SKIPPED, TEMPEST_STESTR_CONF)
    skipped = save("all-skipped", recorded_run(skipped_tree))
    skipped_live = save("all-skipped-live", live_run(skipped_tree))

    broken = make_tree(root / "import-error", IMPORT_ERROR)
    stestr(broken, "init", check=True)
    # stestr refuses to run when discovery fails: nothing reaches the stream.
    import_error_stestr = save("import-error-stestr", stestr(broken, "run", "--subunit").stdout)
    # The runner stestr starts in each worker reports the module as a failed test.
    import_error_subunit_run = save("import-error-subunit-run", subprocess.run(
        ["/usr/bin/python3", "-m", "subunit.run", "discover", "-t", ".", "-s", "tempest"],
        cwd=broken, capture_output=True, timeout=120).stdout)

    died = save("worker-died", live_run(make_tree(root / "dies", WORKER_DIES), "--serial"))
    # Cut inside the packet of the test that ended last: whatever order the workers
    # ran the tests in, every other test had finished before the cut.
    live = mixed_live.read_bytes()
    cut_test = max((r.id for r in read_stream(mixed_live).records if not r.is_fixture),
                   key=lambda test: live.rindex(test.encode()))
    cut = save("cut", cut_inside_final_packet(live, cut_test))

    evolving = make_tree(root / "evolving", EVOLVING)
    v1 = save("evolving-v1", recorded_run(evolving, env={"SAMPLE_VARIANT": "1"}))
    v2 = save("evolving-v2", recorded_run(evolving, env={"SAMPLE_VARIANT": "2"}))

    counter = iter(range(1000))

    def flaky_tree(name: str) -> Path:
        """A fresh copy of the flaky tree (its marker file is per tree)."""
        return make_tree(root / f"flaky-{name}-{next(counter)}", FLAKY)

    return Streams(root, mixed_path, mixed_live, passing, passing_live, skipped, skipped_live,
                   import_error_stestr, import_error_subunit_run, died, cut, v1, v2, flaky_tree,
                   cut_test)
