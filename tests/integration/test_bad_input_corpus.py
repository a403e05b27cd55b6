"""A corpus of bad input: every one exits 20 with ONE error line naming the file and the
dotted key (or the option) and the bad value, and nothing changes on the host.

Each input goes to the real command line as argv (no shell anywhere). The
tool runs in the network namespace of a throwaway "host" (nsenter --net: the
mount namespace stays the host's, so a mount would show), which has an
uplink holding a default route, like a real host's. Compared before and
after each command: that host's links and nftables ruleset; on the real host
the links the command could touch (a testbed's, or named in its argv), the
tool's nftables tables, the namespaces (one made meanwhile by another run,
marked with its owner, is not ours) and the mounts; every file under the
test's state, cache and results directories, and the processes the command
left (found by a marker in their environment). Other runs on the machine
make and remove links, tables and namespaces of their own meanwhile. The injection payloads aim at a
canary file that must never appear.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tempest_live_ci import proc
from tests.conftest import TOP, Dirs, needs_root
from tests.debs import build_deb
from tests.integration.testbed.clients import sh

pytestmark = [needs_root]

PWNED = "PWNED"  # the canary, relative to the directory the tool runs in


@dataclass(frozen=True)
class Fifo:
    """A FIFO: whoever opens it to read waits for a writer that never comes."""


@dataclass(frozen=True)
class Link:
    target: str  # {dir} is filled in


@dataclass(frozen=True)
class Deb:
    """A real binary package (tests/debs.py), under the file name of the entry."""

    package: str
    version: str


File = bytes | Fifo | Link | Deb


@dataclass(frozen=True)
class Case:
    id: str
    argv: tuple[str, ...]  # {job}, {dir}, {kernel} are filled in
    expect: tuple[str, ...]  # all in the one error line; {job} and {dir} filled in
    job: Any = None  # a job: YAML text (str, bytes) or data (dumped as YAML)
    files: dict[str, File] = field(default_factory=dict)  # beside the job file
    # In the site's configuration directory (the site's jobs are in jobs/ there).
    site_files: dict[str, bytes] = field(default_factory=dict)
    absent: tuple[str, ...] = ()  # never in what the command prints


def job_case(id: str, data: Any, *expect: str, files: dict[str, File] | None = None,
             command: str = "validate", absent: tuple[str, ...] = ()) -> Case:
    argv = ("job", "validate", "{job}") if command == "validate" else ("run", "{job}")
    return Case(id, argv, ("{job}", *expect), data, files or {}, absent=absent)


def cli_case(id: str, *argv: str, expect: tuple[str, ...], files: dict[str, File] | None = None,
             site_files: dict[str, bytes] | None = None) -> Case:
    return Case(id, argv, expect, files=files or {}, site_files=site_files or {})


INJECT = f"$(touch {PWNED})"
# A few hundred bytes whose whole-value repr() in an error was hundreds of megabytes.
ALIAS_BOMB = "name: bomb\nvm:\n  memory: [" + ", ".join(
    [f"&a [{', '.join(['xxxxxxxx'] * 9)}]"]
    + [f"&{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]" for i in range(7)]) + "]\n"
SHA = "0" * 64
# A job file beside the site's jobs directory: ../evil must not name it.
SITE_BESIDE_JOBS = {"jobs/site-job.yaml": b"name: site-job\n", "evil.yaml": b"name: evil\n"}
CHANGES = b"""Format: 1.8
Source: hello
Files:
 0123456789abcdef0123456789abcdef 1234 misc optional hello_1.0_all.deb
