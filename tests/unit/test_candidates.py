"""Candidates on the host: real .debs (dpkg-deb), real .changes, real signatures (gpg/gpgv)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from tempest_live_ci.candidates import (
    Candidate,
    build_repository,
    collect_candidates,
    parse_source_line,
    profile_for,
)
from tempest_live_ci.deploy.profiles import PROFILES
from tempest_live_ci.errors import UsageError
from tempest_live_ci.job import load_job, parse_job, resolve_candidates
from tests.conftest import needs_root
from tests.debs import build_deb, write_changes

Tlc = Callable[..., subprocess.CompletedProcess[str]]


def option(i: int) -> str:
    return f"--candidate[{i}]"


@pytest.fixture
def upload(tmp_path: Path) -> Path:
    """keystone's binaries as an upload: two .debs and their .changes, in one directory."""
    directory = tmp_path / "upload"
    directory.mkdir()
    debs = [build_deb(directory, "keystone", "2:27.0.0-2", source="keystone",
                      depends="python3-keystone (= 2:27.0.0-2)"),
            build_deb(directory, "python3-keystone", "2:27.0.0-2", source="keystone")]
    write_changes(directory / "keystone_27.0.0-2_amd64.changes", debs)
    return directory


def test_a_deb_a_changes_and_a_directory(upload: Path) -> None:
    deb = collect_candidates([upload / "keystone_27.0.0-2_all.deb"], option=option)
    assert deb == (Candidate((upload / "keystone_27.0.0-2_all.deb").resolve(), "keystone",
                             "2:27.0.0-2", "all", "keystone"),)
    changes = collect_candidates([upload / "keystone_27.0.0-2_amd64.changes"], option=option)
    assert [(c.package, c.version, c.source) for c in changes] == [
        ("keystone", "2:27.0.0-2", "keystone"), ("python3-keystone", "2:27.0.0-2", "keystone")]
    assert collect_candidates([upload], option=option) == changes
    # The same files named twice are one candidate each.
    assert collect_candidates([upload, upload / "keystone_27.0.0-2_all.deb"],
                              option=option) == changes


def test_a_changes_whose_deb_was_changed_is_refused(upload: Path) -> None:
    deb = upload / "python3-keystone_27.0.0-2_all.deb"
    data = bytearray(deb.read_bytes())
    data[-1] ^= 1
    deb.write_bytes(bytes(data))
    with pytest.raises(UsageError) as e:
        collect_candidates([upload / "keystone_27.0.0-2_amd64.changes"], option=option)
    assert e.value.message == ("--candidate[0]: 'keystone_27.0.0-2_amd64.changes': "
                               "'python3-keystone_27.0.0-2_all.deb' does not match its size and "
                               "SHA-256 checksum in the .changes")


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "notes.txt", "--candidate[0]: 'notes.txt' is not a .deb or .changes file"),
    (lambda d: d / "missing.deb", "--candidate[0]: no such file: "),
    (lambda d: d / "empty", "--candidate[0]: {d}/empty: a directory without any .deb file"),
])
def test_bad_candidates_name_the_option_and_the_file(tmp_path: Path,
                                                     make: Callable[[Path], Path],
                                                     message: str) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError) as e:
        collect_candidates([make(tmp_path)], option=option)
    assert message.format(d=tmp_path) in e.value.message


def test_a_fake_deb_and_a_foreign_architecture_are_refused(tmp_path: Path) -> None:
    fake = tmp_path / "fake.deb"
    fake.write_text("#!/bin/sh\n")
    with pytest.raises(UsageError) as e:
        collect_candidates([fake], option=option)
    assert e.value.message.startswith("--candidate[0]: 'fake.deb': not a Debian binary package")
    arm = build_deb(tmp_path, "nova-compute", "1.0-1", architecture="arm64")
    with pytest.raises(UsageError) as e:
        collect_candidates([arm], option=option)
    assert "architecture 'arm64' does not install in the guest" in e.value.message


