"""Run directories, streams, stores and guest tarballs made by someone else, read as root.

Each test makes the hostile input for real (links, FIFOs, hard links,
corrupt packets, control characters) and drives the real command line or
the real function that meets it.
"""

from __future__ import annotations

import json
import logging
import os
import stat
import subprocess
import tarfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from tests.subunitgen import (
    Event,
    Member,
    corrupt,
    failed,
    listed,
    packets,
    passed,
    tarball,
)

from tempest_live_ci import files
from tempest_live_ci.errors import UsageError
from tempest_live_ci.guest.progress import SubunitSink
from tempest_live_ci.guest.steps import LineLog, extract_logs
from tempest_live_ci.log import log
from tempest_live_ci.results.store import read_index, store_run

ESC_ID = "tempest.api.a.T.test_x\x1b]0;owned\x07\r\nPASSED: all tests passed (exit 0)"


def one_error(result: subprocess.CompletedProcess[str], code: int = 20) -> str:
    assert result.returncode == code, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    return errors[0]


def run_dir(tmp_path: Path, stream: bytes = b"", name: str = "run") -> Path:
    directory = tmp_path / name
    directory.mkdir()
    (directory / "tempest.subunit").write_bytes(stream or passed("tempest.api.a.T.test_a"))
    return directory


@pytest.fixture
def victim(tmp_path: Path) -> Path:
    path = tmp_path / "victim"
    path.write_text("keep me")
    return path


# --- writers: never through a link already in the directory -------------------------------

@pytest.mark.parametrize(("command", "name"), [
    ("junit", "junit.xml"), ("html", "report.html"), ("show", "summary.json")])
def test_a_report_is_not_written_through_a_symlink(tmp_path: Path, tlc: Any, victim: Path,
                                                   command: str, name: str) -> None:
    directory = run_dir(tmp_path)
    (directory / name).symlink_to(victim)
    error = one_error(tlc("results", command, str(directory)))
    # summary.json is read first: refused there already.
    assert f"{directory / name}: a symbolic link, not " in error
    assert victim.read_text() == "keep me"
    assert (directory / name).is_symlink()


@pytest.mark.parametrize(("command", "name"), [("junit", "junit.xml"), ("html", "report.html")])
def test_a_report_replaces_a_hard_link_instead_of_writing_into_it(
        tmp_path: Path, tlc: Any, victim: Path, command: str, name: str) -> None:
    directory = run_dir(tmp_path)
    os.link(victim, directory / name)
    assert tlc("results", command, str(directory)).returncode == 0
    assert victim.read_text() == "keep me"
    written = directory / name
    assert written.stat().st_nlink == 1 and written.read_text().startswith("<")
    assert stat.S_IMODE(written.stat().st_mode) == 0o644


def test_the_store_copies_regular_files_only(tmp_path: Path, tlc: Any, victim: Path) -> None:
    directory = run_dir(tmp_path)
    (directory / "notes.txt").symlink_to(victim)
    (directory / "guest-logs").mkdir()
    (directory / "guest-logs" / "shadow").symlink_to("/etc/shadow")
    os.mkfifo(directory / "guest-logs" / "pipe")
    (directory / "guest-logs" / "kept.log").write_text("a log")
    result = tlc("results", "store", "job1", str(directory), timeout=30)
    assert result.returncode == 0, result.stderr
    stored = Path(result.stdout.strip())
    kinds = {str(p.relative_to(stored)): p.is_symlink() or not (p.is_file() or p.is_dir())
             for p in stored.rglob("*")}
    assert kinds == {"tempest.subunit": False, "guest-logs": False,
                     "guest-logs/kept.log": False}
    warnings = [line for line in result.stderr.splitlines() if "not stored" in line]
    assert len(warnings) == 1
    for name in ("notes.txt (a symbolic link)", "guest-logs/shadow (a symbolic link)",
                 "guest-logs/pipe (a FIFO)"):
        assert name in warnings[0]


