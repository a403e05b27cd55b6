"""The libvirt domain of a run: rendered from host-setup/domain.xml.j2, transient (createXML)."""

from __future__ import annotations

import contextlib
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from tempest_live_ci import proc, registry, render
from tempest_live_ci.errors import TestbedError, UsageError
from tempest_live_ci.lazy import lazy_module
from tempest_live_ci.log import log
from tempest_live_ci.vm.config import DEFAULT_MEMORY_MIB, MIN_MEMORY_MIB

if TYPE_CHECKING:
    import libvirt
else:
    libvirt = lazy_module("libvirt")

METADATA_NS = "https://salsa.debian.org/openstack-team/tempest-live-ci/domain/1"
# Left to the host (page cache, dnsmasq, the HTTP server, libvirtd) when sizing the guest.
HOST_RESERVE_MIB = 1024


@dataclass
class Keep:
    """Set `keep = True` to leave the guest (and its libvirtd) running when the block ends."""

    keep: bool = False


@dataclass(frozen=True)
class DomainSpec:
    """Everything the domain template needs."""

    name: str
    run_id: str
    state_dir: Path
    domain_type: str  # "kvm" or "qemu" (TCG)
    memory_mib: int
    vcpus: int
    tap: str
    mac: str
    nic_model: str
    boot: str
    console_log: Path
    kernel: Path | None = None  # direct boot only
    initrd: Path | None = None
    cmdline: str = ""
    emulator: str = "/usr/bin/qemu-system-x86_64"
    # proc.identity() of the run's process ("" : the one rendering the XML):
    # `cleanup` destroys a domain whose owner is gone (and that was not kept).
    owner: str = ""


def domain_name(run_id: str) -> str:
    """The domain is named after the run (run ids already start with tlc-)."""
    return run_id if run_id.startswith("tlc-") else f"tlc-{run_id}"


def host_available_mib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return DEFAULT_MEMORY_MIB


def guest_memory_mib(requested: int | None) -> int:
    """The guest's memory: the request, or the default capped by what the host has free."""
    if requested is not None:
        return requested
    free = host_available_mib() - HOST_RESERVE_MIB
    memory = max(MIN_MEMORY_MIB, min(DEFAULT_MEMORY_MIB, free))
    if memory < DEFAULT_MEMORY_MIB:
        log.warning("the host has %d MiB free: the guest gets %d MiB instead of %d",
                    host_available_mib(), memory, DEFAULT_MEMORY_MIB)
    return memory


def render_domain_xml(spec: DomainSpec) -> str:
    if spec.boot == "direct" and (spec.kernel is None or spec.initrd is None):
        raise UsageError("direct boot needs a kernel and an initrd")
    context = {k: ("" if v is None else str(v)) for k, v in asdict(spec).items()}
    context["emulator"] = proc.which(Path(spec.emulator).name) or spec.emulator
    context["owner"] = spec.owner or proc.identity()
    return render.render("host-setup/domain.xml.j2", metadata_ns=METADATA_NS, **context)


def metadata_of(domain: libvirt.virDomain) -> dict[str, str] | None:
    """Our metadata of a domain (id, owner, state-dir, boot), or None if the domain is not ours."""
    try:
        text = domain.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
    except libvirt.libvirtError:
        return None
    # libvirt hands the element back without its namespace.
    return {element.tag.rsplit("}", 1)[-1]: element.text or "" for element in ET.fromstring(text)}


def is_running(domain: libvirt.virDomain) -> bool:
    try:
        state, _reason = domain.state()
    except libvirt.libvirtError:
        return False  # a transient domain that stopped is gone
    return bool(state in (libvirt.VIR_DOMAIN_RUNNING, libvirt.VIR_DOMAIN_BLOCKED,
                          libvirt.VIR_DOMAIN_PAUSED))


def destroy_domain(domain: libvirt.virDomain) -> None:
    """Stop the domain and remove its definition. Safe to call twice."""
    name = domain.name()
    with contextlib.suppress(libvirt.libvirtError):
        domain.destroy()
        log.debug("domain %s destroyed", name)
    # A transient domain is gone once destroyed; a persistent one (defined by
    # someone else's tooling) is undefined as well.
    with contextlib.suppress(libvirt.libvirtError):
        domain.undefine()


@contextlib.contextmanager
def start_domain(conn: libvirt.virConnect, xml: str, *,
                 keep: Keep | None = None) -> Iterator[libvirt.virDomain]:
    """Start a transient domain; it is destroyed when the block is left, unless keep.keep."""
    start = time.monotonic()
    entry = registry.add(DomainRecord(name=ET.fromstring(xml).findtext("name") or "",
                                      uri=conn.getURI()))
    try:
        domain = conn.createXML(xml, 0)
    except libvirt.libvirtError as e:
        registry.discard(entry)
        raise TestbedError(f"libvirt could not start the domain: {e}") from e
    log.debug("domain %s started in %.2fs", domain.name(), time.monotonic() - start)
    try:
        yield domain
    finally:
        registry.release(entry, bool(keep and keep.keep), lambda: destroy_domain(domain))


@registry.kind("domain")
@dataclass(kw_only=True)
class DomainRecord(registry.Resource):
    """A run's libvirt domain (`name`: the domain's) on the libvirtd at `uri`."""

    uri: str

    def undo(self) -> list[str]:
        try:
            conn = libvirt.open(self.uri)
        except libvirt.libvirtError:
            return []  # no libvirtd there any more: its domains went with it
        try:
            destroy_domain(conn.lookupByName(self.name))
        except libvirt.libvirtError:
            return []  # gone already
        finally:
            conn.close()
        return [self.describe()]

    def describe(self) -> str:
        return f"domain {self.name}"

    def why(self) -> str:
        return f"a libvirt domain of a run that is gone ({self.uri})"