def test_two_versions_of_one_package_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = build_deb(tmp_path / "a", "keystone", "1.0-1")
    two = build_deb(tmp_path / "b", "keystone", "1.0-2")
    with pytest.raises(UsageError) as e:
        collect_candidates([one, two], option=option)
    assert e.value.message == f"candidates: keystone twice: {one} and {two}"


@pytest.fixture
def gnupg(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """A key of its own per name, made by gpg in a private GNUPGHOME; returns its keyring.

    gpg starts an agent per home that outlives it: each is stopped at the end.
    """
    if shutil.which("gpg") is None:
        pytest.skip("gpg is not installed")
    homes: list[Path] = []

    def keyring(name: str) -> Path:
        home = tmp_path / f"gnupg-{name}"
        home.mkdir(mode=0o700)
        homes.append(home)
        env = {**os.environ, "GNUPGHOME": str(home)}
        subprocess.run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key",
                        f"{name} <{name}@example.org>", "ed25519", "sign", "never"],
                       env=env, check=True, capture_output=True)
        out = tmp_path / f"{name}.gpg"
        subprocess.run(["gpg", "--batch", "--export", "--output", str(out)], env=env, check=True,
                       capture_output=True)
        return out

    yield keyring
    for home in homes:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                       check=False, capture_output=True)


def sign(changes: Path, keyring: Path) -> None:
    home = keyring.parent / f"gnupg-{keyring.stem}"
    signed = subprocess.run(["gpg", "--batch", "--clearsign", "--output", "-", str(changes)],
                            env={**os.environ, "GNUPGHOME": str(home)}, check=True,
                            capture_output=True).stdout
    changes.write_bytes(signed)


def test_signed_changes_checked_with_the_keyring(upload: Path, gnupg: Callable[[str], Path]) -> None:
    changes = upload / "keystone_27.0.0-2_amd64.changes"
    maintainer, stranger = gnupg("maintainer"), gnupg("stranger")
    with pytest.raises(UsageError) as unsigned:
        collect_candidates([changes], option=option, keyring=maintainer)
    assert "not signed, and --keyring asks for a signature check" in unsigned.value.message
    sign(changes, maintainer)
    found = collect_candidates([changes], option=option, keyring=maintainer)
    assert [c.package for c in found] == ["keystone", "python3-keystone"]
    with pytest.raises(UsageError) as bad:
        collect_candidates([changes], option=option, keyring=stranger)
    assert bad.value.message.startswith("--candidate[0]: 'keystone_27.0.0-2_amd64.changes': "
                                        "bad signature or unknown key")
    # Signed, no keyring: read (with a warning), its checksums still checked.
    assert collect_candidates([changes], option=option) == found


@pytest.mark.parametrize("sources, profile", [
    (["keystone"], "identity"),
    (["glance"], "image"),
    (["nova"], "compute"),
    (["nova", "placement"], "compute"),
    (["neutron"], "network"),
    (["cinder"], "volume"),
    (["heat"], "orchestration"),
    (["swift"], "object"),
    (["keystone", "glance"], "full"),
    (["python-oslo.messaging"], "full"),
])
def test_the_profile_that_covers_the_sources(sources: list[str], profile: str) -> None:
    candidates = [Candidate(Path(f"/{s}.deb"), f"python3-{s}", "1.0", "all", s) for s in sources]
    assert profile_for(candidates) == profile


