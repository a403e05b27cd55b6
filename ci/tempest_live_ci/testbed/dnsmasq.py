"""dnsmasq on the bridge: the guest's fixed DHCP lease, TFTP for PXE ROMs, RAs."""

from __future__ import annotations

import shutil
from pathlib import Path

from tempest_live_ci import proc, render
from tempest_live_ci.errors import UsageError
from tempest_live_ci.testbed.config import TestbedConfig
from tempest_live_ci.testbed.journal import Journal
from tempest_live_ci.testbed.listen import wait_listening

IPXE_DIR = Path("/usr/lib/ipxe")
# Legacy BIOS PXE ROMs chain-load undionly.kpxe; UEFI firmware ipxe.efi
# (snponly.efi for firmware whose NIC driver iPXE should reuse).
TFTP_FILES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")


def check_ipxe_files() -> None:
    missing = [f for f in TFTP_FILES if not (IPXE_DIR / f).exists()]
    if missing:
        raise UsageError(f"missing iPXE files in {IPXE_DIR}: {', '.join(missing)}",
                         hint="apt-get install ipxe")


def populate_tftp_root(tftp_root: Path) -> None:
    tftp_root.mkdir(parents=True, exist_ok=True)
    for name in TFTP_FILES:
        shutil.copyfile(IPXE_DIR / name, tftp_root / name)
        (tftp_root / name).chmod(0o644)


def render_config(config: TestbedConfig, state_dir: Path, tftp_root: Path,
                  boot_script_url: str) -> str:
    iface = config.host_interface
    ipv6 = config.host_ipv6_interface
    return render.render(
        "host-setup/dnsmasq.conf.j2",
        name=config.name,
        dns=config.nat,
        router=config.nat,
        host_address=iface.ip,
        bridge=config.bridge,
        pid_file=state_dir / "dnsmasq.pid",
        log_file=state_dir / "dnsmasq.log",
        lease_file=state_dir / "dnsmasq.leases",
        guest_address=config.guest_ip,
        netmask=iface.netmask,
        guest_mac=config.guest_mac,
        guest_name=config.guest_name,
        ipv6=ipv6.network.network_address if ipv6 else None,
        boot_script_url=boot_script_url,
        tftp_root=tftp_root,
    )


def start_dnsmasq(journal: Journal, config: TestbedConfig, state_dir: Path,
                  tftp_root: Path, boot_script_url: str) -> int:
    populate_tftp_root(tftp_root)
    conf = state_dir / "dnsmasq.conf"
    conf.write_text(render_config(config, state_dir, tftp_root, boot_script_url))
    (state_dir / "dnsmasq.log").touch()
    pid_file = state_dir / "dnsmasq.pid"
    # dnsmasq forks and writes its pid file before the parent returns.
    proc.run(["dnsmasq", f"--conf-file={conf}"], netns=config.namespace)
    pid = proc.read_pidfile(pid_file)
    if pid is None:
        raise UsageError(f"dnsmasq wrote no pid file at {pid_file}")
    journal.add("pid", pid=pid, name="dnsmasq", marker=str(conf))
    wait_listening(pid, 67, protocol="udp", what="dnsmasq (DHCP)")
    wait_listening(pid, 69, protocol="udp", what="dnsmasq (TFTP)")
    return pid
