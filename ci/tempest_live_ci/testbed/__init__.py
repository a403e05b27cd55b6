"""The testbed: a private network for the guest, with DHCP, TFTP, HTTP and a
way to Debian's archive (apt proxy or NAT).

    isolated    everything inside a network namespace named after the run id:
                runs never collide and the host network does not change
    persistent  in the host namespace, kept between runs; can put a real NIC
                on the bridge to boot real hardware

Everything created is written to a journal in the testbed's state directory
(testbed/journal.py) before the next thing is made, so teardown, a failed
setup and `cleanup` after a killed run all undo the same records.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from tempest_live_ci import paths, proc
from tempest_live_ci.errors import UsageError
from tempest_live_ci.log import log, step
from tempest_live_ci.testbed import dnsmasq, http, links, nat, netns
from tempest_live_ci.testbed.config import (
    ISOLATED,
    PERSISTENT,
    TestbedConfig,
    require_root,
    validate,
)
from tempest_live_ci.testbed.journal import Journal, describe, netns_exists
from tempest_live_ci.testbed.model import Testbed

__all__ = ["ISOLATED", "PERSISTENT", "Testbed", "TestbedConfig", "create_testbed",
           "load_testbed", "start_testbed", "teardown_testbed"]

APT_PROXY_PORT = 3142
REQUIRED = ("ip", "dnsmasq", "sysctl")


def testbed_dir(name: str) -> Path:
    return paths.state_dir() / name


def _preflight(config: TestbedConfig) -> None:
    """Everything that can be checked before the first change to the host."""
    validate(config)
    require_root()
    proc.require(*REQUIRED, *(("nft",) if config.nat else ()),
                 *(("socat",) if config.apt_proxy else ()))
    dnsmasq.check_ipxe_files()
    ns = config.namespace
    if ns is not None and netns_exists(ns):
        raise UsageError(f"netns: a network namespace named {ns!r} already exists",
                         hint="pick another name, or `tempest-live-ci cleanup`")
    if ns is None:
        for key in ("bridge", "tap") + (("nic",) if config.nic_kind != "physical" else ()):
            name = getattr(config, key)
            if links.link_exists(name, None):
                raise UsageError(f"{key}: interface {name} already exists on this host")
            if key == "nic" and links.link_exists(name + "p", None):
                raise UsageError(f"nic: interface {name}p (the veth peer) already exists")


def _testbed(config: TestbedConfig, nic_kind: str, apt_proxy: str | None) -> Testbed:
    directory = testbed_dir(config.name)
    return Testbed(
        run_id=config.name,
        netns=config.namespace,
        bridge=config.bridge,
        tap=config.tap,
        nic=config.nic,
        nic_kind=nic_kind,
        host_interface=config.host_interface,
        host_ipv6=config.host_ipv6_interface,
        guest_address=config.guest_ip,
        guest_mac=config.guest_mac,
        state_dir=directory,
        http_root=directory / "www",
        tftp_root=directory / "tftp",
        dnsmasq_log=directory / "dnsmasq.log",
        http_log=directory / "http.log",
        apt_proxy=apt_proxy,
    )


def _start_system_proxy_forward(journal: Journal, config: TestbedConfig, directory: Path) -> str:
    """Persistent mode: forward bridge:3142 to the host's apt-cacher-ng service."""
    from tempest_live_ci.testbed.aptproxy import ADDRESS, PORT, answers_as_apt_cacher_ng

    if not answers_as_apt_cacher_ng(ADDRESS, PORT):
        raise UsageError(
            f"apt proxy: no apt-cacher-ng answers on {ADDRESS}:{PORT}; a persistent testbed "
            "uses the host's apt-cacher-ng service",
            hint="apt-get install apt-cacher-ng (or --no-apt-proxy --nat)",
        )
    address = str(config.host_interface.ip)
    pid = proc.start_daemon(
        ["socat", f"TCP-LISTEN:{APT_PROXY_PORT},bind={address},fork,reuseaddr",
         f"TCP:{ADDRESS}:{PORT}"],
        log_file=directory / "socat.log", pid_file=directory / "socat.pid",
    )
    journal.add("pid", pid=pid, name="socat (apt proxy)", marker=f"bind={address}")
    from tempest_live_ci.testbed.listen import wait_listening

    wait_listening(pid, APT_PROXY_PORT, what="socat (apt proxy)")
    return f"http://{address}:{APT_PROXY_PORT}"