@pytest.mark.parametrize("line, message", [
    ("deb http://deb.debian.org/debian trixie-backports main", None),
    ("deb http://deb.debian.org/debian experimental main", None),
    ("deb [trusted=yes] http://deb.debian.org/debian experimental main", None),
    # Another repository: an extra archive of the proxy (archives.py).
    ("deb http://osbpo.debian.net/osbpo trixie-epoxy-backports main", None),
    ("deb [trusted=yes] http://ci.example.org:8080/job/42/repo ./", None),
    ("deb https://deb.debian.org/debian sid main",
     "'https://deb.debian.org/debian': the apt proxy passes http:// repositories only"),
    ("deb-src http://deb.debian.org/debian sid main",
     "is not 'deb URL SUITE [COMPONENT...]'"),
    ("deb ftp://deb.debian.org/debian sid main", "is not a plain http:// or https:// URL"),
    ("deb http://user@ci.example.org/repo ./", "is not a plain http:// or https:// URL"),
    ("deb http://ci.example.org/a/../b ./", "is not a plain http:// or https:// URL"),
    ("deb http://ci.example.org/repo ../", "suite and components are names"),
    ("deb http://ci.example.org;reboot/repo ./", "is not a plain http:// or https:// URL"),
    ("deb http://deb.debian.org/debian$(reboot) sid main", "is not a plain http:// or https:// URL"),
    ("deb http://deb.debian.org/debian sid main;reboot", "suite and components are names"),
    ("deb http://deb.debian.org/debian", "is not 'deb URL SUITE"),
])
def test_candidate_sources(line: str, message: str | None) -> None:
    if message is None:
        assert parse_source_line(line, "--candidate-source[0]", apt_proxy=True) == line
        return
    with pytest.raises(UsageError) as e:
        parse_source_line(line, "--candidate-source[0]", apt_proxy=True)
    assert e.value.message.startswith("--candidate-source[0]: ") and message in e.value.message
    assert "\n" not in e.value.message


def test_without_the_proxy_any_http_archive_will_do() -> None:
    for line in ("deb http://osbpo.debian.net/osbpo trixie-epoxy-backports main",
                 "deb https://ci.example.org/repo ./"):
        assert parse_source_line(line, "x", apt_proxy=False) == line


def test_job_candidates_beside_the_job_and_auto_profile(upload: Path, tmp_path: Path) -> None:
    job_file = upload / "check.yaml"
    job_file.write_text(yaml.safe_dump({
        "guest": {"candidates": ["keystone_27.0.0-2_amd64.changes"]},
        "tempest": {"profile": "auto"},
        "results": {"baseline": "latest", "gate": "regressions"}}))
    job = load_job(job_file)
    assert job.guest.candidates == (str(upload / "keystone_27.0.0-2_amd64.changes"),)
    resolved, found = resolve_candidates(job)
    assert resolved.tempest.profile == "identity"
    assert [c.package for c in found] == ["keystone", "python3-keystone"]
    # The same file twice is one candidate; another file of the same package is refused.
    again = resolve_candidates(job, (upload / "keystone_27.0.0-2_all.deb",))[1]
    assert again == found
    rebuilt = tmp_path / "rebuilt"
    rebuilt.mkdir()
    other_keystone = build_deb(rebuilt, "keystone", "2:27.0.0-3", source="keystone")
    with pytest.raises(UsageError) as e:
        resolve_candidates(job, (other_keystone,))
    assert e.value.message.startswith("--candidate: keystone twice: ")
    # Another package in a file of the same name, from elsewhere: refused before anything starts.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    same_name = build_deb(elsewhere, "keystone-doc", "2:27.0.0-2", source="keystone")
    (elsewhere / "keystone_27.0.0-2_all.deb").write_bytes(same_name.read_bytes())
    same_name.unlink()
    with pytest.raises(UsageError) as e:
        resolve_candidates(job, (elsewhere / "keystone_27.0.0-2_all.deb",))
    assert e.value.message.startswith("candidates: two files named keystone_27.0.0-2_all.deb: ")
    glance = build_deb(tmp_path, "glance", "2:30.0.0-1", source="glance")
    experimental = "deb http://deb.debian.org/debian experimental main"
    if "full" not in PROFILES:
        # Two services' sources: the whole cloud, refused while that profile does not exist.
        with pytest.raises(UsageError) as e:
            resolve_candidates(job, (glance,), (experimental,))
        assert "tempest.profile: auto chose 'full' for glance, keystone" in e.value.message
        return
    both, found = resolve_candidates(job, (glance,), (experimental,))
    assert both.tempest.profile == "full"
    assert both.guest.candidates[-1] == str(glance.resolve())
    assert both.guest.candidate_sources == (experimental,)


