"""Every program the tool runs on the host comes from a package that tools/deps/host.list
installs and that tempest-live-ci-host depends on.

The programs are read from the code with ast: the names given to
proc.require(...), and argv lists with a literal first element handed to
proc.run/spawn/start_daemon (directly, through a variable, or through a
function of the module that hands its first argument on). Each program is
mapped to its Debian package with `dpkg -S` on this host, where the test
dependencies, host.list included, are installed. Essential packages need no
dependency (Debian Policy 3.5).
"""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest

from tempest_live_ci.testbed.dnsmasq import IPXE_DIR, TFTP_FILES
from tempest_live_ci.vm import tinyguest

TOP = Path(__file__).resolve().parents[2]
PACKAGE = TOP / "ci" / "tempest_live_ci"
# Runs inside the guest only: pushed there and started over SSH (guest/steps.py).
GUEST_ONLY = ("deploy",)
# Files the tool reads from the host rather than runs: the KVM probe's initramfs
# takes busybox-static's binary, the TFTP server serves iPXE's.
HOST_FILES = (tinyguest.BUSYBOX, *(IPXE_DIR / name for name in TFTP_FILES))
BIN_DIRS = ("/usr/sbin", "/usr/bin", "/sbin", "/bin")

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="not a Debian host")


@dataclass(frozen=True)
class Use:
    program: str
    where: str  # path:line, for the failure message


def _modules() -> Iterator[Path]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.relative_to(PACKAGE).parts[0] not in GUEST_ONLY:
            yield path


def _is_proc_call(call: ast.Call) -> bool:
    """proc.run(...), proc.spawn(...), proc.start_daemon(...): a command on the host."""
    func = call.func
    return (isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name)
            and func.value.id == "proc" and func.attr != "require")


def _string_constants(tree: ast.Module) -> dict[str, tuple[str, ...]]:
    """Module-level NAME = "text" (QEMU = "qemu-system-x86_64") or a tuple/list of texts
    (REQUIRED = ("ip", "dnsmasq"))."""
    found = {}
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if isinstance(value, ast.Constant) and isinstance(value.value, str):
            texts: tuple[str, ...] = (value.value,)
        elif isinstance(value, ast.Tuple | ast.List) and value.elts and all(
                isinstance(e, ast.Constant) and isinstance(e.value, str) for e in value.elts):
            texts = tuple(e.value for e in value.elts if isinstance(e, ast.Constant))
        else:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        found.update({t.id: texts for t in targets if isinstance(t, ast.Name)})
    return found


