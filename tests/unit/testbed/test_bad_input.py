"""Bad usage refused before anything is looked at: exit 20, the culprit named.

What `host setup` refuses as root, on this host's network, is in
tests/integration/testbed/test_bad_setup_input.py.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable

import pytest

from tempest_live_ci import proc
from tempest_live_ci.errors import UsageError
from tests.conftest import TOP, is_root

Tlc = Callable[..., subprocess.CompletedProcess[str]]


def netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def test_not_root_is_refused(tlc: Tlc) -> None:
    argv = ["host", "setup", "--netns", "tlc-nobody"]
    if is_root():
        result = subprocess.run(
            ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
             "/usr/bin/python3", str(TOP / "bin" / "tempest-live-ci"), *argv],
            capture_output=True, text=True, cwd="/",
        )
    else:
        result = tlc(*argv)
    assert result.returncode == 20
    assert "needs root" in result.stderr
    assert "tlc-nobody" not in netns_list()


def test_missing_binary_names_the_package() -> None:
    with pytest.raises(UsageError) as error:
        proc.require("ip", "no-such-binary-tlc")
    assert error.value.message == "missing command: no-such-binary-tlc"
    with pytest.raises(UsageError, match="command not found: no-such-binary-tlc"):
        proc.run(["no-such-binary-tlc"])
    with pytest.raises(UsageError) as error:
        proc.require("nft") if proc.which("nft") is None else proc.require("nft", "dnsmasq-nope")
    assert error.value.hint is not None and error.value.hint.startswith("apt-get install")


def test_usage_errors_of_click_exit_20(tlc: Tlc) -> None:
    result = tlc("host", "setup", "--no-such-option")
    assert result.returncode == 20
    assert "No such option" in result.stderr
