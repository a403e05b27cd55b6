"""A persistent testbed as a run uses it: the one `host setup` made, used as it is, left up.

A run whose settings are not the testbed's is refused (exit 20): it would
otherwise boot with other addresses than its job says.
"""

from __future__ import annotations

from collections.abc import Mapping

from tempest_live_ci.errors import TestbedError, UsageError
from tempest_live_ci.testbed.config import TestbedConfig
from tempest_live_ci.testbed.lifecycle import load_testbed
from tempest_live_ci.testbed.model import Testbed
from tempest_live_ci.testbed.status import testbed_status

# The settings a run must share with the testbed: (its key in testbed.*, TestbedConfig's field).
SHARED = (("host_address", "host_interface"), ("host_ipv6", "host_ipv6_interface"),
          ("guest_address", "guest_ip"), ("guest_mac", "guest_mac"),
          ("apt_proxy", "apt_proxy"), ("nat", "nat"))
# What the testbed's side of each shows (its config as it was set up).
_SHOWN = {"host_address": "host_address", "host_ipv6": "host_ipv6", "guest_address": "guest_ip",
          "guest_mac": "guest_mac", "apt_proxy": "apt_proxy", "nat": "nat"}


def _show(value: object) -> str:
    return "none" if value is None else str(value).lower() if isinstance(value, bool) \
        else str(value)


def check_persistent_settings(source: str, wanted: TestbedConfig, said: Mapping[str, object],
                              config: TestbedConfig) -> None:
    """The run's testbed settings (`wanted`; `said`: the job's words for them, by key) must
    be what the persistent testbed `config` was set up with."""
    for key, attribute in SHARED:
        if getattr(wanted, attribute) != getattr(config, attribute):
            raise UsageError(
                f"{source}: testbed.{key}: the job says {_show(said[key])}, the persistent "
                f"testbed {config.name} was set up with {_show(getattr(config, _SHOWN[key]))}",
                hint=f"set testbed.{key} in the job to the testbed's value, or set the testbed "
                     "up again (host teardown, host setup)")


def check_persistent(source: str, wanted: TestbedConfig, said: Mapping[str, object],
                     name: str = TestbedConfig.name) -> None:
    """A persistent testbed is there, and set up as the run says (else UsageError)."""
    if testbed_status(name) is None:
        raise UsageError(f"testbed.mode: persistent, but no persistent testbed {name!r} is set up",
                         hint="tempest-live-ci host setup")
    check_persistent_settings(source, wanted, said, load_testbed(name)[0])


def persistent_testbed(source: str, wanted: TestbedConfig, said: Mapping[str, object],
                       run_id: str, name: str = TestbedConfig.name) -> Testbed:
    """The persistent testbed, checked, for run `run_id` (its domain, its `vm ssh --run-id`).

    UsageError (exit 20) when it is missing or set up otherwise; TestbedError
    (exit 16) when it is degraded.
    """
    check_persistent(source, wanted, said, name)
    status = testbed_status(name)
    if status is None:  # torn down this very moment
        raise UsageError(f"persistent testbed {name!r} is gone", hint="tempest-live-ci host setup")
    testbed = load_testbed(name, run_id)[1]
    if not status.healthy:
        missing = ", ".join(what for what, ok in status.items if not ok)
        raise TestbedError(f"persistent testbed {name!r} is degraded (missing: {missing})",
                           hint="tempest-live-ci host setup repairs it")
    return testbed