@pytest.mark.parametrize("data, message", [
    ({"results": {"baseline": "latest", "gate": "new"}}, "results.gate: 'new' is not all or "
     "regressions"),
    ({"results": {"gate": "regressions"}}, "results.gate: regressions needs a results.baseline"),
    ({"results": {"baseline": "/nonexistent/run"}}, "results.baseline: /nonexistent/run: not a "
     "run directory"),
    ({"results": {"baseline_job": "nightly-sid"}}, "results.baseline_job: only used with "
     "results.baseline: latest"),
    ({"results": {"baseline": "latest", "baseline_job": "../x"}}, "results.baseline_job: '../x' "
     "is not a job name"),
    ({"guest": {"candidate_sources": ["deb https://example.org/debian sid main"]}},
     "guest.candidate_sources[0]: 'https://example.org/debian': the apt proxy passes http://"),
    ({"guest": {"keyring": "/nonexistent.gpg"}}, "guest.keyring: no such file: /nonexistent.gpg"),
])
def test_bad_results_and_candidate_settings(data: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_job(data, "j.yaml", "j")
    assert message in e.value.message and e.value.message.startswith("j.yaml: ")


def test_cli_run_refuses_bad_candidates_before_anything(tlc: Tlc, upload: Path) -> None:
    deb = upload / "python3-keystone_27.0.0-2_all.deb"
    deb.write_bytes(deb.read_bytes()[:-1])
    result = tlc("run", "--candidate", str(upload / "keystone_27.0.0-2_amd64.changes"),
                 "--output", str(upload / "out"))
    assert result.returncode == 20, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == ["error: --candidate[0]: 'keystone_27.0.0-2_amd64.changes': "
                      "'python3-keystone_27.0.0-2_all.deb' does not match its size and SHA-256 "
                      "checksum in the .changes"]
    assert not (upload / "out").exists()
    source = tlc("run", "--candidate-source", "deb https://example.org/x sid main")
    assert source.returncode == 20 and "--candidate-source[0]: 'https://example.org/x'" in \
        source.stderr


def test_the_jobs_keyring_checks_the_command_lines_changes(upload: Path, tmp_path: Path,
                                                          gnupg: Callable[[str], Path]) -> None:
    changes = upload / "keystone_27.0.0-2_amd64.changes"
    maintainer, stranger = gnupg("maintainer"), gnupg("stranger")
    sign(changes, stranger)
    job = parse_job({"guest": {"keyring": str(maintainer)}}, "j.yaml", "j")
    with pytest.raises(UsageError) as e:
        resolve_candidates(job, (changes,))
    assert e.value.message.startswith("--candidate[0]: 'keystone_27.0.0-2_amd64.changes': bad "
                                      "signature or unknown key")
    # --keyring wins over the job's.
    resolved, found = resolve_candidates(job, (changes,), keyring=stranger)
    assert resolved.guest.keyring == str(stranger.resolve()) and len(found) == 2


def _changes_with(path: Path, entry: str, field: str = "Checksums-Sha256") -> Path:
    path.write_text(f"Format: 1.8\nSource: keystone\nVersion: 1.0\n{field}:\n {entry}\n")
    return path


@pytest.mark.parametrize("entry, message", [
    # A path, not a file beside the .changes: ../, /, an option.
    ("{sha} {size} ../upload/keystone_27.0.0-2_all.deb",
     "names '../upload/keystone_27.0.0-2_all.deb', which is not a file beside it"),
    ("{sha} {size} sub/keystone_27.0.0-2_all.deb",
     "names 'sub/keystone_27.0.0-2_all.deb', which is not a file beside it"),
    ("{sha} {size} /etc/passwd", "names '/etc/passwd', which is not a file beside it"),
    ("{sha} {size} ..", "names '..', which is not a file beside it"),
    ("{sha} {size} -keystone.deb", "names '-keystone.deb', which is not a file beside it"),
    ("{sha} 12x keystone_27.0.0-2_all.deb",
     "Checksums-Sha256 entry 1: the size '12x' is not a number"),
    ("{sha} " + "9" * 5000 + " keystone_27.0.0-2_all.deb", "the size '99999"),
    ("{sha} keystone_27.0.0-2_all.deb", "Checksums-Sha256 entry 1 is not 'SHA256 SIZE FILE'"),
    ("zz{sha} {size} keystone_27.0.0-2_all.deb", "is not a SHA-256 checksum"),
])
def test_a_malformed_changes_entry_is_refused(upload: Path, entry: str, message: str) -> None:
    deb = upload / "keystone_27.0.0-2_all.deb"
    (upload / "sub").mkdir()
    (upload / "sub" / deb.name).write_bytes(deb.read_bytes())
    sha = hashlib.sha256(deb.read_bytes()).hexdigest()
    changes = _changes_with(upload / "bad.changes",
                            entry.format(sha=sha, size=deb.stat().st_size))
    with pytest.raises(UsageError) as e:
        collect_candidates([changes], option=option)
    assert e.value.message.startswith("--candidate[0]: 'bad.changes': ")
    assert message in e.value.message and len(e.value.message) < 300, e.value.message


def test_a_two_field_files_entry_is_refused(upload: Path) -> None:
    changes = _changes_with(upload / "old.changes", "0123456789abcdef0123456789abcdef hello.deb",
                            field="Files")
    with pytest.raises(UsageError) as e:
        collect_candidates([changes], option=option)
    assert e.value.message == ("--candidate[0]: 'old.changes': Files entry 1 is not "
                               "'MD5SUM SIZE SECTION PRIORITY FILE'")


@pytest.mark.parametrize("make, message", [
    (lambda d: d.joinpath("x.deb").symlink_to(d / "keystone_27.0.0-2_all.deb"),
     "{d}/x.deb: a symbolic link, not a regular file (name the file itself)"),
    (lambda d: os.mkfifo(d / "x.deb"), "{d}/x.deb: a FIFO, not a regular file"),
    (lambda d: d.joinpath("x.deb").mkdir(), "{d}/x.deb: a directory, not a regular file"),
])
def test_what_a_directory_holds_is_read_only_if_a_regular_file(
        upload: Path, make: Callable[[Path], object], message: str) -> None:
    make(upload)
    with pytest.raises(UsageError) as e:
        collect_candidates([upload], option=option)
    assert e.value.message == "--candidate[0]: " + message.format(d=upload)


def test_a_changes_may_not_name_a_link_or_a_fifo(upload: Path, tmp_path: Path) -> None:
    changes = upload / "keystone_27.0.0-2_amd64.changes"
    deb = upload / "python3-keystone_27.0.0-2_all.deb"
    moved = tmp_path / "elsewhere.deb"
    deb.rename(moved)
    deb.symlink_to(moved)
    with pytest.raises(UsageError) as e:
        collect_candidates([changes], option=option)
    assert e.value.message == f"--candidate[0]: {deb}: a symbolic link, not a regular file " \
                              "(name the file itself)"
    deb.unlink()
    os.mkfifo(deb)
    with pytest.raises(UsageError) as e:
        collect_candidates([changes], option=option)
    assert e.value.message == f"--candidate[0]: {deb}: a FIFO, not a regular file"


def test_a_named_candidate_may_not_be_a_link(upload: Path, tmp_path: Path) -> None:
    for target in (upload / "keystone_27.0.0-2_all.deb", upload):
        link = tmp_path / ("link.deb" if target.is_file() else "link")
        link.symlink_to(target)
        with pytest.raises(UsageError) as e:
            collect_candidates([link], option=option)
        assert e.value.message == (f"--candidate[0]: {link}: a symbolic link, not a file or a "
                                   "directory (name the file itself)")


def test_two_files_of_one_name_are_refused(tmp_path: Path) -> None:
    # Two packages, one file name: the flat repository would hold the last one only.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = build_deb(tmp_path / "a", "keystone", "1.0-1")
    two = build_deb(tmp_path / "b", "python3-keystone", "1.0-1")
    renamed = two.with_name(one.name)
    two.rename(renamed)
    with pytest.raises(UsageError) as e:
        collect_candidates([one, renamed], option=option)
    assert e.value.message == (f"candidates: two files named {one.name}: {one.resolve()} and "
                               f"{renamed.resolve()}")
    with pytest.raises(UsageError) as e:
        collect_candidates([tmp_path / "a", tmp_path / "b"], option=option)
    assert e.value.message.startswith(f"candidates: two files named {one.name}: ")


def test_the_repository_gets_the_bytes_that_were_checked(upload: Path, tmp_path: Path) -> None:
    found = collect_candidates([upload], option=option)
    repo = build_repository(found, tmp_path / "repo")
    assert (repo / found[0].filename).read_bytes() == found[0].path.read_bytes()
    other = build_deb(tmp_path, "keystone", "2:27.0.0-9", source="keystone")
    found[0].path.write_bytes(other.read_bytes())
    with pytest.raises(UsageError) as e:
        build_repository(found, tmp_path / "repo2")
    assert e.value.message == f"candidates: {found[0].path} changed since it was checked"


@pytest.mark.parametrize("command", ["validate", "run"])
def test_a_fifo_among_the_candidates_does_not_block(tlc: Tlc, upload: Path, command: str) -> None:
    os.mkfifo(upload / "x.deb")
    if command == "validate":
        job = upload / "check.yaml"
        job.write_text("guest:\n  candidates: [.]\n")
        result = tlc("job", "validate", str(job), timeout=60)
        where = f"{job}: guest.candidates[0]"
    else:
        result = tlc("run", "--candidate", str(upload), "--output", str(upload / "out"),
                     timeout=60)
        where = "--candidate[0]"
    assert result.returncode == 20, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: {where}: {upload}/x.deb: a FIFO, not a regular file"]


@needs_root  # `run` gets past its candidates, to the machine: root's
def test_each_candidate_file_is_read_once_per_run(tlc: Tlc, upload: Path, tmp_path: Path,
                                                  gnupg: Callable[[str], Path]) -> None:
    """The job's own candidates are checked as the job is read, then again with the
    command line's: dpkg-deb reads each .deb once, gpgv checks the .changes once
    (the commands run, from --debug). The run then stops at its machine: nothing
    listens on port 1."""
    changes = upload / "keystone_27.0.0-2_amd64.changes"
    maintainer = gnupg("maintainer")
    sign(changes, maintainer)
    job = tmp_path / "upload-check.yaml"
    job.write_text(yaml.safe_dump({"guest": {
        "candidates": [str(upload / "keystone_27.0.0-2_all.deb")], "keyring": str(maintainer)}}))
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    result = tlc("--debug", "run", str(job), "--candidate", str(changes),
                 "--machine", "ssh:root@127.0.0.1:1", "--ssh-key", str(key),
                 "--host-key", f"{key}.pub", "--output", str(tmp_path / "out"))
    assert result.returncode == 16, result.stderr[-3000:]
    run = [Path(line.split("+ ", 1)[1].split()[0]).name for line in result.stderr.splitlines()
           if "+ " in line]
    commands = [name for name in run if name in ("dpkg-deb", "gpgv")]
    assert sorted(commands) == ["dpkg-deb", "dpkg-deb", "gpgv"], result.stderr[-3000:]
    # Both packages, each once: the job's keystone is also the upload's.
    summary = yaml.safe_load((tmp_path / "out" / "job.yaml").read_text())
    assert summary["guest"]["candidates"][-1] == str(changes.resolve())
