"""A testbed's life: checked before it is made (preflight), created, loaded
from its state directory, kept for a later command, torn down; start_testbed()
as a context manager for one run. What a testbed is: testbed/__init__.py.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from tempest_live_ci import paths, proc, registry
from tempest_live_ci.errors import TestbedError, TLCError, UsageError
from tempest_live_ci.log import log, step
from tempest_live_ci.testbed import dnsmasq, http, links, nat, netns
from tempest_live_ci.testbed.aptproxy import (
    ADDRESS,
    PORT,
    answers_as_apt_cacher_ng,
    describe_listener,
    forward_into_netns,
    start_apt_cacher_ng,
)
from tempest_live_ci.testbed.config import (
    APT_PROXY_PORT,
    ISOLATED,
    PERSISTENT,
    TestbedConfig,
    check_name,
    new_run_id,
    plain_key,
    require_root,
    validate,
)
from tempest_live_ci.testbed.journal import (
    Journal,
    UndoError,
    describe,
    netns_exists,
    process_matches,
    undo_record,
)
from tempest_live_ci.testbed.listen import wait_listening
from tempest_live_ci.testbed.model import Testbed

REQUIRED = ("ip", "dnsmasq", "sysctl")


def testbed_dir(name: str) -> Path:
    """The state directory of testbed `name`; the name is checked (no `..`, no slash)."""
    return paths.state_dir() / check_name("testbed", name, "testbed name")


def preflight(config: TestbedConfig, option: Callable[[str], str]) -> None:
    """Everything that can be checked before the first change to the host."""
    validate(config, option=option)
    require_root()
    proc.require(*REQUIRED, *(("nft",) if nat.needs_table(config) else ()),
                 *(("socat",) if config.apt_proxy else ()))
    dnsmasq.check_ipxe_files()
    ns = config.namespace
    if ns is not None and netns_exists(ns):
        raise UsageError(f"{option('netns')} {ns!r}: a network namespace of that name already "
                         "exists",
                         hint="pick another name, or `tempest-live-ci cleanup`")
    if ns is None:
        for key in ("bridge", "tap") + (("nic",) if config.nic_kind != "physical" else ()):
            name = getattr(config, key)
            if links.link_exists(name, None):
                raise UsageError(f"{option(key)} {name!r}: interface already exists on this host")
            if key == "nic" and links.link_exists(name + "p", None):
                raise UsageError(f"{option(key)} {name!r}: interface {name}p (the veth peer) "
                                 "already exists")
        if config.nic_kind == "physical":
            links.check_real_nic(config.nic, option("nic"))


def _testbed(config: TestbedConfig, nic_kind: str, apt_proxy: str | None,
             run_id: str | None = None, persistent: bool = False) -> Testbed:
    directory = testbed_dir(config.name)
    return Testbed(
        run_id=run_id or config.name,
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
        http_port=config.http_port,
        testbed_name=config.name,
        persistent=persistent,
    )


def _start_system_proxy_forward(journal: Journal, config: TestbedConfig, directory: Path) -> str:
    """Persistent mode: forward bridge:3142 to the host's apt-cacher-ng service."""
    if not answers_as_apt_cacher_ng(ADDRESS, PORT):
        raise UsageError(
            f"apt proxy: no apt-cacher-ng answers on {ADDRESS}:{PORT}; a persistent testbed "
            "uses the host's apt-cacher-ng service",
            hint="apt-get install apt-cacher-ng (or --no-apt-proxy --nat)",
        )
    # Said every time: this is not the proxy isolated runs get.
    log.warning("apt proxy: the guest uses the host's own apt-cacher-ng on %s:%d (%s) as it is: "
                "it is not restricted to Debian's archive like the private one isolated runs "
                "start (ForceManaged, host-setup/apt-cacher-ng/acng.conf.j2)",
                ADDRESS, PORT, describe_listener(PORT))
    address = str(config.host_interface.ip)
    log_file = directory / "socat.log"
    # -lf: socat's own messages, and the state path on its command line, which
    # tells it apart from any other socat (the journal's marker).
    pid = journal.start_daemon(
        "socat (apt proxy)", str(log_file),
        ["socat", "-lf", str(log_file), f"TCP-LISTEN:{APT_PROXY_PORT},bind={address},fork,reuseaddr",
         f"TCP:{ADDRESS}:{PORT}"],
        netns=None, log_file=log_file, pid_file=directory / "socat.pid",
    )
    wait_listening(pid, APT_PROXY_PORT, what="socat (apt proxy)")
    return f"http://{address}:{APT_PROXY_PORT}"