def create_testbed(config: TestbedConfig) -> Testbed:
    """Create every part of the testbed; on failure undo what was made and re-raise.

    The testbed is left running: `teardown_testbed(name)` (or the journal's
    undo) removes it. The apt proxy of an isolated testbed is not made here:
    see start_testbed.
    """
    _preflight(config)
    directory = testbed_dir(config.name)
    if (directory / "journal.json").exists() and Journal(directory).records():
        raise UsageError(f"testbed {config.name} already exists ({directory})",
                         hint=f"tempest-live-ci host teardown --name {config.name}")
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    (directory / "testbed.json").write_text(json.dumps(asdict(config), indent=1))
    # Who made it: `cleanup` leaves a testbed alone while this process lives.
    (directory / "owner").write_text(proc.identity() + "\n")
    journal = Journal(directory)
    try:
        with step(f"Setting up {config.mode} testbed {config.name}"):
            ns = config.namespace
            if ns is not None:
                netns.create_netns(journal, ns)
            nic_kind = links.choose_nic_kind(config.nic_kind)
            links.create_bridge(journal, ns, config.bridge, config.host_interface,
                                config.host_ipv6_interface)
            links.create_nic(journal, ns, config.nic, nic_kind, config.bridge)
            links.create_tap(journal, ns, config.tap, config.bridge, config.tap_owner)
            tb = _testbed(config, nic_kind, None)
            http.start_http_server(journal, ns, str(config.host_interface.ip), config.http_port,
                                   tb.http_root, directory)
            port = "" if config.http_port == 80 else f":{config.http_port}"
            boot_url = f"http://{config.host_interface.ip}{port}/boot.ipxe"
            dnsmasq.start_dnsmasq(journal, config, directory, tb.tftp_root, boot_url)
            if config.nat:
                nat.apply_nat(journal, config, directory, ns)
            apt_proxy = None
            if config.apt_proxy and config.mode == PERSISTENT:
                apt_proxy = _start_system_proxy_forward(journal, config, directory)
            tb = _testbed(config, nic_kind, apt_proxy)
            (directory / "nic-kind").write_text(nic_kind)
            log.info("bridge %s %s, guest %s (%s), tap %s, NIC %s (%s)", config.bridge,
                     config.host_interface, config.guest_ip, config.guest_mac, config.tap,
                     config.nic, nic_kind)
            return tb
    except BaseException:
        teardown_testbed(config.name, quiet=True)
        raise


def load_testbed(name: str) -> tuple[TestbedConfig, Testbed]:
    directory = testbed_dir(name)
    try:
        data = json.loads((directory / "testbed.json").read_text())
    except FileNotFoundError:
        raise UsageError(f"no testbed named {name!r} (nothing in {directory})") from None
    config = TestbedConfig(**data)
    kind = (directory / "nic-kind").read_text() if (directory / "nic-kind").exists() else "?"
    proxy = None
    if config.apt_proxy:
        proxy = f"http://{config.host_interface.ip}:{APT_PROXY_PORT}"
    return config, _testbed(config, kind, proxy)


def teardown_testbed(name: str, *, quiet: bool = False) -> list[str]:
    """Undo everything the testbed's journal records; safe to call twice."""
    directory = testbed_dir(name)
    if not directory.exists():
        return []
    journal = Journal(directory)
    done = [describe(r) for r in journal.undo_all()]
    for line in done:
        (log.debug if quiet else log.info)("removed %s", line)
    shutil.rmtree(directory, ignore_errors=True)
    return done


@contextlib.contextmanager
def start_testbed(config: TestbedConfig) -> Iterator[Testbed]:
    """A testbed for the duration of the block, apt proxy included; always torn down.

    A file named `keep` in the state directory (see keep_testbed) leaves it
    running for a later `vm destroy` or `cleanup`.
    """
    tb = create_testbed(config)
    try:
        with contextlib.ExitStack() as stack:
            if config.apt_proxy and config.mode == ISOLATED:
                from tempest_live_ci.testbed.aptproxy import forward_into_netns, start_apt_cacher_ng

                proxy = stack.enter_context(start_apt_cacher_ng())
                stack.enter_context(forward_into_netns(proxy, tb.netns, str(tb.host_address),
                                                       APT_PROXY_PORT))
                tb = _testbed(config, tb.nic_kind, f"http://{tb.host_address}:{APT_PROXY_PORT}")
            yield tb
    finally:
        if not (tb.state_dir / "keep").exists():
            with step(f"Tearing down testbed {config.name}"):
                teardown_testbed(config.name, quiet=True)


def keep_testbed(tb: Testbed) -> None:
    (tb.state_dir / "keep").write_text("")


