"""Job files: every shipped job loads; bad ones name file and dotted key, exit 20."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tempest_live_ci.deploy.profiles import PROFILES
from tempest_live_ci.errors import UsageError
from tempest_live_ci.job import Job, VmSection, list_jobs, load_job, parse_job

Tlc = Callable[..., subprocess.CompletedProcess[str]]


def test_every_shipped_job_is_valid() -> None:
    jobs = list_jobs()
    assert {p.stem for p in jobs} >= {"smoke-trixie", "nightly-sid", "upload-check"}
    for path in jobs:
        job = load_job(path)
        assert job.name == path.stem


def test_defaults_fill_every_section() -> None:
    job = parse_job({"name": "x"}, "x.yaml", "x")
    assert dataclasses.replace(job, vm=VmSection()) == Job(name="x", source="x.yaml")
    # The guest's size: what the profile (identity by default) was measured to need.
    assert (job.vm.memory_mib, job.vm.vcpus) == (4096, 2)
    full = parse_job({"name": "x", "tempest": {"profile": "full"}, "vm": {"vcpus": 3}},
                     "x.yaml", "x")
    assert (full.vm.memory_mib, full.vm.vcpus) == (PROFILES["full"].memory_mib, 3)
    assert job.testbed.host_address == "192.168.100.1/24"


def test_dashes_and_underscores_both_work() -> None:
    job = parse_job({"vm": {"ssh-timeout": 5, "dhcp_timeout": 6}}, "x.yaml", "x")
    assert (job.vm.ssh_timeout, job.vm.dhcp_timeout) == (5, 6)


@pytest.mark.parametrize("data, message", [
    ({"vm": {"memory": "lots"}}, "j.yaml: vm.memory: 'lots' is not a size"),
    ({"vm": {"vcpus": "two"}}, "j.yaml: vm.vcpus: expected an integer, got 'two'"),
    ({"vm": {"vcpus": True}}, "j.yaml: vm.vcpus: expected an integer"),
    ({"vm": {"cpus": 2}}, "j.yaml: vm.cpus: unknown key (known: "),
    ({"vm": [1]}, "j.yaml: vm: expected a mapping"),
    ({"image": {"suite": "buster"}}, "j.yaml: image.suite: 'buster' is not bookworm, trixie or sid"),
    ({"tempest": {"profile": "everything"}}, "j.yaml: tempest.profile: 'everything' is not"),
    ({"testbed": {"host_address": "300.1.1.1/24"}},
     "j.yaml: testbed.host_address '300.1.1.1/24': not"),
    ({"testbed": {"guest_address": "10.0.0.2"}}, "j.yaml: testbed.guest_address '10.0.0.2': not"),
    ({"testbed": {"nat": True}}, "NAT needs a persistent testbed"),
    ({"guest": {"candidates": ["x.txt"]}}, "j.yaml: guest.candidates[0]: 'x.txt' is not a .deb"),
    ({"guest": {"candidates": ["/nonexistent/x.deb"]}}, "guest.candidates[0]: no such file"),
    ({"name": "bad name"}, "j.yaml: name: 'bad name' is not a valid job name"),
    ({"tempset": {}}, "j.yaml: tempset: unknown key"),
])
def test_bad_jobs_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as error:
        parse_job(data, "j.yaml", "j")
    assert message in error.value.message


@pytest.mark.parametrize("data, packages", [
    # A single string where a list is expected is a one-item list, not an empty one.
    ({"image": {"packages": "keystone"}}, ("keystone",)),
    # A number is taken as its text.
    ({"image": {"packages": [12]}}, ("12",)),
    ({"image": {"packages": ["vim", "less"]}}, ("vim", "less")),
    ({"image": {"packages": []}}, ()),
])
def test_a_list_of_packages(data: dict[str, object], packages: tuple[str, ...]) -> None:
    assert parse_job(data, "j.yaml", "j").image.packages == packages


def test_cli_validate_reports_yaml_errors_with_line(tlc: Tlc, tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: x\nvm:\n  memory: [\n")
    result = tlc("job", "validate", str(bad))
    assert result.returncode == 20
    assert f"error: {bad}:4: invalid YAML" in result.stderr
    missing = tlc("job", "validate", str(tmp_path / "none.yaml"))
    assert missing.returncode == 20 and "no such job file" in missing.stderr
    ok = tlc("job", "validate", "smoke-trixie")
    assert ok.returncode == 0 and "valid job smoke-trixie" in ok.stderr


def test_cli_run_rejects_a_bad_candidate_before_touching_the_host(tlc: Tlc, tmp_path: Path) -> None:
    before = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    result = tlc("run", "--candidate", str(tmp_path / "keystone.txt"))
    assert result.returncode == 20
    assert "--candidate[0]:" in result.stderr and "is not a .deb or .changes" in result.stderr
    after = set(subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split())
    assert not after - before


@pytest.mark.root  # `run` checks for root first
def test_persistent_job_without_a_testbed_stops_before_anything(tlc: Tlc, tmp_path: Path) -> None:
    job = tmp_path / "persistent.yaml"
    job.write_text("name: on-the-host\ntestbed:\n  mode: persistent\n")
    result = tlc("run", str(job), "--output", str(tmp_path / "out"))
    assert result.returncode == 20, result.stderr
    assert "no persistent testbed 'tempest' is set up" in result.stderr
    assert "Preparing the image" not in result.stderr
    summary = (tmp_path / "out" / "summary.json").read_text()
    assert '"exit_code": 20' in summary


@pytest.mark.root  # `run` checks for root first
def test_a_guest_bigger_than_the_free_memory_stops_before_anything(
        tlc: Tlc, tmp_path: Path) -> None:
    available = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                         if line.startswith("MemAvailable:"))) // 1024
    job = tmp_path / "big.yaml"
    job.write_text(f"name: big\nvm:\n  memory: {available + 4096}M\n")
    result = tlc("run", str(job), "--output", str(tmp_path / "out"))
    assert result.returncode == 20, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"{job}: vm.memory: {available + 4096}M does not fit" in errors[0]
    assert "Preparing the image" not in result.stderr


def test_the_test_image_is_a_file_or_a_url(tmp_path: Path) -> None:
    image = tmp_path / "disk.qcow2"
    image.write_bytes(b"QFI\xfb")
    job = tmp_path / "j.yaml"
    job.write_text("name: j\ntempest:\n  profile: compute\n  image: disk.qcow2\n")
    assert load_job(job).tempest.image == str(image)
    job.write_text("name: j\ntempest:\n  image: http://images.example/disk.img\n")
    assert load_job(job).tempest.image == "http://images.example/disk.img"
    for bad, message in (("missing.img", "tempest.image: no such file"),
                         ("'http://x/a b'", "tempest.image: 'http://x/a b' is not a file or")):
        job.write_text(f"name: j\ntempest:\n  image: {bad}\n")
        with pytest.raises(UsageError, match=message):
            load_job(job)


def test_a_key_with_a_declared_option_is_set_from_runs_command_line(
        tlc: Tlc, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """results.baseline declares --baseline: `run` has the option, a relative directory is
    the current directory's, "latest" stays a word, a bad value is the option's error."""
    from tempest_live_ci.job import with_options

    base = tmp_path / "base"
    base.mkdir()
    (base / "summary.json").write_text("{}\n")
    monkeypatch.chdir(tmp_path)
    job = parse_job({}, "j.yaml", "j")
    assert with_options(job, {"results_baseline": "base"}).results.baseline == str(base)
    assert with_options(job, {"results_baseline": "latest"}).results.baseline == "latest"
    assert with_options(job, {"results_baseline": None}) == job
    with pytest.raises(UsageError, match=r"^--baseline: .*nothing: not a run directory"):
        with_options(job, {"results_baseline": "nothing"})
    assert "--baseline latest|DIR" in tlc("run", "--help").stdout
    # Refused before anything is made on the host.
    result = tlc("run", "--baseline", str(tmp_path / "nothing"))
    assert result.returncode == 20, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("error: --baseline: ")