def create_testbed(config: TestbedConfig, *,
                   option: Callable[[str], str] = plain_key) -> Testbed:
    """Create every part of the testbed; on failure undo what was made and re-raise.

    The testbed is left running: `teardown_testbed(name)` (or the journal's
    undo) removes it. The apt proxy of an isolated testbed is not made here:
    see start_testbed.
    """
    preflight(config, option)
    directory = testbed_dir(config.name)
    if (directory / "journal.json").exists() and Journal(directory).records():
        raise UsageError(f"testbed {config.name} already exists ({directory})",
                         hint=f"tempest-live-ci host teardown --name {config.name}")
    # Whose it is, first: `cleanup` leaves a testbed alone while this process lives.
    record = registry.add(TestbedRecord(name=config.name, directory=str(directory),
                                        netns=config.namespace))
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    (directory / "testbed.json").write_text(json.dumps(asdict(config), indent=1))
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
            dnsmasq.start_dnsmasq(journal, config, directory, tb.tftp_root,
                                  f"{tb.http_url}/boot.ipxe")
            if nat.needs_table(config):
                # NAT, and with a real NIC the guard of the boot files (testbed/nat.py).
                nat.apply_nat(journal, config, directory, ns)
            apt_proxy = None
            if config.apt_proxy and config.mode == PERSISTENT:
                apt_proxy = _start_system_proxy_forward(journal, config, directory)
            tb = _testbed(config, nic_kind, apt_proxy)
            (directory / "nic-kind").write_text(nic_kind)
            log.info("bridge %s %s, guest %s (%s), tap %s, NIC %s (%s)", config.bridge,
                     config.host_interface, config.guest_ip, config.guest_mac, config.tap,
                     config.nic, nic_kind)
            if config.mode == PERSISTENT:
                # The host's from now on, not this process's: `host teardown` removes it.
                registry.discard(record)
            return tb
    except BaseException:
        _teardown_after_failure(config.name)
        raise


def _teardown_after_failure(name: str) -> None:
    """Undo a testbed while an exception is on its way: that exception is the news."""
    try:
        teardown_testbed(name, quiet=True)
    except TLCError as e:
        log.error("%s", e.message)
        if e.hint:
            log.info("hint: %s", e.hint)


def load_testbed(name: str, run_id: str | None = None) -> tuple[TestbedConfig, Testbed]:
    """A testbed `host setup` made. A persistent one gets a run id of its own for the
    run that loads it (its domain, its `vm ssh --run-id`): the testbed's name is not a run id."""
    directory = testbed_dir(name)
    try:
        data = json.loads((directory / "testbed.json").read_text())
    except FileNotFoundError:
        raise UsageError(f"no testbed named {name!r} (nothing in {directory})") from None
    data.pop("extra", None)  # a field, never used, that testbeds set up by earlier versions recorded
    config = TestbedConfig(**data)
    kind = (directory / "nic-kind").read_text() if (directory / "nic-kind").exists() else "?"
    proxy = None
    if config.apt_proxy:
        proxy = f"http://{config.host_interface.ip}:{APT_PROXY_PORT}"
    persistent = config.mode == PERSISTENT
    if run_id is None:
        run_id = new_run_id() if persistent else name
    return config, _testbed(config, kind, proxy, run_id=run_id, persistent=persistent)