def _forwarders(tree: ast.Module) -> set[str]:
    """Functions of the module that hand their first parameter to proc as the argv."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.args.args:
            first = node.args.args[0].arg
            for call in ast.walk(node):
                if (isinstance(call, ast.Call) and _is_proc_call(call) and call.args
                        and isinstance(call.args[0], ast.Name) and call.args[0].id == first):
                    names.add(node.name)
    return names


def _assigned_lists(scope: ast.AST, name: str) -> list[ast.List]:
    lists = []
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(t, ast.Name) and t.id == name for t in targets) \
                    and isinstance(node.value, ast.List):
                lists.append(node.value)
    return lists


def _module_programs(path: Path) -> list[Use]:
    tree = ast.parse(path.read_text(), str(path))
    constants = _string_constants(tree)
    forwarders = _forwarders(tree)
    uses = []

    def add(node: ast.expr, line: int) -> None:
        """argv[0]: a literal, or a constant of the module."""
        names: tuple[str, ...] = ()
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            names = (node.value,)
        elif isinstance(node, ast.Name) and len(constants.get(node.id, ())) == 1:
            names = constants[node.id]
        uses.extend(Use(name, f"{path.relative_to(TOP)}:{line}") for name in names)

    def add_required(node: ast.expr, line: int) -> None:
        """An argument of proc.require: every text in it, *CONSTANTS included."""
        for part in ast.walk(node):
            if isinstance(part, ast.Constant) and isinstance(part.value, str):
                uses.append(Use(part.value, f"{path.relative_to(TOP)}:{line}"))
            elif isinstance(part, ast.Name):
                uses.extend(Use(name, f"{path.relative_to(TOP)}:{line}")
                            for name in constants.get(part.id, ()))

    for scope in ast.walk(tree):
        if not isinstance(scope, ast.FunctionDef):
            continue
        for call in ast.walk(scope):
            if not isinstance(call, ast.Call):
                continue
            func = call.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) \
                    and func.value.id == "proc" and func.attr == "require":
                for arg in call.args:
                    add_required(arg, call.lineno)
                continue
            hands_argv = _is_proc_call(call) or (
                isinstance(func, ast.Name) and func.id in forwarders)
            if not hands_argv or not call.args:
                continue
            argv = call.args[0]
            if isinstance(argv, ast.List) and argv.elts:
                add(argv.elts[0], call.lineno)
            elif isinstance(argv, ast.Name):
                for assigned in _assigned_lists(scope, argv.id):
                    if assigned.elts:
                        add(assigned.elts[0], assigned.lineno)
    return uses


def host_programs() -> list[Use]:
    return [use for path in _modules() for use in _module_programs(path)]


@cache
def package_of(path: str) -> str | None:
    result = subprocess.run(["dpkg-query", "-S", path], capture_output=True, text=True,
                            timeout=60)
    for line in result.stdout.splitlines():
        if line.startswith(("diversion by", "local diversion")):
            continue
        packages, _, owned = line.partition(": ")
        if owned.strip() == path:
            return packages.split(",")[0].strip().split(":")[0]
    return None


def package_of_program(program: str) -> str | None:
    """The package shipping `program` in a system bin directory (dpkg knows /sbin/ip,
    not /usr/sbin/ip; alternatives through their target)."""
    for directory in BIN_DIRS:
        candidate = Path(directory) / program
        if not candidate.exists():
            continue
        for path in dict.fromkeys((str(candidate), os.path.realpath(candidate))):
            found = package_of(path)
            if found:
                return found
    return None


@cache
def essential(package: str) -> bool:
    out = subprocess.run(["dpkg-query", "-W", "-f=${Essential}", package],
                         capture_output=True, text=True, timeout=60).stdout
    return out.strip() == "yes"


def host_list() -> set[str]:
    text = (TOP / "tools" / "deps" / "host.list").read_text()
    return {line.split("#", 1)[0].strip() for line in text.splitlines()} - {""}


def host_depends() -> set[str]:
    """The package names in tempest-live-ci-host's Depends (versions, alternatives dropped)."""
    paragraphs = (TOP / "debian" / "control").read_text().split("\n\n")
    host = next(p for p in paragraphs if re.search(r"^Package: tempest-live-ci-host$", p, re.M))
    match = re.search(r"^Depends:(.*?)(?=^\S|\Z)", host, re.M | re.S)
    assert match, "tempest-live-ci-host has no Depends"
    names = set()
    for relation in match.group(1).split(","):
        for alternative in relation.split("|"):
            name = re.split(r"[\s(\[:]", alternative.strip(), maxsplit=1)[0]
            if name and not name.startswith("$"):
                names.add(name)
    return names


def test_the_scan_sees_the_programs_it_should() -> None:
    # A guard on the scanner itself: programs run each way it understands.
    found = {u.program for u in host_programs()}
    assert {"ip",  # proc.run([...]) and through a variable
            "qemu-system-x86_64",  # a module constant, in a variable handed to proc.spawn
            "lb",  # proc.require, and _run_process_group(["lb", stage]) forwarding to proc
            "dnsmasq",  # proc.start_daemon([...])
            "ssh",  # `vm ssh`: the host's client
            "sysctl",  # proc.require(*REQUIRED, ...)
            } <= found, found
    # Commands for the guest are not the host's business.
    assert not found & {"discover-tempest-config", "keystone-manage", "crudini", "journalctl"}


def test_host_programs_are_in_host_list_and_host_depends() -> None:
    listed, depends = host_list(), host_depends()
    problems = []
    needs: dict[str, list[str]] = {}
    for use in host_programs():
        package = package_of_program(use.program)
        if package is None:
            problems.append(f"{use.program} ({use.where}): no installed package ships it")
            continue
        needs.setdefault(package, []).append(f"{use.program} ({use.where})")
    for path in HOST_FILES:
        package = package_of(str(path)) or package_of(os.path.realpath(path))
        if package is None:
            problems.append(f"{path}: no installed package ships it")
            continue
        needs.setdefault(package, []).append(str(path))
    for package, what in sorted(needs.items()):
        if essential(package):
            continue
        if package not in listed:
            problems.append(f"{package} is missing from tools/deps/host.list "
                            f"(for {', '.join(sorted(set(what)))})")
        if package not in depends:
            problems.append(f"{package} is missing from tempest-live-ci-host's Depends "
                            f"(for {', '.join(sorted(set(what)))})")
    assert not problems, "\n".join(problems)
