"""dnsmasq on the bridge: the guest's fixed DHCP lease, TFTP for PXE ROMs, RAs."""

from __future__ import annotations

import shutil
from pathlib import Path

from tempest_live_ci import render
from tempest_live_ci.errors import TestbedError, UsageError
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
        log_file=state_dir / "dnsmasq.log",
        lease_file=state_dir / "dnsmasq.leases",
        guest_address=config.guest_ip,
        netmask=iface.netmask,
        guest_mac=config.guest_mac,
        guest_name=config.guest_name,
        ipv6=ipv6.network.network_address if ipv6 else None,
        boot_script_url=boot_script_url,
        tftp_root=tftp_root,
        authoritative=config.authoritative,
        router_advertisements=config.sends_router_advertisements,
    )


def start_dnsmasq(journal: Journal, config: TestbedConfig, state_dir: Path,
                  tftp_root: Path, boot_script_url: str) -> int:
    populate_tftp_root(tftp_root)
    conf = state_dir / "dnsmasq.conf"
    conf.write_text(render_config(config, state_dir, tftp_root, boot_script_url))
    (state_dir / "dnsmasq.log").touch()
    # In the foreground, as our own child: we reap it when we stop it (the
    # machine's init may not), and its pid is known before it can fail.
    pid = journal.start_daemon("dnsmasq", str(conf),
                               ["dnsmasq", "--keep-in-foreground", f"--conf-file={conf}"],
                               netns=config.namespace, log_file=state_dir / "dnsmasq.stderr",
                               pid_file=state_dir / "dnsmasq.pid")
    try:
        wait_listening(pid, 67, protocol="udp", what="dnsmasq (DHCP)")
        wait_listening(pid, 69, protocol="udp", what="dnsmasq (TFTP)")
    except TestbedError as e:
        output = (state_dir / "dnsmasq.stderr").read_text(errors="replace").strip()
        raise TestbedError(f"{e.message}: {' / '.join(output.splitlines()[-3:])}") from None
    return pid