"""

CORPUS = [
    # --- job files: YAML syntax, shape, every section and field ---------------------------
    job_case("yaml-unclosed", "image: {suite: trixie\n", "invalid YAML"),
    job_case("yaml-tab", "vm:\n\tmemory: 8G\n", "invalid YAML"),
    job_case("yaml-duplicate-colon", "vm: memory: 8G\n", "invalid YAML"),
    job_case("not-a-mapping", "- image\n- vm\n", "a job is a mapping of sections, got list"),
    job_case("unknown-section", {"imagee": {}}, "imagee: unknown key"),
    job_case("name-space", {"name": "bad name"}, "name: 'bad name' is not a valid job name"),
    job_case("name-dotdot", {"name": "../evil"}, "name: '../evil' is not a valid job name"),
    job_case("name-inject", {"name": INJECT}, f"name: {INJECT!r} is not a valid job name"),
    job_case("description-list", {"description": [1]}, "description: expected a string"),
    job_case("section-not-mapping", {"testbed": "isolated"},
             "testbed: expected a mapping, got 'isolated'"),
    job_case("testbed-unknown", {"testbed": {"bridge": "br0"}}, "testbed.bridge: unknown key"),
    job_case("testbed-mode", {"testbed": {"mode": "bridged"}},
             "testbed.mode: 'bridged' is not isolated or persistent"),
    job_case("testbed-host-address", {"testbed": {"host_address": "192.168.100.1"}},
             "testbed.host_address '192.168.100.1': needs a prefix length"),
    job_case("testbed-host-address-inject", {"testbed": {"host_address": f"10.0.0.1/24{INJECT}"}},
             f"testbed.host_address {'10.0.0.1/24' + INJECT!r}: not an IPv4"),
    job_case("testbed-host-ipv6", {"testbed": {"host_ipv6": "fd00::1/48"}},
             "testbed.host_ipv6 'fd00::1/48': must be a /64"),
    job_case("testbed-guest-address", {"testbed": {"guest_address": "10.0.0.2"}},
             "testbed.guest_address '10.0.0.2': not a host address in 192.168.100.0/24"),
    job_case("testbed-guest-mac", {"testbed": {"guest_mac": "52:54:00:zz:00:01"}},
             "testbed.guest_mac '52:54:00:zz:00:01': not a MAC address"),
    job_case("testbed-guest-mac-newline", {"testbed": {"guest_mac": "52:54:00:00:00:01\nport=53"}},
             "testbed.guest_mac: '52:54:00:00:00:01\\nport=53' holds the control character"),
    job_case("testbed-apt-proxy", {"testbed": {"apt_proxy": "yes"}},
             "testbed.apt_proxy: expected true or false, got 'yes'"),
    job_case("testbed-nat", {"testbed": {"nat": True}}, "testbed.nat True: isolated testbeds"),
    job_case("image-suite", {"image": {"suite": "buster"}},
             "image.suite: 'buster' is not bookworm, trixie or sid"),
    job_case("image-mirror-review", {"image": {"mirror": "http://mirror.example/debian$(touch${IFS}"
                                                         f"{PWNED})"}},
             "image.mirror 'http://mirror.example/debian$(touch${IFS}PWNED)': not a usable"),
    job_case("image-mirror-backticks", {"image": {"mirror": f"http://deb.debian.org/debian`touch {PWNED}`"}},
             f"image.mirror 'http://deb.debian.org/debian`touch {PWNED}`'"),
    job_case("image-mirror-semicolon", {"image": {"mirror": "http://deb.debian.org/debian;reboot"}},
             "image.mirror 'http://deb.debian.org/debian;reboot'"),
    job_case("image-mirror-quote", {"image": {"mirror": "http://deb.debian.org/debian' x '"}},
             "image.mirror \"http://deb.debian.org/debian' x '\""),
    job_case("image-mirror-ftp", {"image": {"mirror": "ftp://deb.debian.org/debian"}},
             "image.mirror 'ftp://deb.debian.org/debian': not a usable http:// or https:// URL"),
    job_case("image-mirror-dotdot", {"image": {"mirror": "http://deb.debian.org/../etc"}},
             "image.mirror 'http://deb.debian.org/../etc'"),
    job_case("image-packages-inject", {"image": {"packages": [f"vim;touch {PWNED}"]}},
             f"image.packages: 'vim;touch {PWNED}' is not a Debian package name"),
    job_case("image-packages-upper", {"image": {"packages": ["Vim"]}},
             "image.packages: 'Vim' is not a Debian package name"),
    job_case("image-compression", {"image": {"compression": "bzip2"}},
             "image.compression: 'bzip2' is not zstd, xz, lz4 or gzip"),
    job_case("image-compression-level", {"image": {"compression_level": 99}},
             "image.compression_level 99: zstd takes 1 to 22"),
    job_case("image-compression-level-xz", {"image": {"compression": "xz", "compression_level": 5}},
             "image.compression_level 5: xz takes no level"),
    job_case("image-ssh-key-missing", {"image": {"ssh_key": "../no such/key 'x'"}},
             "image.ssh_key: cannot read {dir}/../no such/key 'x'"),
    job_case("image-preinstall", {"image": {"preinstall": "no"}},
             "image.preinstall: expected true or false, got 'no'"),
    job_case("vm-memory", {"vm": {"memory": "8X"}}, "vm.memory: '8X' is not a size"),
    job_case("vm-memory-small", {"vm": {"memory": "100M"}}, "vm.memory: '100M' is not a size"),
    job_case("vm-vcpus", {"vm": {"vcpus": 0}}, "vm.vcpus: 0 is not between 1 and 256"),
    job_case("vm-vcpus-text", {"vm": {"vcpus": "two"}}, "vm.vcpus: expected an integer, got 'two'"),
    job_case("vm-boot", {"vm": {"boot": "floppy"}}, "vm.boot: 'floppy' is not network or direct"),
    job_case("vm-nic-model", {"vm": {"nic_model": "rtl8139"}},
             "vm.nic_model: 'rtl8139' is not virtio or e1000"),
    job_case("vm-ssh-timeout", {"vm": {"ssh_timeout": -1}}, "vm.ssh_timeout: -1 is not positive"),
    job_case("guest-suite", {"guest": {"suite": "jessie"}},
             "guest.suite: 'jessie' is not bookworm, trixie or sid"),
    job_case("guest-sources-list", {"guest": {"sources_list": "../missing list"}},
             "guest.sources_list: no such file: {dir}/../missing list"),
    job_case("guest-sources-list-line", {"guest": {"sources_list": "sources.list"}},
             "guest.sources_list: {dir}/sources.list line 2: the URL is not a plain http:// or "
             "https:// URL",
             files={"sources.list": b"deb http://deb.debian.org/debian sid main\n"
                    b"deb http://ci.example.org/r" + INJECT.encode() + b" sid main\n"}),
    job_case("guest-sources-list-https", {"guest": {"sources_list": "sources.list"}},
             "guest.sources_list: {dir}/sources.list line 1: the apt proxy passes http:// "
             "repositories only",
             files={"sources.list": b"deb https://ci.example.org/r sid main\n"}),
    job_case("guest-candidate-txt", {"guest": {"candidates": ["notes.txt"]}},
             "guest.candidates[0]: 'notes.txt' is not a .deb or .changes file",
             files={"notes.txt": b"hello"}),
    job_case("guest-candidate-fake-deb", {"guest": {"candidates": ["fake.deb"]}},
             "guest.candidates[0]: 'fake.deb': not a Debian binary package",
             files={"fake.deb": b"#!/bin/sh\necho not a package\n"}),
    job_case("guest-candidate-changes", {"guest": {"candidates": ["hello_1.0.changes"]}},
             "guest.candidates[0]: 'hello_1.0.changes': names 'hello_1.0_all.deb', which is not "
             "beside it", files={"hello_1.0.changes": CHANGES}),
    job_case("guest-candidate-dotdot", {"guest": {"candidates": ["../elsewhere/x.deb"]}},
             "guest.candidates[0]: no such file: {dir}/../elsewhere/x.deb"),
    job_case("guest-install-timeout", {"guest": {"install_timeout": 0}},
             "guest.install_timeout: 0 is not positive"),
    job_case("guest-setup-commands-mapping", {"guest": {"setup_commands": {"a": 1}}},
             "guest.setup_commands: expected a list, got {'a': 1}"),
    job_case("tempest-profile", {"tempest": {"profile": "../identity"}},
             "tempest.profile: '../identity' is not"),
    job_case("tempest-regex", {"tempest": {"regex": "(["}},
             "tempest.regex: '([' is not a valid regular expression"),
    job_case("tempest-concurrency", {"tempest": {"concurrency": 0}},
             "tempest.concurrency: 0 is not between 1 and 64"),
    job_case("tempest-rerun", {"tempest": {"rerun_failures": 9}},
             "tempest.rerun_failures: 9 is not between 0 and 5"),
    job_case("tempest-conf-key", {"tempest": {"conf": {"bad key": "x"}}},
             "tempest.conf: 'bad key' is not a section.key name"),
    job_case("tempest-conf-newline", {"tempest": {"conf": {"identity.uri": "x\ny"}}},
             "tempest.conf.identity.uri: expected one line of text, got 'x\\ny'"),
    job_case("tempest-smoke-include", {"tempest": {"smoke": True, "include_list": "list.txt"}},
             "tempest.smoke: cannot be combined with tempest.include_list",
             files={"list.txt": b"tempest.api\n"}),
    job_case("results-baseline", {"results": {"baseline": "last"}},
             "results.baseline: {dir}/last: not a run directory"),
    job_case("results-gate", {"results": {"gate": True}},
             "results.gate: expected a string, got True"),
    job_case("results-gate-regressions", {"results": {"gate": "regressions"}},
             "results.gate: regressions needs a results.baseline"),
    job_case("guest-candidate-source-host", {"guest": {"candidate_sources": [
        f"deb http://example.org/debian{INJECT} sid main"]}},
             "guest.candidate_sources[0]: 'http://example.org/debian$(touch' is not a plain "
             "http:// or https:// URL"),
    # run refuses the same job files before touching anything.
    job_case("run-mirror-inject", {"image": {"mirror": f"http://deb.debian.org/debian{INJECT}"}},
             f"image.mirror 'http://deb.debian.org/debian{INJECT}'", command="run"),
    job_case("run-yaml", "tempest: [\n", "invalid YAML", command="run"),
    cli_case("run-no-such-job", "run", "{dir}/no such 'job'.yaml",
             expect=("{dir}/no such 'job'.yaml: no such job file",)),
    cli_case("run-candidate-txt", "run", "--candidate", "{dir}/notes.txt",
             expect=("--candidate[0]: 'notes.txt' is not a .deb or .changes file",)),
    cli_case("run-candidate-empty-dir", "run", "--candidate", "{dir}",
             expect=("--candidate[0]: {dir}: a directory without any .deb file",)),
    cli_case("run-candidate-source", "run", "--candidate-source", "deb ftp://x/ sid main",
             expect=("--candidate-source[0]: 'ftp://x/' is not a plain http:// or https:// URL",)),
    # --- job files beyond YAML's bounds -------------------------------------------------
    job_case("yaml-alias-bomb", ALIAS_BOMB, ":3: invalid YAML: an anchor (&a): anchors and "
             "aliases are not accepted"),
    job_case("yaml-alias", "name: x\ndescription: *x\n", ":2: invalid YAML: an alias (*x)"),
    job_case("yaml-anchor", "tempest:\n  conf:\n    identity.uri: &u http://x\n"
             "    identity.uri_v3: *u\n", ":3: invalid YAML: an anchor (&u)"),
    job_case("yaml-merge-key", "vm: {<<: {memory: 8G}}\n", "invalid YAML: a merge key (<<)"),
    job_case("yaml-deep-lists", "vm: " + "[" * 20000 + "]" * 20000 + "\n",
             "invalid YAML: nested deeper than 16 levels"),
    job_case("yaml-deep-mappings", "vm: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n",
             "invalid YAML: nested deeper than 16 levels"),
    job_case("yaml-long-int", "vm:\n  vcpus: " + "9" * 5000 + "\n",
             ":2: invalid YAML: an integer of 5000 characters (at most 24)"),
    job_case("yaml-long-hex-int", "tempest:\n  timeout: 0x" + "f" * 5000 + "\n",
             "invalid YAML: an integer of 5002 characters"),
    job_case("yaml-big-file", "name: x\n" + "# padding\n" * 30000, "larger than 256 KiB"),
    job_case("yaml-many-values", "image: {packages: [" + ", ".join(["a1"] * 25000) + "]}\n",
             "invalid YAML: more than 20000 values"),
    job_case("yaml-not-utf8", b"name: x\ndescription: \xff\xfe\n", "not UTF-8 text"),
    job_case("vm-memory-5000-digits", {"vm": {"memory": "9" * 5000 + "M"}},
             "vm.memory: '99999", "...' is not a size"),
    # --- a key twice: the first value would be lost without a word -----------------------
    job_case("duplicate-guest", "tempest: {profile: image}\nguest:\n  candidates: [x.deb]\n"
             "guest:\n  suite: sid\n", ":4: invalid YAML: duplicate key 'guest' (first on line 2)"),
    job_case("duplicate-name", "name: a\nname: b\n", ":2: invalid YAML: duplicate key 'name'"),
    job_case("duplicate-vm-memory", "vm:\n  memory: 8G\n  memory: 600M\n",
             ":3: invalid YAML: duplicate key 'memory' (first on line 2)"),
    job_case("duplicate-conf-key", "tempest:\n  conf:\n    identity.uri: a\n    identity.uri: b\n",
             ":4: invalid YAML: duplicate key 'identity.uri' (first on line 3)"),
    job_case("duplicate-spelling-ssh-timeout", "vm:\n  ssh-timeout: 5\n  ssh_timeout: 600\n",
             "vm.ssh_timeout: the same key as vm.ssh-timeout, given twice"),
    job_case("duplicate-spelling-install-timeout",
             "guest:\n  install_timeout: 5\n  install-timeout: 600\n",
             "guest.install-timeout: the same key as guest.install_timeout, given twice"),
    # --- a newline after a valid value: every pattern applies in full -----------------------
    job_case("name-trailing-newline", {"name": "smoke\n"}, "name: 'smoke\\n' is not a valid job"),
    job_case("testbed-guest-mac-trailing-newline", {"testbed": {"guest_mac": "52:54:00:7e:57:02\n"}},
             "testbed.guest_mac: '52:54:00:7e:57:02\\n' holds the control character '\\n'"),
    job_case("testbed-host-address-trailing-newline",
             {"testbed": {"host_address": "192.168.100.1/24\n"}},
             "testbed.host_address: '192.168.100.1/24\\n' holds the control character"),
    job_case("image-mirror-trailing-newline", {"image": {"mirror": "http://deb.debian.org/debian\n"}},
             "image.mirror: 'http://deb.debian.org/debian\\n' holds the control character"),
    job_case("image-packages-trailing-newline", {"image": {"packages": ["vim\n"]}},
             "image.packages[0]: 'vim\\n' holds the control character"),
    job_case("tempest-conf-key-trailing-newline", {"tempest": {"conf": {"identity.uri\n": "x"}}},
             "tempest.conf: 'identity.uri\\n' is not a section.key name"),
    job_case("results-baseline-job-trailing-newline",
             {"results": {"baseline": "latest", "baseline_job": "nightly-sid\n"}},
             "results.baseline_job: 'nightly-sid\\n' holds the control character"),
    job_case("tempest-image-trailing-newline", {"tempest": {"image": "http://x.example/a.img\n"}},
             "tempest.image: 'http://x.example/a.img\\n' holds the control character"),
    # --- control characters, into tempest.conf, argv, the terminal ----------------------------
    job_case("tempest-conf-cr", {"tempest": {"conf": {"identity.uri": "http://x\rextra = 1"}}},
             "tempest.conf.identity.uri: expected one line of text, got 'http://x\\rextra = 1'"),
    job_case("tempest-conf-nul", {"tempest": {"conf": {"identity.uri": "a\x00b"}}},
             "tempest.conf.identity.uri: expected one line of text, got 'a\\x00b'"),
    job_case("tempest-conf-line-separator", {"tempest": {"conf": {"identity.uri": "a\u2028b"}}},
             "tempest.conf.identity.uri: expected one line of text"),
    job_case("description-escape", {"description": "smoke\x1b]0;owned\x07"},
             "description: 'smoke\\x1b]0;owned\\x07' holds the control character '\\x1b'"),
    job_case("tempest-regex-cr", {"tempest": {"regex": "tempest\r"}},
             "tempest.regex: 'tempest\\r' holds the control character '\\r'"),
    job_case("setup-commands-nul", {"guest": {"setup_commands": ["echo a\x00b"]}},
             "guest.setup_commands[0]: 'echo a\\x00b' holds the control character '\\x00'"),
    job_case("candidate-source-trailing-newline",
             {"guest": {"candidate_sources": ["deb http://x.example/r sid main\n"]}},
             "guest.candidate_sources[0]: 'deb http://x.example/r sid main\\n' holds the control"),
    # --- values that would be options of tempest run or discover-tempest-config ----------------
    job_case("tempest-regex-dash", {"tempest": {"regex": "-x"}},
             "tempest.regex: '-x' is not a valid regular expression (not starting with -)"),
    job_case("tempest-exclude-regex-dash", {"tempest": {"exclude_regex": "--debug"}},
             "tempest.exclude_regex: '--debug' is not a valid regular expression"),
    job_case("tempest-conf-value-dash", {"tempest": {"conf": {"identity.uri": "--debug"}}},
             "tempest.conf.identity.uri: '--debug' starts with '-'"),
    job_case("tempest-conf-key-dash", {"tempest": {"conf": {"--remove.x": "a"}}},
             "tempest.conf: '--remove.x' is not a section.key name"),
    job_case("setup-commands-dash", {"guest": {"setup_commands": ["-x"]}},
             "guest.setup_commands: ('-x',) is not a list of shell commands, none starting with -"),
    job_case("tempest-regex-recursion", {"tempest": {"regex": "(" * 2000}},
             "tempest.regex: '((((", "is not a valid regular expression"),
    job_case("tempest-regex-repeat-overflow", {"tempest": {"regex": "a{99999999999}"}},
             "tempest.regex: 'a{99999999999}' is not a valid regular expression"),
    # --- files a job names: regular files only, never echoed ---------------------------------
    job_case("sources-list-shadow", {"guest": {"sources_list": "/etc/shadow"}},
             "guest.sources_list: /etc/shadow line 1: not 'deb or deb-src URL SUITE",
             absent=("root:",)),
    job_case("sources-list-link", {"guest": {"sources_list": "sources.list"}},
             "guest.sources_list: {dir}/sources.list: a symbolic link, not a regular file",
             files={"sources.list": Link("/etc/shadow")}, absent=("root:",)),
    job_case("sources-list-fifo", {"guest": {"sources_list": "sources.list"}},
             "guest.sources_list: {dir}/sources.list: a FIFO, not a regular file",
             files={"sources.list": Fifo()}),
    job_case("exclude-list-fifo", {"tempest": {"exclude_list": "skip.txt"}},
             "tempest.exclude_list: {dir}/skip.txt: a FIFO, not a regular file",
             files={"skip.txt": Fifo()}),
    job_case("tempest-image-link", {"tempest": {"profile": "compute", "image": "disk.img"}},
             "tempest.image: {dir}/disk.img: a symbolic link, not a regular file",
             files={"disk.img": Link("/etc/shadow")}),
    job_case("keyring-fifo", {"guest": {"keyring": "keys.gpg"}},
             "guest.keyring: {dir}/keys.gpg: a FIFO, not a regular file",
             files={"keys.gpg": Fifo()}),
    cli_case("job-file-fifo", "job", "validate", "{dir}/fifo.yaml",
             expect=("{dir}/fifo.yaml: a FIFO, not a regular file",), files={"fifo.yaml": Fifo()}),
    cli_case("run-job-file-fifo", "run", "{dir}/fifo.yaml",
             expect=("{dir}/fifo.yaml: a FIFO, not a regular file",), files={"fifo.yaml": Fifo()}),
    # --- candidates: FIFOs, links, malformed .changes, one file name twice --------------------
    job_case("candidate-fifo-in-directory", {"guest": {"candidates": ["upload"]}},
             "guest.candidates[0]: {dir}/upload/x.deb: a FIFO, not a regular file",
             files={"upload/x.deb": Fifo()}),
    cli_case("run-candidate-fifo-in-directory", "run", "--candidate", "{dir}/upload",
             expect=("--candidate[0]: {dir}/upload/x.deb: a FIFO, not a regular file",),
             files={"upload/x.deb": Fifo()}),
    job_case("candidate-fifo-deb", {"guest": {"candidates": ["x.deb"]}},
             "guest.candidates[0]: {dir}/x.deb: a FIFO, not a regular file",
             files={"x.deb": Fifo()}),
    job_case("candidate-link-deb", {"guest": {"candidates": ["x.deb"]}},
             "guest.candidates[0]: {dir}/x.deb: a symbolic link, not a file or a directory",
             files={"x.deb": Link("/etc/shadow")}),
    cli_case("run-candidate-link-directory", "run", "--candidate", "{dir}/upload",
             expect=("--candidate[0]: {dir}/upload: a symbolic link, not a file or a directory",),
             files={"upload": Link("/etc")}),
    job_case("candidate-link-in-directory", {"guest": {"candidates": ["upload"]}},
             "guest.candidates[0]: {dir}/upload/x.deb: a symbolic link, not a regular file",
             files={"upload/x.deb": Link("/dev/zero")}),
    job_case("candidate-changes-size", {"guest": {"candidates": ["x.changes"]}},
             "guest.candidates[0]: 'x.changes': Checksums-Sha256 entry 1: the size '12x' is not "
             "a number", files={"x.changes": f"Format: 1.8\nChecksums-Sha256:\n {SHA} 12x "
                                            "hello_1.0_all.deb\n".encode()}),
    cli_case("run-candidate-changes-size", "run", "--candidate", "{dir}/x.changes",
             expect=("--candidate[0]: 'x.changes': Checksums-Sha256 entry 1: the size '12x'",),
             files={"x.changes": f"Format: 1.8\nChecksums-Sha256:\n {SHA} 12x "
                                 "hello_1.0_all.deb\n".encode()}),
    job_case("candidate-changes-two-fields", {"guest": {"candidates": ["x.changes"]}},
             "guest.candidates[0]: 'x.changes': Files entry 1 is not 'MD5SUM SIZE SECTION "
             "PRIORITY FILE'", files={"x.changes": b"Format: 1.8\nFiles:\n "
                                                   b"0123456789abcdef0123456789abcdef x.deb\n"}),
    job_case("candidate-changes-slash", {"guest": {"candidates": ["x.changes"]}},
             "guest.candidates[0]: 'x.changes': names '../victim/precious', which is not a file "
             "beside it", files={"x.changes": f"Format: 1.8\nChecksums-Sha256:\n {SHA} 7 "
                                              "../victim/precious\n".encode()}),
    job_case("candidate-changes-option", {"guest": {"candidates": ["x.changes"]}},
             "guest.candidates[0]: 'x.changes': names '-x.deb', which is not a file beside it",
             files={"x.changes": f"Format: 1.8\nChecksums-Sha256:\n {SHA} 7 -x.deb\n".encode()}),
    job_case("candidate-changes-digest", {"guest": {"candidates": ["x.changes"]}},
             "guest.candidates[0]: 'x.changes': Checksums-Sha256 entry 1: '`id`' is not a "
             "SHA-256 checksum", files={"x.changes": b"Format: 1.8\nChecksums-Sha256:\n "
                                                    b"`id` 7 x.deb\n"}),
    job_case("candidate-same-file-name", {"guest": {"candidates": ["a", "b"]}},
             "candidates: two files named keystone_1.0-1_all.deb: {dir}/a/keystone_1.0-1_all.deb "
             "and {dir}/b/keystone_1.0-1_all.deb",
             files={"a/keystone_1.0-1_all.deb": Deb("keystone", "1.0-1"),
                    "b/keystone_1.0-1_all.deb": Deb("python3-keystone", "1.0-1")}),
    # --- a bare name is a job name, nothing else ---------------------------------------------
    cli_case("job-name-dotdot", "job", "validate", "../evil",
             expect=("../evil: no such job file",), site_files=SITE_BESIDE_JOBS),
    cli_case("run-job-name-dotdot", "run", "../evil",
             expect=("../evil: no such job file",), site_files=SITE_BESIDE_JOBS),
    cli_case("job-name-newline", "job", "validate", "smoke-trixie\n",
             expect=("'smoke-trixie\\n': not a job name",)),
    # --- host setup / teardown / status -------------------------------------------------
    cli_case("setup-bridge-inject", "host", "setup", "--bridge", f"br{INJECT}",
             expect=(f"--bridge {'br' + INJECT!r}: not a valid interface name",)),
    cli_case("setup-bridge-long", "host", "setup", "--bridge", "a-bridge-name-too-long",
             expect=("--bridge 'a-bridge-name-too-long': interface name longer than 15",)),
    cli_case("setup-tap-space", "host", "setup", "--tap", "tap 0",
             expect=("--tap 'tap 0': not a valid interface name",)),
    cli_case("setup-nic-semicolon", "host", "setup", "--nic", "nic;reboot",
             expect=("--nic 'nic;reboot': not a valid interface name",)),
    cli_case("setup-bridge-taken", "host", "setup", "--bridge", "uplink0",
             expect=("--bridge 'uplink0': interface already exists on this host",)),
    cli_case("setup-real-nic-uplink", "host", "setup", "--real-nic", "uplink0",
             expect=("--real-nic 'uplink0': holds the address 10.255.0.2/24",)),
    cli_case("setup-real-nic-quote", "host", "setup", "--real-nic", "eth0'",
             expect=("--real-nic \"eth0'\": not a valid interface name",)),
    cli_case("setup-netns-dotdot", "host", "setup", "--netns", "../evil",
             expect=("--netns '../evil': not a valid",)),
    cli_case("setup-netns-space", "host", "setup", "--netns", "a b",
             expect=("--netns 'a b': not a valid",)),
    cli_case("setup-name-quote", "host", "setup", "--name", "it's",
             expect=("--name \"it's\": not a valid testbed name",)),
    cli_case("setup-http-port-0", "host", "setup", "--http-port", "0",
             expect=("--http-port 0: not a TCP port",)),
    cli_case("setup-http-port-big", "host", "setup", "--http-port", "70000",
             expect=("--http-port 70000: not a TCP port",)),
    cli_case("setup-nat-interface-inject", "host", "setup", "--nat", "--nat-interface",
             'eth0" ; flush ruleset ; "',
             expect=("--nat-interface 'eth0\" ; flush ruleset ; \"': not a valid interface",)),
    cli_case("setup-host-address-inject", "host", "setup", "--host-address",
             f"192.168.100.1/24;{INJECT}",
             expect=(f"--host-address {'192.168.100.1/24;' + INJECT!r}: not an IPv4",)),
    cli_case("setup-guest-mac-newline", "host", "setup", "--guest-mac",
             "52:54:00:7e:57:02\ndhcp-range=10.0.0.1,10.0.0.9",
             expect=("--guest-mac '52:54:00:7e:57:02\\ndhcp-range=10.0.0.1,10.0.0.9'",)),
    cli_case("setup-tap-owner", "host", "setup", "--tap-owner", "root;id",
             expect=("--tap-owner 'root;id': no such user",)),
    cli_case("setup-isolated-nat", "host", "setup", "--netns", "tlc-corpus", "--nat",
             expect=("--nat True: isolated testbeds",)),
    cli_case("teardown-dotdot", "host", "teardown", "--name", "../victim",
             expect=("--name '../victim': not a valid testbed name",)),
    # --netns, the old spelling of teardown's --name, still works.
    cli_case("teardown-netns-path", "host", "teardown", "--netns", "x/../../victim",
             expect=("--name 'x/../../victim': not a valid testbed name",)),
    cli_case("status-dotdot", "host", "status", "--name", "../victim",
             expect=("--name '../victim': not a valid testbed name",)),
    # --- image build ----------------------------------------------------------------------
    cli_case("cli-image-mirror-inject", "image", "build", "--mirror",
             f"http://deb.debian.org/debian{INJECT}",
             expect=(f"--mirror 'http://deb.debian.org/debian{INJECT}': not a usable",)),
    cli_case("cli-image-apt-proxy-backticks", "image", "build", "--apt-proxy",
             f"http://proxy:3128/`touch {PWNED}`",
             expect=(f"--apt-proxy 'http://proxy:3128/`touch {PWNED}`': not a URL",)),
    cli_case("cli-image-suite-inject", "image", "build", "--suite", f"trixie;touch {PWNED}",
             expect=(f"--suite 'trixie;touch {PWNED}': unknown suite",)),
    cli_case("cli-image-packages-inject", "image", "build", "--packages", f"vim;touch {PWNED}",
             expect=("--packages: 'vim;touch' is not a Debian package name",)),
    cli_case("cli-image-compression", "image", "build", "--compression", "bzip2",
             expect=("--compression 'bzip2': unknown",)),
    cli_case("cli-image-compression-level", "image", "build", "--compression-level", "99",
             expect=("--compression-level 99: zstd takes 1 to 22",)),
    cli_case("cli-image-ssh-key", "image", "build", "--ssh-key", "{dir}/no such key",
             expect=("--ssh-key: cannot read {dir}/no such key",)),
    cli_case("cli-image-profile", "image", "build", "--profile", "../identity",
             expect=("--profile '../identity': unknown profile",)),
    # --- vm -------------------------------------------------------------------------------
    cli_case("cli-vm-run-id-space", "vm", "boot", "--run-id", "a b",
             expect=("--run-id 'a b': not a valid run id",)),
    cli_case("cli-vm-run-id-dotdot", "vm", "boot", "--run-id", "../../etc",
             expect=("--run-id '../../etc': not a valid run id",)),
    cli_case("cli-vm-cmdline-newline", "vm", "boot", "--run-id", "tlc-corpus1", "--kernel",
             "{kernel}", "--initrd", "{kernel}", "--cmdline", "quiet\n#!ipxe\nshell",
             expect=("--cmdline 'quiet\\n#!ipxe\\nshell': holds",)),
    cli_case("cli-vm-cmdline-ipxe-setting", "vm", "boot", "--run-id", "tlc-corpus2", "--kernel",
             "{kernel}", "--initrd", "{kernel}", "--cmdline", "root=${net0/ip}",
             expect=("--cmdline 'root=${net0/ip}': holds '$'",)),
    cli_case("cli-vm-memory", "vm", "boot", "--run-id", "tlc-corpus3", "--memory", "10",
             expect=("--memory 10: must be at least 512 MiB",)),
    cli_case("cli-vm-vcpus", "vm", "boot", "--run-id", "tlc-corpus4", "--vcpus", "0",
             expect=("--vcpus 0: must be at least 1",)),
    cli_case("cli-vm-destroy-dotdot", "vm", "destroy", "--run-id", "../victim",
             expect=("--run-id '../victim': not a valid run id",)),
    # --run, the old spelling of --run-id, still works.
    cli_case("cli-vm-ssh-dotdot", "vm", "ssh", "--run", "..",
             expect=("--run-id '..': not a valid run id",)),
]


# --- the host, before and after ---------------------------------------------------------------

def _run(*argv: str) -> str:
    return subprocess.run(list(argv), capture_output=True, text=True).stdout


def _tree(top: Path) -> list[str]:
    return sorted(str(p.relative_to(top)) for p in top.rglob("*")) if top.exists() else []


@dataclass
class Host:
    """The throwaway host namespace and the real host, as far as this test can see them."""

    netns: str
    dirs: Dirs
    # The real host's links the command could touch: a testbed's (its defaults,
    # or named on its command line) and their veth peers. Other runs on the
    # machine make and remove links of their own meanwhile.
    names: set[str] = field(default_factory=set)
    nft: bool = field(default_factory=lambda: proc.which("nft") is not None)

    def snapshot(self) -> dict[str, Any]:
        ns = ["ip", "netns", "exec", self.netns]
        return {
            "fake host links": _run(*ns, "ip", "-o", "link"),
            "fake host addresses": _run(*ns, "ip", "-o", "addr"),
            "fake host nftables": _run(*ns, "nft", "list", "ruleset") if self.nft else "",
            "host links": {line for line in _run("ip", "-o", "link").splitlines()
                           if line.split(":")[1].strip().split("@")[0] in self.names},
            # The tool's tables (testbed/nat.py), not those of the host's other users.
            "host nftables": {line for line in _run("nft", "list", "tables").splitlines()
                              if "tempest_live_ci" in line} if self.nft else set(),
            "namespaces": set(_run("ip", "netns", "list").split()),
            # Another team's image build mounts its chroot's /proc meanwhile, and
            # `ip netns add` a namespace's file: not ours (namespaces are compared
            # by their marks).
            "mounts": {line for line in Path("/proc/mounts").read_text().splitlines()
                       if "/.build-" not in line and not line.startswith("nsfs /run/netns/")},
            "files": _tree(self.dirs.top),
        }


def foreign_namespaces(names: set[str], pid: int) -> set[str]:
    """Namespaces made meanwhile by someone else (marked with an owner that is not `pid`)."""
    from tempest_live_ci.testbed.netns import read_mark

    foreign = set()
    for name in names:
        mark = read_mark(name)
        if mark is not None and not mark.owner.startswith(f"{pid} "):
            foreign.add(name)
    return foreign


def leftover_processes(marker: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                environ = (entry / "environ").read_bytes()
            except OSError:
                continue
            if marker.encode() in environ:
                found.append(f"{entry.name}: " + (entry / "cmdline").read_bytes()
                             .replace(b"\0", b" ").decode(errors="replace"))
    return found


@pytest.fixture(scope="module")
def fake_host_ns() -> Iterator[str]:
    """A network namespace standing in for the host: an uplink with an address and the
    default route (what --real-nic must refuse), nothing else."""
    ns = "tlcc-" + secrets.token_hex(3)
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", ns, "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink0p")
        sh("ip", "-n", ns, "link", "set", "uplink0", "up")
        sh("ip", "-n", ns, "addr", "add", "10.255.0.2/24", "dev", "uplink0")
        sh("ip", "-n", ns, "route", "add", "default", "via", "10.255.0.1")
        yield ns
    finally:
        for pid in sh("ip", "netns", "pids", ns, check=False).stdout.split():
            proc.kill_pid(int(pid), grace=1)
        sh("ip", "netns", "delete", ns, check=False)


def fill(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(job|dir|kernel)\}", lambda m: values[m.group(1)], text)


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_bad_input_exits_20_with_one_line_and_changes_nothing(
        case: Case, fake_host_ns: str, dirs: Dirs) -> None:
    # Paths with spaces, quotes and shell syntax in them: they are data, nothing more.
    job_dir = dirs.top / f"jobs \"dir\" 'x' {INJECT}"
    job_dir.mkdir(parents=True)
    job = job_dir / "bad-job.yaml"
    if isinstance(case.job, bytes):
        job.write_bytes(case.job)
    elif case.job is not None:
        job.write_text(case.job if isinstance(case.job, str)
                       else yaml.safe_dump(case.job, allow_unicode=True))
    for name, content in case.files.items():
        path = job_dir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, Fifo):
            os.mkfifo(path)
        elif isinstance(content, Link):
            path.symlink_to(fill(content.target, {"dir": str(job_dir)}))
        elif isinstance(content, Deb):
            build_deb(path.parent, content.package, content.version).rename(path)
        else:
            path.write_bytes(content)
    for name, data in case.site_files.items():
        (dirs.config / name).parent.mkdir(parents=True, exist_ok=True)
        (dirs.config / name).write_bytes(data)
    (job_dir / "notes.txt").write_bytes(b"not a package")
    kernel = dirs.top / "vmlinuz"
    kernel.write_bytes(b"not a kernel either")
    (dirs.top / "victim").mkdir()
    (dirs.top / "victim" / "precious").write_text("keep me")
    cwd = dirs.top / "cwd"
    cwd.mkdir()
    values = {"job": str(job), "dir": str(job_dir), "kernel": str(kernel)}
    argv = [fill(a, values) for a in case.argv]
    expect = [fill(e, values) for e in case.expect]

    from tempest_live_ci.testbed.config import TestbedConfig

    words = {w for a in argv for w in a.split()}
    names = {TestbedConfig.bridge, TestbedConfig.tap, TestbedConfig.nic, *words}
    host = Host(fake_host_ns, dirs, names | {n + "p" for n in names})
    before = host.snapshot()
    marker = f"TLC_CORPUS_{secrets.token_hex(6)}"
    nsenter = proc.which("nsenter")
    assert nsenter is not None
    child = subprocess.Popen(
        [nsenter, f"--net=/run/netns/{fake_host_ns}", "--",
         sys.executable, str(TOP / "bin" / "tempest-live-ci"), *argv],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd,
        env={**os.environ, **dirs.env(), marker: "1"})
    _, stderr = child.communicate(timeout=120)
    after = host.snapshot()
    left = leftover_processes(marker)
    for line in left:
        proc.kill_pid(int(line.split(":")[0]), grace=1)

    assert child.returncode == 20, f"exit {child.returncode}:\n{stderr}"
    errors = [line for line in stderr.splitlines() if re.match(r"^(error|Error):", line)]
    assert len(errors) == 1, stderr
    for part in expect:
        assert part in errors[0], f"{part!r} not in {errors[0]!r}"
    for part in case.absent:
        assert part not in stderr, f"{part!r} printed"
    assert len(stderr) < 4000, f"{len(stderr)} characters on stderr"
    assert not left, f"processes left behind: {left}"
    new_ns = after["namespaces"] - before["namespaces"]
    assert not new_ns - foreign_namespaces(new_ns, child.pid), "namespaces appeared"
    gone_ns = before["namespaces"] - after["namespaces"]
    assert not {n for n in gone_ns if n.startswith("tlcc-")}, "namespaces went away"
    for key in ("fake host links", "fake host addresses", "fake host nftables", "host links",
                "host nftables", "mounts", "files"):
        assert after[key] == before[key], f"{key} changed: {before[key]} -> {after[key]}"
    assert not list(dirs.top.rglob(PWNED)) and not Path(PWNED).exists()
    assert (dirs.top / "victim" / "precious").read_text() == "keep me"


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 160
    assert len({c.id for c in CORPUS}) == len(CORPUS)
