"""A configuration step that fails says which step, why, and what its daemon logged last."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tempest_live_ci.deploy import configure
from tempest_live_ci.deploy.util import StepError, log_tail


def test_log_tail_quotes_the_newest_log_of_the_directories(tmp_path: Path) -> None:
    nova = tmp_path / "nova"
    nova.mkdir()
    (nova / "nova-conductor.log").write_text("conductor started\n")
    lines = [f"2026-11-22 line {i}" for i in range(20)]
    (nova / "nova-compute.log").write_text("\n".join(lines) + "\n\n")
    (nova / "nova-manage.txt").write_text("not a log file\n")
    os.utime(nova / "nova-conductor.log", (1_000_000, 1_000_000))
    tail = log_tail([nova, tmp_path / "absent"])
    assert tail.splitlines()[0] == f"last lines of {nova / 'nova-compute.log'}:"
    assert [line.strip() for line in tail.splitlines()[1:]] == lines[-8:]
    assert log_tail([tmp_path / "absent"]) == ""


def test_a_failed_step_names_the_step_the_error_and_the_daemons_last_lines(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "neutron-api.log").write_text("ERROR neutron HashRing is empty\n")
    monkeypatch.setitem(configure.LOG_DIRS, "neutron", (str(tmp_path),))
    monkeypatch.setitem(configure.LOG_DIRS, "network-resources", (str(tmp_path / "none"),))
    # The apis step: the API that did not answer leads the message, its log follows.
    message = configure.failure("apis", StepError(
        "neutron: http://192.168.100.10:9696/ did not answer within 900 s (timed out)"))
    assert message.splitlines() == [
        "configure apis: neutron: http://192.168.100.10:9696/ did not answer within 900 s "
        "(timed out)",
        f"last lines of {tmp_path / 'neutron-api.log'}:",
        "  ERROR neutron HashRing is empty"]
    # Any other exception is named by its type; a step with no log says no more.
    assert configure.failure("network-resources", KeyError("physnet")) == (
        "configure network-resources: KeyError: 'physnet'")
    assert configure.failure("neutron", OSError("no space")).startswith(
        "configure neutron: OSError: no space\nlast lines of ")