@pytest.mark.parametrize("plant", ["symlink", "hard link", "fifo"])
def test_the_live_stream_and_step_logs_replace_what_is_in_their_way(
        tmp_path: Path, victim: Path, plant: str) -> None:
    out = tmp_path / "out"
    (out / "guest-logs" / "steps").mkdir(parents=True)
    names = (out / "tempest.subunit", out / "guest-logs" / "steps" / "tempest.log")
    for name in names:
        if plant == "symlink":
            name.symlink_to(victim)
        elif plant == "hard link":
            os.link(victim, name)
        else:
            os.mkfifo(name)
    sink = SubunitSink(names[0])
    sink.write(passed("tempest.api.a.T.test_a"))
    sink.close()
    step_log = LineLog(names[1])
    step_log.write(b"==> installing\n")
    step_log.close()
    assert victim.read_text() == "keep me"
    for name in names:
        st = name.lstat()
        assert stat.S_ISREG(st.st_mode) and st.st_nlink == 1, name
    assert names[0].read_bytes() == passed("tempest.api.a.T.test_a")
    assert names[1].read_bytes() == b"==> installing\n"


def test_a_file_write_leaves_no_temporary_file(tmp_path: Path) -> None:
    files.write_text(tmp_path / "a.json", "{}")
    (tmp_path / "b").mkdir()
    with pytest.raises(UsageError, match="a directory, not replaced"):
        files.write_text(tmp_path / "b", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b"]


# --- the guest's logs tarball ------------------------------------------------------------

def test_the_guest_logs_are_the_extracting_users(tmp_path: Path) -> None:
    archive = tmp_path / "guest-logs.tar.gz"
    archive.write_bytes(tarball(
        Member("var", tarfile.DIRTYPE, mode=0o777, uid=65534, uname="nobody"),
        Member("var/log/syslog", data=b"log", mode=0o4777, uid=65534, uname="nobody"),
        Member("etc/tempest/tempest.conf", data=b"[auth]\n", mode=0o600, uid=1000,
               uname="tempest"),
        Member("etc/link", tarfile.SYMTYPE, linkname="/etc/shadow"),
        Member("etc/hard", tarfile.LNKTYPE, linkname="etc/tempest/tempest.conf"),
        Member("dev/null", tarfile.CHRTYPE),
        Member("dev/sda", tarfile.BLKTYPE),
        Member("run/fifo", tarfile.FIFOTYPE),
        Member("/abs", data=b"x"),
        Member("../up", data=b"x"),
        Member("var/../../up2", data=b"x"),
    ))
    logs = tmp_path / "guest-logs"
    logs.mkdir()
    extract_logs(archive, logs)
    found = {str(p.relative_to(logs)): p.lstat() for p in logs.rglob("*")}
    assert set(found) == {"var", "var/log", "var/log/syslog", "etc", "etc/tempest",
                          "etc/tempest/tempest.conf"}
    for name, st in found.items():
        assert (st.st_uid, st.st_gid) == (os.getuid(), os.getgid()), name
        assert stat.S_ISDIR(st.st_mode) or stat.S_ISREG(st.st_mode), name
        assert stat.S_IMODE(st.st_mode) == (0o755 if stat.S_ISDIR(st.st_mode) else 0o644), name
    assert not (tmp_path / "up").exists() and not Path("/abs").exists()


def test_the_guest_logs_never_go_through_a_link_already_there(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    logs = tmp_path / "guest-logs"
    (logs / "steps").mkdir(parents=True)
    (logs / "steps" / "tempest.log").write_text("the host's own log")
    (logs / "etc").symlink_to(outside)
    archive = tmp_path / "guest-logs.tar.gz"
    archive.write_bytes(tarball(Member("etc/tempest.conf", data=b"x"),
                                Member("steps/tempest.log", data=b"forged")))
    extract_logs(archive, logs)
    assert list(outside.iterdir()) == []
    assert (logs / "steps" / "tempest.log").read_text() == "the host's own log"


def test_a_guest_file_is_copied_only_if_nothing_on_its_way_is_a_link(tmp_path: Path) -> None:
    logs = tmp_path / "guest-logs"
    (logs / "etc" / "tempest").mkdir(parents=True)
    (logs / "etc" / "tempest" / "tempest.conf").symlink_to("/etc/passwd")
    (logs / "var").symlink_to("/")
    (tmp_path / "out").mkdir()
    assert not files.copy_beneath(logs, "etc/tempest/tempest.conf",
                                  tmp_path / "out" / "tempest.conf")
    assert not files.copy_beneath(logs, "var/etc/passwd", tmp_path / "out" / "passwd")
    assert list((tmp_path / "out").iterdir()) == []
    (logs / "etc" / "tempest" / "tempest.conf").unlink()
    (logs / "etc" / "tempest" / "tempest.conf").write_text("[auth]\n")
    assert files.copy_beneath(logs, "etc/tempest/tempest.conf", tmp_path / "out" / "tempest.conf")
    assert (tmp_path / "out" / "tempest.conf").read_text() == "[auth]\n"


# --- streams that never end --------------------------------------------------------------

def _dev_zero(path: Path) -> None:
    path.symlink_to("/dev/zero")


def _fifo(path: Path) -> None:
    os.mkfifo(path)


def _directory(path: Path) -> None:
    path.mkdir()


def _sparse(path: Path) -> None:
    with path.open("wb") as f:
        f.truncate(files.STREAM_LIMIT + 1)


@pytest.mark.parametrize(("make", "what"), [
    (_dev_zero, "a symbolic link"), (_fifo, "a FIFO"), (_directory, "a directory"),
    (_sparse, "larger than 1024 MiB")])
@pytest.mark.parametrize("name", ["tempest.subunit", "tempest-rerun-1.subunit"])
def test_a_stream_that_is_not_a_regular_file_is_refused(tmp_path: Path, tlc: Any, make: Any,
                                                        what: str, name: str) -> None:
    directory = run_dir(tmp_path, failed("tempest.api.a.T.test_a"))
    (directory / name).unlink(missing_ok=True)
    make(directory / name)
    error = one_error(tlc("results", "junit", str(directory), timeout=30))
    assert f"{directory / name}: " in error and what in error


def test_a_bare_stream_may_be_a_link_the_user_named_but_not_to_a_device(
        tmp_path: Path, tlc: Any) -> None:
    (tmp_path / "good.subunit").write_bytes(passed("tempest.api.a.T.test_a"))
    (tmp_path / "link.subunit").symlink_to(tmp_path / "good.subunit")
    (tmp_path / "zero.subunit").symlink_to("/dev/zero")
    assert tlc("results", "show", str(tmp_path / "link.subunit")).returncode == 0
    error = one_error(tlc("results", "show", str(tmp_path / "zero.subunit"), timeout=30))
    assert "a character device, not a regular file" in error


def test_runner_output_outside_packets_reads_at_once(tmp_path: Path, tlc: Any) -> None:
    # python-subunit's own loop reads it a byte at a time: some 3 s a MiB.
    stream = b"runner output \xc3\xb3\n" * 500_000 + passed("tempest.api.a.T.test_a")
    (tmp_path / "s.subunit").write_bytes(stream)
    result = tlc("results", "show", "--json", str(tmp_path / "s.subunit"), timeout=20)
    summary = json.loads(result.stdout)
    assert summary["counts"]["passed"] == 1 and summary["complete"]
    assert summary["stray_output"].endswith("runner output ó\n")


# --- a corrupt packet is in junit.xml ------------------------------------------------------

def test_a_corrupt_packet_is_an_error_in_junit_as_in_show(tmp_path: Path, tlc: Any) -> None:
    good = passed("tempest.api.a.T.test_a")
    directory = run_dir(tmp_path, good + corrupt(failed("tempest.api.a.T.test_b")))
    assert tlc("results", "show", str(directory)).returncode == 16
    assert tlc("results", "junit", str(directory)).returncode == 0
    suite = ET.parse(directory / "junit.xml").getroot()
    assert (suite.get("tests"), suite.get("failures"), suite.get("errors")) == ("2", "0", "1")
    case = suite.find("testcase[@classname='subunit.parser']")
    assert case is not None
    assert case.get("name") == f"tempest.subunit at byte {len(good)}"
    error = case.find("error")
    assert error is not None and "Bad checksum" in error.get("message", "")


# --- control characters from the stream, on a terminal ------------------------------------

def test_show_escapes_control_characters_of_test_ids(tmp_path: Path, tlc: Any) -> None:
    stream = failed(ESC_ID, "Traceback\x1b[2J\n") + packets(Event("tempest.b\x1b[31m", "inprogress"))
    stream += b"stray \x1b]0;title\x07 output\rPASSED: all tests passed (exit 0)\n"
    (tmp_path / "s.subunit").write_bytes(stream)
    result = tlc("results", "show", str(tmp_path / "s.subunit"))
    assert result.returncode == 16
    for text in (result.stdout, result.stderr):
        assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    lines = result.stdout.splitlines()
    assert not any(line.startswith("PASSED") for line in lines), result.stdout
    assert "  tempest.api.a.T.test_x\\x1b]0;owned\\x07\\r\\nPASSED: all tests passed (exit 0)" \
        in lines


def test_compare_escapes_control_characters_of_test_ids(tmp_path: Path, tlc: Any) -> None:
    (tmp_path / "base.subunit").write_bytes(passed("tempest.a"))
    (tmp_path / "new.subunit").write_bytes(passed("tempest.a") + failed(ESC_ID))
    result = tlc("results", "compare", str(tmp_path / "base.subunit"),
                 str(tmp_path / "new.subunit"))
    assert result.returncode == 0
    assert "\x1b" not in result.stdout and "\r" not in result.stdout
    assert not any(line.startswith("PASSED") for line in result.stdout.splitlines())


def test_the_live_progress_escapes_control_characters(tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    sink = SubunitSink(tmp_path / "tempest.subunit", every=0)
    with caplog.at_level(logging.DEBUG, logger=log.name):
        sink.write(failed(ESC_ID))
        sink.close()
    messages = [r.getMessage() for r in caplog.records]
    assert any("test_x\\x1b]0;owned" in m for m in messages), messages
    assert not any("\x1b" in m or "\n" in m or "\r" in m for m in messages)


# --- the store's names and its index -------------------------------------------------------

def stored_run(tmp_path: Path, name: str, summary: dict[str, Any]) -> Path:
    directory = run_dir(tmp_path, name=name)
    (directory / "summary.json").write_text(json.dumps(summary))
    return directory


@pytest.mark.parametrize("run_id", ["latest", "index.json", "history.html", "r1\n", "../r1",
                                    ".hidden", "a" * 129, "r 1"])
def test_a_run_id_the_store_cannot_take_is_refused(tmp_path: Path, tlc: Any, dirs: Any,
                                                   run_id: str) -> None:
    store_run("job1", stored_run(tmp_path, "good", {"run_id": "r0"}))
    before = sorted(p.name for p in (dirs.results / "job1").iterdir())
    bad = stored_run(tmp_path, "bad", {"run_id": run_id})
    error = one_error(tlc("results", "store", "job1", str(bad)))
    assert f"{bad / 'summary.json'}: run_id {files.quoted(run_id)}" in error
    assert sorted(p.name for p in (dirs.results / "job1").iterdir()) == before
    store_run("job1", stored_run(tmp_path, "next", {"run_id": "r2"}))
    assert os.readlink(dirs.results / "job1" / "latest") == "r2"


def test_a_job_name_with_a_trailing_newline_is_refused(tlc: Any, tmp_path: Path) -> None:
    error = one_error(tlc("results", "history", "job1\n"))
    assert "invalid job name: 'job1\\n'" in error


BAD_ENTRIES = [
    "text", 5, None, ["a"], {"run_id": "r9", "counts": "abc"}, {"run_id": "latest"},
    {"run_id": "r9", "path": "../../etc"}, {"counts": {}}, {"run_id": "r9", "exit_code": "0"},
    {"run_id": "r9", "duration": "long"}, {"run_id": "r9", "candidates": "keystone"},
    {"run_id": "r9", "counts": {"passed": "1"}}, {"run_id": "r9", "date": 5}]


@pytest.mark.parametrize("entry", BAD_ENTRIES)
def test_a_bad_index_entry_is_skipped(dirs: Any, entry: Any,
                                      caplog: pytest.LogCaptureFixture) -> None:
    (dirs.results / "job1").mkdir(parents=True)
    good = {"run_id": "r1", "path": "r1", "counts": {"passed": 1}, "exit_code": 0}
    (dirs.results / "job1" / "index.json").write_text(json.dumps([entry, good]))
    assert read_index("job1") == [good]
    assert "index.json: 1 bad entry skipped (entry 1: " in caplog.text


def test_bad_index_entries_break_no_later_command(tmp_path: Path, tlc: Any, dirs: Any) -> None:
    store_run("job1", stored_run(tmp_path, "first", {"run_id": "r1"}))
    index = dirs.results / "job1" / "index.json"
    index.write_text(json.dumps([*BAD_ENTRIES, *json.loads(index.read_text())]))
    for command in (("history", "job1"), ("history", "job1", "--json"),
                    ("history", "job1", "--html-in-store")):
        result = tlc("results", *command)
        assert result.returncode == 0, result.stderr
        warnings = [line for line in result.stderr.splitlines() if "bad entries" in line]
        assert len(warnings) == 1 and f"{len(BAD_ENTRIES)} bad entries" in warnings[0]
    result = tlc("results", "store", "job1", str(stored_run(tmp_path, "second", {"run_id": "r2"})))
    assert result.returncode == 0, result.stderr
    assert [e["run_id"] for e in json.loads(index.read_text())] == ["r1", "r2"]


def test_an_index_that_is_no_list_is_refused_in_one_line(tmp_path: Path, tlc: Any,
                                                         dirs: Any) -> None:
    (dirs.results / "job1").mkdir(parents=True)
    (dirs.results / "job1" / "index.json").write_text('{"run_id": "r1"}')
    error = one_error(tlc("results", "history", "job1"))
    assert "index.json: not a JSON list of runs" in error


def test_latest_never_leads_out_of_the_store(tmp_path: Path, tlc: Any, dirs: Any) -> None:
    first = stored_run(tmp_path, "first", {"run_id": "r1", "job": "job1"})
    assert tlc("results", "store", "job1", str(first)).returncode == 0
    outside = run_dir(tmp_path, failed("tempest.a"), name="outside")
    latest = dirs.results / "job1" / "latest"
    latest.unlink()
    latest.symlink_to(outside)
    result = tlc("results", "compare", "--job", "job1", "--json", str(first))
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["base"] == str(dirs.results / "job1" / "r1")


# --- JSON: depth, size, shapes -------------------------------------------------------------

def test_a_summary_nested_100000_deep_is_refused(tmp_path: Path, tlc: Any) -> None:
    directory = run_dir(tmp_path)
    (directory / "summary.json").write_text('{"metadata": ' + "[" * 100_000 + "]" * 100_000
                                            + "}")
    error = one_error(tlc("results", "show", str(directory)))
    assert f"{directory / 'summary.json'}: not JSON: nested more than 32 deep" in error


@pytest.mark.parametrize(("summary", "expect"), [
    ({"baseline": {"gate": "regressions"}}, "baseline.regressions: None is not a list of test ids"),
    ({"baseline": {"gate": "regressions", **{k: [] for k in (
        "regressions", "fixed", "still_failing", "flaky", "new_tests", "removed_tests",
        "newly_skipped")}, "failing": 7}}, "baseline.failing: 7 is not a list of test ids"),
    ({"changes": {"image": "x" * 500}}, "changes.image: 'xxxx"),
    ({"metadata": "x"}, "metadata: 'x'"),
    ({"counts": {"passed": "abc"}}, "counts.'passed': 'abc' is not a count"),
])
@pytest.mark.parametrize("command", ["html", "show"])
def test_a_stored_summary_of_the_wrong_shape_is_refused(tmp_path: Path, tlc: Any, command: str,
                                                        summary: dict[str, Any],
                                                        expect: str) -> None:
    directory = run_dir(tmp_path)
    (directory / "summary.json").write_text(json.dumps(summary))
    error = one_error(tlc("results", command, str(directory)))
    assert expect in error
    assert len(error) < 200
    assert json.loads((directory / "summary.json").read_text()) == summary


def test_json_nested_too_deep_is_refused_not_a_recursion_error() -> None:
    with pytest.raises(UsageError, match="nested more than 32 deep"):
        files.parse_json("[" * 100_000 + "]" * 100_000, "x")


# --- many listed tests under failed fixtures ----------------------------------------------

def test_listed_tests_under_many_failed_fixtures(tmp_path: Path, tlc: Any) -> None:
    classes = [f"tempest.api.c{n}.T" for n in range(3000)]
    stream = listed(f"{c}.test_{k}" for c in classes for k in range(3))
    stream += listed(["tempest.api.c1.Tother.test_a", "tempest.api.c12.T"])
    stream += b"".join(failed(f"setUpClass ({c})") for c in classes)
    (tmp_path / "s.subunit").write_bytes(stream)
    result = tlc("results", "show", "--json", str(tmp_path / "s.subunit"), timeout=60)
    summary = json.loads(result.stdout)
    assert len(summary["not_run_after_fixture_failure"]) == 9000
    # Not under any failed class: "c1.T" is no prefix of "c1.Tother", nor "c12.T" of itself.
    assert summary["incomplete"]["not_run"] == ["tempest.api.c1.Tother.test_a",
                                                "tempest.api.c12.T"]
