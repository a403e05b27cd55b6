"""The journal undoes records of kinds that a testbed part registers (the apt
proxy's "apt-proxy-user", testbed/aptproxy.py): each command that undoes a
journal imports every such part."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import TOP


@pytest.mark.parametrize("module", ["tempest_live_ci.cleanup", "tempest_live_ci.testbed.lifecycle",
                                    "tempest_live_ci.host", "tempest_live_ci.vm.commands"])
def test_whoever_undoes_a_journal_knows_the_apt_proxy_records(module: str) -> None:
    code = (f"import {module}\n"
            "from tempest_live_ci.testbed import journal\n"
            "print(journal.describe({'kind': 'apt-proxy-user'}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=TOP / "ci", timeout=60, check=True)
    assert result.stdout == "use of the apt proxy (apt-cacher-ng) kept with the testbed\n"
