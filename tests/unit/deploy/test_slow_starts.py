"""How long the guest's systemd and the apis step wait for a service, by accelerator."""

from __future__ import annotations

import configparser

from tempest_live_ci.deploy.configure import API_WAIT, TCG_API_WAIT, start_timeout_dropin


def timeout_start(accelerator: str) -> str:
    unit = configparser.ConfigParser()
    unit.read_string(start_timeout_dropin(accelerator))
    return unit["Service"]["TimeoutStartSec"]


def test_under_tcg_systemd_never_kills_a_slow_start_and_the_apis_wait_longer() -> None:
    assert timeout_start("kvm") == "900"
    # Killed and restarted, a service begins its import anew: under TCG that never ends.
    assert timeout_start("tcg") == "infinity"
    assert timeout_start("unknown") == "infinity"
    assert API_WAIT["kvm"] == 900
    assert API_WAIT["kvm"] < TCG_API_WAIT
