"""A corpus of hostile results input: streams from a guest that runs untrusted packages,
run directories handed over as CI artifacts, a results store, the guest's logs tarball.

Each input goes to the real command line as argv (`tempest-live-ci results
...`, no shell anywhere), or, for a tarball, to the real extract_logs() in a
process of its own. Each one is either refused with exit 20 and ONE error
line naming the culprit, or handled: the exit code the run deserves and the
check of its case. Each ends within TIMEOUT seconds. Compared before and
after: every file under the case's directory (type, mode, owner, content,
link target), outside the directory the command may write to; a refused
input changes nothing at all. The injection payloads aim at a canary file
that must never appear; the victim file a link points to keeps its content.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import TOP, is_root
from tests.subunitgen import (
    Event,
    Member,
    corrupt,
    failed,
    listed,
    packets,
    passed,
    running,
    skipped,
    tarball,
)

PWNED = "PWNED"  # the canary, relative to the directory the tool runs in
# A guard against a hang (an input that makes the tool read forever), not a speed
# target: a case takes under a second alone, and several under a loaded machine.
# The speed of hostile inputs is tests/bench/bench_hostile_results.py's.
TIMEOUT = 30.0
INJECT = f"$(touch {PWNED})`touch {PWNED}`;touch {PWNED}"
ESC = "\x1b]0;owned\x07\x1b[2J\r\nPASSED: all tests passed (exit 0)"
FORGED = re.compile(r"^PASSED", re.M)


@dataclass(frozen=True)
class Case:
    id: str
    make: Callable[[Path], None]  # the input, in the case's directory `in`
    argv: tuple[str, ...]  # after `tempest-live-ci`; {in}, {top} filled in
    code: int
    expect: str = ""  # exit 20: in the one error line ({in}, {top} filled in)
    writes: str = "{in}"  # where the command may write when it succeeds
    check: Callable[[Path, subprocess.CompletedProcess[str]], None] | None = None
    root: bool = False  # needs root to make the input (mknod) or to mean anything


# --- inputs ------------------------------------------------------------------------------

def run_dir(stream: bytes = b"", **extra: bytes) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / "tempest.subunit").write_bytes(stream or passed("tempest.api.a.T.test_a"))
        for name, data in extra.items():
            (d / name.replace("__", "/")).parent.mkdir(parents=True, exist_ok=True)
            (d / name.replace("__", "/")).write_bytes(data)
    return make


def with_(*steps: Callable[[Path], None]) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        for s in steps:
            s(d)
    return make


def link(name: str, target: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        path = d / name
        path.unlink(missing_ok=True)
        path.symlink_to(target.format(top=d.parent, **{"in": d}))
    return make


def hard_link(name: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        os.link(d.parent / "victim", d / name)
    return make


def fifo(name: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / name).unlink(missing_ok=True)
        os.mkfifo(d / name)
    return make


def directory(name: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / name).unlink(missing_ok=True)
        (d / name).mkdir()
    return make


def sparse(name: str, size: int) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        with (d / name).open("wb") as f:
            f.truncate(size)
    return make


def device(name: str) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        os.mknod(d / name, 0o600 | stat.S_IFCHR, os.makedev(1, 5))  # /dev/zero's numbers
    return make


def raw(name: str, data: bytes) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / name).write_bytes(data)
    return make


def summary(data: Any) -> Callable[[Path], None]:
    return raw("summary.json", data if isinstance(data, bytes) else json.dumps(data).encode())


def store_with(index: Any = None, latest_dir: bool = False, history_dir: bool = False,
               latest_to: str | None = None) -> Callable[[Path], None]:
    """A results store ({top}/store) holding one good run r1 of job j, then what is asked."""
    def make(d: Path) -> None:
        job = d.parent / "store" / "j"
        (job / "r1").mkdir(parents=True)
        (job / "r1" / "tempest.subunit").write_bytes(passed("tempest.a"))
        entries = [{"run_id": "r1", "path": "r1", "exit_code": 0,
                    "counts": {"passed": 1, "total": 1}}]
        (job / "index.json").write_text(json.dumps(entries if index is None else index(entries)))
        if latest_dir:
            (job / "latest").mkdir()
        elif latest_to is not None:
            (job / "latest").symlink_to(latest_to.format(top=d.parent))
        else:
            (job / "latest").symlink_to("r1")
        if history_dir:
            (job / "history.html").mkdir()
    return make


def guest_tar(*members: Member, data: bytes | None = None) -> Callable[[Path], None]:
    def make(d: Path) -> None:
        (d / "guest-logs.tar.gz").write_bytes(tarball(*members) if data is None else data)
        (d / "guest-logs" / "steps").mkdir(parents=True)
        (d / "guest-logs" / "steps" / "tempest.log").write_text("the host's own log")
    return make


# --- checks of the handled cases -----------------------------------------------------------

def no_escapes(_: Path, result: subprocess.CompletedProcess[str]) -> None:
    for text in (result.stdout, result.stderr):
        assert not re.search("[\x00-\x08\x0b-\x1f\x7f\u202e]", text), repr(text[-500:])
    # A "PASSED" line is the verdict of a run that passed, the last line, or none.
    lines = (result.stdout + result.stderr).splitlines()
    verdicts = [line for line in lines if FORGED.match(line)]
    assert verdicts in ([], [lines[-1]]) and (not verdicts or result.returncode == 0), lines


def junit_counts(tests: int, failures: int, errors: int, name: str = "junit.xml"
                 ) -> Callable[[Path, subprocess.CompletedProcess[str]], None]:
    def check(d: Path, _: subprocess.CompletedProcess[str]) -> None:
        suite = ET.parse(d / name).getroot()
        assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == (
            str(tests), str(failures), str(errors))
    return check


def stored_regular_only(d: Path, result: subprocess.CompletedProcess[str]) -> None:
    stored = Path(result.stdout.strip())
    assert stored.is_dir() and stored.is_relative_to(d.parent / "store")
    for path in stored.rglob("*"):
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), path
    assert len([line for line in result.stderr.splitlines() if "not stored" in line]) == 1


def unchanged_victim_and_written(name: str) -> Callable[[Path, subprocess.CompletedProcess[str]],
                                                        None]:
    def check(d: Path, _: subprocess.CompletedProcess[str]) -> None:
        assert (d.parent / "victim").read_text() == "keep me"
        assert (d / name).stat().st_nlink == 1
    return check


def html_escaped(d: Path, _: subprocess.CompletedProcess[str]) -> None:
    page = (d / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;" in page


def stray_kept(d: Path, result: subprocess.CompletedProcess[str]) -> None:
    assert json.loads((d / "summary.json").read_text())["counts"]["passed"] == 1


def warns(text: str) -> Callable[[Path, subprocess.CompletedProcess[str]], None]:
    def check(_: Path, result: subprocess.CompletedProcess[str]) -> None:
        assert len([line for line in result.stderr.splitlines() if text in line]) == 1, \
            result.stderr
    return check


def base_in_store(d: Path, result: subprocess.CompletedProcess[str]) -> None:
    assert json.loads(result.stdout)["base"] == str(d.parent / "store" / "j" / "r1")


def logs_sane(d: Path, _: subprocess.CompletedProcess[str]) -> None:
    logs = d / "guest-logs"
    for path in logs.rglob("*"):
        st = path.lstat()
        assert stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode), path
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), path
        assert stat.S_IMODE(st.st_mode) in (0o644, 0o755), path
    assert (logs / "steps" / "tempest.log").read_text() == "the host's own log"


# --- the corpus ------------------------------------------------------------------------------

A = "tempest.api.compute.servers.test_servers.ServersTest"
J = ("results", "junit", "{in}")
S = ("results", "show", "{in}")
H = ("results", "html", "{in}")
STORE = ("results", "store", "j", "{in}")
GOOD = passed(f"{A}.test_a")
BASELINE: dict[str, Any] = {"gate": "regressions", **{k: [] for k in (
    "regressions", "fixed", "still_failing", "flaky", "new_tests", "removed_tests",
    "newly_skipped", "failing")}}


def extract(*argv: str) -> tuple[str, ...]:
    return ("@extract", *argv)


CORPUS = [
    # --- streams that never end, or are not streams ---------------------------------------
    Case("stream-link-dev-zero", with_(run_dir(), link("tempest.subunit", "/dev/zero")), J, 20,
         "{in}/tempest.subunit: a symbolic link, not a regular file"),
    Case("rerun-link-dev-zero", with_(run_dir(failed(f"{A}.test_a")),
                                      link("tempest-rerun-1.subunit", "/dev/zero")), J, 20,
         "{in}/tempest-rerun-1.subunit: a symbolic link, not a regular file"),
    Case("rerun-fifo", with_(run_dir(failed(f"{A}.test_a")), fifo("tempest-rerun-1.subunit")),
         J, 20, "{in}/tempest-rerun-1.subunit: a FIFO, not a regular file"),
    Case("stream-fifo", with_(run_dir(), fifo("tempest.subunit")), S, 20,
         "{in}/tempest.subunit: a FIFO, not a regular file"),
    Case("rerun-directory", with_(run_dir(), directory("tempest-rerun-2.subunit")), J, 20,
         "{in}/tempest-rerun-2.subunit: a directory, not a regular file"),
    Case("rerun-device", with_(run_dir(), device("tempest-rerun-1.subunit")), J, 20,
         "{in}/tempest-rerun-1.subunit: a character device, not a regular file", root=True),
    Case("rerun-name-newline", with_(run_dir(), link("tempest-rerun-1.subunit\n", "/dev/zero")),
         S, 0),
    Case("stream-sparse-2g", with_(run_dir(), sparse("tempest.subunit", 2 << 30)), J, 20,
         "{in}/tempest.subunit: 2147483648 bytes, larger than 1024 MiB"),
    Case("stream-link-shadow", with_(run_dir(), link("tempest.subunit", "/etc/shadow")), S, 20,
         "{in}/tempest.subunit: a symbolic link"),
    Case("bare-stream-link-dev-zero", link("s.subunit", "/dev/zero"),
         ("results", "show", "{in}/s.subunit"), 20,
         "{in}/s.subunit: a character device, not a regular file"),
    Case("bare-stream-fifo", fifo("s.subunit"), ("results", "junit", "{in}/s.subunit"), 20,
         "{in}/s.subunit: a FIFO, not a regular file"),
    Case("stream-4mib-garbage", run_dir(bytes(range(0, 0xB3)) * 24_000 + GOOD), S, 0),
    Case("stream-8mib-zeros", run_dir(bytes(8 << 20) + GOOD), S, 0),
    Case("stream-utf8-signature-bytes", run_dir("ó³".encode() * 500_000 + GOOD), S, 0,
         check=stray_kept),
    # --- corrupt and cut streams -------------------------------------------------------------
    Case("corrupt-failing-packet-junit", run_dir(GOOD + corrupt(failed(f"{A}.test_b"))), J, 0,
         check=junit_counts(2, 0, 1)),
    Case("corrupt-failing-packet-show", run_dir(GOOD + corrupt(failed(f"{A}.test_b"))), S, 16),
    Case("cut-mid-packet", run_dir(GOOD + failed(f"{A}.test_b")[:20]), S, 16),
    Case("packet-length-below-header", run_dir(GOOD + b"\xb3\x20\x00\x02" + b"x" * 64 + GOOD),
         S, 16),
    Case("packet-4-byte-length", run_dir(GOOD + b"\xb3\x20\x00\xc0\x00\x00\x10" + GOOD), S, 16),
    Case("test-id-nul", run_dir(packets(Event(f"{A}.test_\x00x", "success"))), S, 16),
    Case("10000-corrupt-packets", run_dir(corrupt(failed(f"{A}.test_b")) * 10_000), J, 0,
         check=junit_counts(10_000, 0, 10_000)),
    # --- many tests, many fixtures -------------------------------------------------------------
    Case("64000-listed-one-failed-class",
         run_dir(listed(f"{A}.test_{n}" for n in range(64_000)) + failed(f"setUpClass ({A})")),
         J, 0, check=junit_counts(1, 0, 1)),
    Case("16000-fixtures-16000-listed",
         run_dir(listed(f"tempest.api.c{n}.T.test_a" for n in range(16_000))
                 + b"".join(failed(f"setUpClass (tempest.api.c{n}.T)") for n in range(16_000))),
         J, 0, check=junit_counts(16_000, 0, 16_000)),
    Case("test-id-1mib", run_dir(failed("tempest.a." + "x" * (1 << 20))), S, 4),
    # --- what reaches a terminal ------------------------------------------------------------------
    Case("test-id-escape-show", run_dir(failed(f"{A}.test_a{ESC}") + running(f"{A}.b{ESC}")),
         S, 16, check=no_escapes),
    Case("stray-output-escape", run_dir(f"runner {ESC}\n".encode() + skipped(f"{A}.test_a")),
         S, 8, check=no_escapes),
    Case("skip-reason-escape", run_dir(skipped(f"{A}.test_a", ESC) + GOOD), S, 0,
         check=no_escapes),
    Case("test-id-bidi-compare", raw("new.subunit", failed(f"{A}.test_\u202ea\u2066b")),
         ("results", "compare", "{top}/base.subunit", "{in}/new.subunit"), 0,
         check=no_escapes),
    Case("test-id-shell", run_dir(failed(f"{A}.test_{INJECT}")), H, 0),
    Case("test-id-html", run_dir(failed(f"{A}.test_<script>alert(1)</script>")), H, 0,
         check=html_escaped),
    # --- reports written into someone else's directory -------------------------------------------
    Case("junit-symlink-victim", with_(run_dir(), link("junit.xml", "{top}/victim")), J, 20,
         "{in}/junit.xml: a symbolic link, not replaced"),
    Case("report-symlink-victim", with_(run_dir(), link("report.html", "{top}/victim")), H, 20,
         "{in}/report.html: a symbolic link, not replaced"),
    Case("summary-symlink-victim", with_(run_dir(), link("summary.json", "{top}/victim")), S, 20,
         "{in}/summary.json: a symbolic link, not a regular file"),
    Case("junit-dangling-symlink", with_(run_dir(), link("junit.xml", "{top}/created")), J, 20,
         "{in}/junit.xml: a symbolic link, not replaced"),
    Case("junit-hard-link-victim", with_(run_dir(), hard_link("junit.xml")), J, 0,
         check=unchanged_victim_and_written("junit.xml")),
    Case("report-hard-link-victim", with_(run_dir(), hard_link("report.html")), H, 0,
         check=unchanged_victim_and_written("report.html")),
    Case("junit-directory", with_(run_dir(), directory("junit.xml")), J, 20,
         "{in}/junit.xml: a directory, not replaced"),
    Case("junit-output-option-symlink", with_(run_dir(), link("out.xml", "{top}/victim")),
         ("results", "junit", "{in}", "-o", "{in}/out.xml"), 20,
         "{in}/out.xml: a symbolic link, not replaced"),
    # --- summary.json: size, depth, shapes ------------------------------------------------------
    Case("summary-nested-100000", with_(run_dir(), summary(
        b'{"metadata": ' + b"[" * 100_000 + b"]" * 100_000 + b"}")), S, 20,
         "{in}/summary.json: not JSON: nested more than 32 deep"),
    Case("summary-65mib", with_(run_dir(), sparse("summary.json", 65 << 20)), S, 20,
         "{in}/summary.json: 68157440 bytes, larger than 64 MiB"),
    Case("summary-not-json", with_(run_dir(), summary(b"{'a': 1")), S, 20,
         "{in}/summary.json: not JSON: "),
    Case("summary-not-utf8", with_(run_dir(), summary(b'{"a": "\xff\xfe"}')), H, 20,
         "{in}/summary.json: not JSON: "),
    Case("summary-list", with_(run_dir(), summary([1, 2])), S, 20,
         "{in}/summary.json: not a JSON object"),
    Case("summary-huge-integer", with_(run_dir(), summary(b'{"exit_code": ' + b"9" * 100_000
                                                         + b"}")), S, 20,
         "{in}/summary.json: not JSON: Exceeds the limit"),
    Case("summary-baseline-without-lists", with_(run_dir(), summary(
        {"baseline": {"gate": "regressions"}})), H, 20,
         "{in}/summary.json: baseline.regressions: None is not a list of test ids"),
    Case("summary-baseline-not-object", with_(run_dir(), summary({"baseline": [1]})), S, 20,
         "{in}/summary.json: baseline: [1] is not what a summary.json holds there"),
    Case("summary-changes-packages", with_(run_dir(), summary(
        {"baseline": BASELINE, "changes": {"image": {}, "tempest": {}, "packages": "x"}})), H, 20,
         "{in}/summary.json: changes.packages: 'x'"),
    Case("summary-counts-text", with_(run_dir(), summary({"counts": "abc"})), S, 20,
         "{in}/summary.json: counts: 'abc'"),
    Case("summary-long-value-cut", with_(run_dir(), summary({"metadata": "m" * 100_000})), S, 20,
         "{in}/summary.json: metadata: 'mmmmmmmmmm"),
    Case("summary-metadata-inject", with_(run_dir(), summary(
        {"metadata": {"job": INJECT, "note": ESC}})), H, 0),
    # --- the results store -------------------------------------------------------------------------
    Case("store-run-id-latest", with_(run_dir(), summary({"run_id": "latest"})), STORE, 20,
         "{in}/summary.json: run_id 'latest' is not a run id the store takes"),
    Case("store-run-id-index", with_(run_dir(), summary({"run_id": "index.json"})), STORE, 20,
         "run_id 'index.json' is not a run id"),
    Case("store-run-id-history", with_(run_dir(), summary({"run_id": "history.html"})), STORE,
         20, "run_id 'history.html' is not a run id"),
    Case("store-run-id-newline", with_(run_dir(), summary({"metadata": {"run_id": "r2\n"}})),
         STORE, 20, "run_id 'r2\\n' is not a run id"),
    Case("store-run-id-dotdot", with_(run_dir(), summary({"run_id": "../../etc"})), STORE, 20,
         "run_id '../../etc' is not a run id"),
    Case("store-run-id-long", with_(run_dir(), summary({"run_id": "r" * 300})), STORE, 20,
         "run_id 'rrrrrrrrrr"),
    Case("store-run-id-inject", with_(run_dir(), summary({"run_id": INJECT})), STORE, 20,
         "is not a run id"),
    Case("store-links-fifo-device", with_(run_dir(), link("notes", "{top}/victim"),
                                          link("shadow", "/etc/shadow"), fifo("pipe"),
                                          device("zero")), STORE, 0,
         writes="{top}/store", check=stored_regular_only, root=True),
    Case("store-links-fifo", with_(run_dir(), link("notes", "{top}/victim"), fifo("pipe")),
         STORE, 0, writes="{top}/store", check=stored_regular_only),
    Case("store-latest-is-directory", with_(run_dir(), store_with(latest_dir=True)), STORE, 20,
         "{top}/store/j/latest: not a link to the job's latest run"),
    Case("index-counts-text", store_with(lambda e: [*e, {"run_id": "r2", "counts": "abc"}]),
         ("results", "history", "j"), 0, writes="{top}/store", check=warns("bad entry")),
    Case("index-not-objects", store_with(lambda e: ["x", 5, None, [1], *e]),
         ("results", "history", "j", "--json"), 0, writes="{top}/store",
         check=warns("4 bad entries")),
    Case("index-entry-path-dotdot", store_with(lambda e: [{"run_id": "r3", "path": "../../x"}]),
         ("results", "history", "j", "--html-in-store"), 0, writes="{top}/store",
         check=warns("bad entry")),
    Case("index-then-store", with_(run_dir(), store_with(lambda e: [{"counts": 1}, *e])),
         STORE, 0, writes="{top}/store", check=warns("bad entry")),
    Case("index-nested", store_with(lambda e: json.loads("[" * 50 + "]" * 50)),
         ("results", "history", "j"), 20, "index.json: not JSON: nested more than 32 deep"),
    Case("index-not-list", store_with(lambda e: {"run_id": "r1"}), ("results", "history", "j"),
         20, "{top}/store/j/index.json: not a JSON list of runs"),
    Case("history-html-is-directory", store_with(history_dir=True),
         ("results", "history", "j", "--html-in-store"), 20,
         "{top}/store/j/history.html: a directory, not replaced"),
    Case("latest-out-of-store", with_(run_dir(), store_with(latest_to="{top}/in")),
         ("results", "compare", "--job", "j", "--json", "{in}"), 0, check=base_in_store),
    Case("job-name-newline", run_dir(), ("results", "history", "j\n"), 20,
         "invalid job name: 'j\\n'"),
    Case("job-name-inject", run_dir(), ("results", "store", INJECT, "{in}"), 20,
         "invalid job name"),
    # --- the guest's logs tarball ------------------------------------------------------------
    Case("tar-owner-65534", guest_tar(
        Member("var", tarfile.DIRTYPE, mode=0o777, uid=65534, uname="nobody"),
        Member("var/log/syslog", data=b"x", uid=65534, uname="nobody")),
         extract(), 0, check=logs_sane, root=True),
    Case("tar-setuid", guest_tar(Member("usr/bin/su", data=b"x", mode=0o4755)), extract(), 0,
         check=logs_sane),
    Case("tar-symlink-then-through", guest_tar(
        Member("etc", tarfile.SYMTYPE, linkname="/tmp"),
        Member("etc/tlc-corpus-escaped", data=b"x")), extract(), 0, check=logs_sane),
    Case("tar-hard-link-shadow", guest_tar(Member("shadow", tarfile.LNKTYPE,
                                                  linkname="/etc/shadow")),
         extract(), 0, check=logs_sane),
    Case("tar-devices-fifo", guest_tar(Member("dev/zero", tarfile.CHRTYPE),
                                       Member("dev/sda", tarfile.BLKTYPE),
                                       Member("run/fifo", tarfile.FIFOTYPE)),
         extract(), 0, check=logs_sane),
    Case("tar-absolute", guest_tar(Member(f"/tmp/{PWNED}", data=b"x")), extract(), 0,
         check=logs_sane),
    Case("tar-dotdot", guest_tar(Member(f"../../{PWNED}", data=b"x"),
                                 Member(f"a/../../{PWNED}", data=b"x")), extract(), 0,
         check=logs_sane),
    Case("tar-overwrites-step-log", guest_tar(Member("steps/tempest.log", data=b"forged")),
         extract(), 0, check=logs_sane),
    Case("tar-not-gzip", guest_tar(data=b"not a tarball at all"), extract(), 0,
         check=logs_sane),
    Case("tar-cut", guest_tar(data=tarball(Member("a", data=b"x" * 100_000))[:200]), extract(),
         0, check=logs_sane),
]


# --- the harness -------------------------------------------------------------------------------

def snapshot(top: Path, skip: Path | None) -> dict[str, tuple[Any, ...]]:
    """Every file under top (links not followed), but those under `skip`."""
    found: dict[str, tuple[Any, ...]] = {}
    for root, dirs, names in os.walk(top):
        for name in [*dirs, *names]:
            path = Path(root) / name
            if skip is not None and (path == skip or path.is_relative_to(skip)):
                continue
            st = path.lstat()
            content: Any = None
            if stat.S_ISLNK(st.st_mode):
                content = os.readlink(path)
            elif stat.S_ISREG(st.st_mode) and st.st_size < (16 << 20):
                content = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISREG(st.st_mode):  # a sparse file of gigabytes: not read
                content = st.st_mtime_ns
            # Not the link count: a report renamed over a hard link changes the victim's.
            found[str(path.relative_to(top))] = (st.st_mode, st.st_uid, st.st_gid, st.st_size,
                                                 content)
    return found


def fill(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\{(in|top)\}", lambda m: values[m.group(1)], text)


@pytest.mark.parametrize("case", CORPUS, ids=[c.id for c in CORPUS])
def test_hostile_results_input(case: Case, tmp_path: Path) -> None:
    if case.root and not is_root():
        pytest.skip("needs root")
    top = tmp_path
    inputs = top / "in"
    inputs.mkdir()
    (top / "victim").write_text("keep me")
    (top / "base.subunit").write_bytes(passed(f"{A}.test_a"))
    cwd = top / "cwd"
    cwd.mkdir()
    case.make(inputs)
    values = {"in": str(inputs), "top": str(top)}
    env = {**os.environ, "TEMPEST_LIVE_CI_RESULTS_DIR": str(top / "store"),
           "TEMPEST_LIVE_CI_STATE_DIR": str(top / "state"),
           "TEMPEST_LIVE_CI_CACHE_DIR": str(top / "cache")}
    if case.argv and case.argv[0] == "@extract":
        argv = [sys.executable, "-c", "import sys; from pathlib import Path; "
                "from tempest_live_ci.guest.steps import extract_logs; "
                "extract_logs(Path(sys.argv[1]), Path(sys.argv[2]))",
                str(inputs / "guest-logs.tar.gz"), str(inputs / "guest-logs")]
        env["PYTHONPATH"] = str(TOP / "ci")
        writes = inputs / "guest-logs"
    else:
        argv = [sys.executable, str(TOP / "bin" / "tempest-live-ci"),
                *(fill(a, values) for a in case.argv)]
        writes = Path(fill(case.writes, values))
    before = snapshot(top, None)
    result = subprocess.run(argv, capture_output=True, text=True, cwd=cwd, env=env,
                            timeout=TIMEOUT, check=False)

    assert result.returncode == case.code, f"exit {result.returncode}:\n{result.stderr[-3000:]}"
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    if case.code == 20:
        assert len(errors) == 1, result.stderr
        assert fill(case.expect, values) in errors[0], errors[0]
        assert len(errors[0]) < 400, errors[0]
        assert snapshot(top, None) == before, "a refused input changed something"
    else:
        assert not any("unexpected error" in line for line in errors), result.stderr
        assert snapshot(top, writes) == snapshot_without(before, top, writes)
        if case.check is not None:
            case.check(inputs, result)
    assert not list(top.rglob(PWNED)) and not Path("/tmp", PWNED).exists()
    assert not Path("/tmp/tlc-corpus-escaped").exists()
    assert (top / "victim").read_text() == "keep me"
    assert "root:" not in result.stdout + result.stderr  # no line of /etc/shadow


def snapshot_without(before: dict[str, tuple[Any, ...]], top: Path,
                     skip: Path) -> dict[str, tuple[Any, ...]]:
    return {k: v for k, v in before.items()
            if not (top / k == skip or (top / k).is_relative_to(skip))}


def test_the_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 50
    assert len({c.id for c in CORPUS}) == len(CORPUS)
    kinds = {"stream": 0, "dir": 0, "store": 0, "tar": 0}
    for c in CORPUS:
        kind = "tar" if c.argv[0] == "@extract" else "store" if "store" in c.id or \
            "index" in c.id or "latest" in c.id or "history" in c.id or "job-name" in c.id \
            else "dir" if any(w in c.id for w in ("junit-", "report-", "summary-")) else "stream"
        kinds[kind] += 1
    assert all(n >= 8 for n in kinds.values()), kinds
