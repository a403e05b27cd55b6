"""How a guest is shaped and how long its boot may take: the one home of these
settings and their allowed values, for `vm boot`'s options, the job schema's
vm section (job.py) and the domain (vm/domain.py) alike.

Imports nothing heavy (no libvirt, no paramiko): the command line reads it
for --help.
"""

from __future__ import annotations

from dataclasses import dataclass

from tempest_live_ci.errors import UsageError, shown

BOOT_MODES = ("network", "direct")
NIC_MODELS = ("virtio", "e1000")
DEFAULT_MEMORY_MIB = 8192
MIN_MEMORY_MIB = 512


@dataclass(frozen=True)
class VMConfig:
    """How the guest is shaped; the defaults suit an OpenStack all-in-one."""

    memory_mib: int | None = None  # None: DEFAULT_MEMORY_MIB capped by the host's free memory
    vcpus: int = 2
    nic_model: str = "virtio"  # virtio (iPXE ROM) or e1000 (legacy PXE)
    boot: str = "network"  # network (iPXE over HTTP) or direct (kernel + initrd given to libvirt)

    def __post_init__(self) -> None:
        if self.boot not in BOOT_MODES:
            raise UsageError(f"--boot: boot mode {shown(self.boot)} is none of {', '.join(BOOT_MODES)}")
        if self.nic_model not in NIC_MODELS:
            raise UsageError(f"--nic-model: NIC model {shown(self.nic_model)} is none of "
                             f"{', '.join(NIC_MODELS)}")
        if self.vcpus < 1:
            raise UsageError(f"--vcpus {self.vcpus}: must be at least 1")
        if self.memory_mib is not None and self.memory_mib < MIN_MEMORY_MIB:
            raise UsageError(f"--memory {self.memory_mib}: must be at least {MIN_MEMORY_MIB} MiB")


@dataclass(frozen=True)
class BootTimeouts:
    """Seconds each phase may take, counted from the start of the domain.

    Sized for TCG on a slow host (network boot to SSH is ~90-120 s there).
    """

    dhcp: float = 120
    kernel: float = 300  # boot.ipxe, kernel and initrd fetched over HTTP
    ssh: float = 900  # sshd answers