def teardown_testbed(name: str, *, quiet: bool = False) -> list[str]:
    """Undo everything the testbed's journal records; safe to call twice.

    Best effort: what cannot be undone is kept in the journal (and the state
    directory with it) and named in an UndoError, after everything else was
    removed.
    """
    directory = testbed_dir(name)
    if not directory.exists():
        return []
    journal = Journal(directory)
    try:
        undone = journal.undo_all()
    except UndoError as e:
        for record in e.undone:
            (log.debug if quiet else log.info)("removed %s", describe(record))
        raise
    done = [describe(r) for r in undone]
    for line in done:
        (log.debug if quiet else log.info)("removed %s", line)
    shutil.rmtree(directory, ignore_errors=True)
    for entry in registry.named(TestbedRecord, name):
        registry.discard(entry)
    return done


@contextlib.contextmanager
def start_testbed(config: TestbedConfig) -> Iterator[Testbed]:
    """A testbed for the duration of the block, apt proxy included; always torn down.

    A file named `keep` in the state directory (see keep_testbed) leaves it
    running for a later `vm destroy` or `cleanup`, apt proxy included: its
    socats and its use of apt-cacher-ng go into the testbed's journal.
    """
    tb = create_testbed(config)
    failed = False

    def kept() -> Journal | None:
        """A kept testbed keeps its apt proxy: the guest left running still needs apt."""
        return Journal(tb.state_dir) if (tb.state_dir / "keep").exists() else None

    try:
        with contextlib.ExitStack() as stack:
            if config.apt_proxy and config.mode == ISOLATED:
                proxy = stack.enter_context(start_apt_cacher_ng(kept=kept))
                stack.enter_context(forward_into_netns(proxy, tb.netns, str(tb.host_address),
                                                       APT_PROXY_PORT, kept=kept))
                tb = _testbed(config, tb.nic_kind, f"http://{tb.host_address}:{APT_PROXY_PORT}")
            yield tb
    except BaseException:
        failed = True
        raise
    finally:
        if not (tb.state_dir / "keep").exists():
            with step(f"Tearing down testbed {config.name}"):
                if failed:
                    _teardown_after_failure(config.name)
                else:
                    teardown_testbed(config.name, quiet=True)


def keep_testbed(tb: Testbed) -> None:
    (tb.state_dir / "keep").write_text("")
    for entry in registry.named(TestbedRecord, tb.state_dir.name):
        registry.keep(entry)


@registry.kind("testbed")
@dataclass(kw_only=True)
class TestbedRecord(registry.Resource):
    """A testbed being set up, or made for a run (`name`: its name, the run id), until it
    is torn down: its journal, the daemons with pid files in its state directory, its
    namespace even when the directory went (a test's, removed while its run lived)."""

    directory: str
    netns: str | None = None

    def undo(self) -> list[str]:
        directory = Path(self.directory)
        removed = []
        for pid_file in sorted(directory.rglob("*.pid")):
            pid = proc.read_pidfile(pid_file)
            if pid is not None and process_matches(pid, str(directory)) and proc.kill_pid(pid):
                removed.append(f"process {pid} ({pid_file.stem})")
        try:
            removed += [describe(r) for r in Journal(directory).undo_all()]
        except UndoError as e:
            removed += [describe(r) for r in e.undone]
            raise TestbedError(e.message + " (also removed: " + (", ".join(removed) or "nothing")
                               + ")", hint=e.hint) from None
        if self.netns is not None and netns_exists(self.netns) \
                and netns.read_mark(self.netns) is not None:
            record = {"kind": "netns", "name": self.netns}
            undo_record(record)
            removed.append(describe(record))
        shutil.rmtree(directory, ignore_errors=True)
        return removed

    def describe(self) -> str:
        return f"testbed {self.name}"


