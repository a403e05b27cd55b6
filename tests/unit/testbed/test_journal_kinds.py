"""The journal undoes records of kinds that a testbed part registers (the apt
proxy's "apt-proxy-user", testbed/aptproxy.py): each command that undoes a
journal imports every such part."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

import tempest_live_ci

# Where tempest_live_ci is imported from: the source tree, or the installed package
# under autopkgtest (tests/ copied away from the tree).
PACKAGE_PARENT = Path(tempest_live_ci.__file__).resolve().parents[1]


@pytest.mark.parametrize("module", ["tempest_live_ci.cleanup", "tempest_live_ci.testbed.lifecycle",
                                    "tempest_live_ci.host", "tempest_live_ci.vm.commands"])
def test_whoever_undoes_a_journal_knows_the_apt_proxy_records(module: str) -> None:
    code = (f"import {module}\n"
            "from tempest_live_ci.testbed import journal\n"
            "print(journal.describe({'kind': 'apt-proxy-user'}))\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=PACKAGE_PARENT, timeout=60, check=True)
    assert result.stdout == "use of the apt proxy (apt-cacher-ng) kept with the testbed\n"
