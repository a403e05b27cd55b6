"""What the guest is told (params.json), from recorded jobs; and the deploy archive."""

from __future__ import annotations

import io
import ipaddress
import json
import tarfile
from dataclasses import replace
from pathlib import Path

import pytest

from tempest_live_ci.deploy.params import Params
from tempest_live_ci.errors import UsageError
from tempest_live_ci.guest.plan import TEST_IMAGE_MARKER, guest_files, guest_params, make_test_image
from tempest_live_ci.guest.steps import GUEST_LIB, GUEST_STATE, deploy_archive
from tempest_live_ci.job import Job, load_job, parse_job
from tempest_live_ci.machine import GuestNetwork
from tempest_live_ci.machine.libvirt import guest_network, serve_over_http
from tempest_live_ci.testbed.model import Testbed


def make_testbed(apt_proxy: str | None = "http://192.168.100.1:3142") -> Testbed:
    return Testbed(
        run_id="tlc-0000abcd", netns="tlc-0000abcd", bridge="br", tap="tap", nic="nic",
        nic_kind="veth", host_interface=ipaddress.IPv4Interface("192.168.100.1/24"),
        host_ipv6=None, guest_address=ipaddress.IPv4Address("192.168.100.2"),
        guest_mac="52:54:00:7e:57:02", state_dir=Path("/nonexistent"),
        http_root=Path("/nonexistent"), tftp_root=Path("/nonexistent"),
        dnsmasq_log=Path("/nonexistent"), http_log=Path("/nonexistent"), apt_proxy=apt_proxy)


def network(job: Job, apt_proxy: str | None = "http://192.168.100.1:3142") -> GuestNetwork:
    """The guest's network as the libvirt backend places it on make_testbed()'s testbed."""
    return guest_network(job, make_testbed(apt_proxy))


def test_default_job_gets_the_profile_selection_and_the_proxy() -> None:
    job = parse_job({"vm": {"vcpus": 3}}, "j.yaml", "j")
    p = guest_params(job, network(job), guest_state=GUEST_STATE, admin_password="pw")
    assert p.tempest.regex == r"tempest\.api\.identity"
    assert p.tempest.concurrency == 3  # the guest's vCPUs
    assert p.apt_proxy == "http://192.168.100.1:3142"
    assert (p.suite, p.image_suite) == ("trixie", "trixie")
    assert p.security_mirror == "http://deb.debian.org/debian-security"
    assert p.admin_password == "pw"
    # params.json: what the guest reads back is the record the host made.
    assert Params.from_dict(json.loads(json.dumps(p.as_dict()))) == p


def test_a_job_selection_replaces_the_profile_default() -> None:
    job = parse_job({"tempest": {"smoke": True, "concurrency": 1}}, "j.yaml", "j")
    t = guest_params(job, network(job), guest_state=GUEST_STATE).tempest
    assert (t.regex, t.smoke, t.concurrency) == (None, True, 1)


def test_no_proxy_when_the_job_uses_nat_and_a_generated_password() -> None:
    job = parse_job({"testbed": {"apt_proxy": False}, "guest": {"suite": "sid"}}, "j.yaml", "j")
    p = guest_params(job, network(job), guest_state=GUEST_STATE)
    assert p.apt_proxy is None
    assert (p.suite, p.image_suite) == ("sid", "trixie")
    assert len(p.admin_password) >= 20


def test_relative_files_resolve_beside_the_job_and_travel_to_the_guest(tmp_path: Path) -> None:
    (tmp_path / "sources.list").write_text("deb http://deb.debian.org/debian sid main\n")
    (tmp_path / "skip.txt").write_text("test_domains  # reason\n")
    (tmp_path / "j.yaml").write_text(
        "guest: {sources_list: sources.list}\ntempest: {exclude_list: skip.txt}\n")
    job = load_job(tmp_path / "j.yaml")
    assert job.guest.sources_list == str(tmp_path / "sources.list")
    p = guest_params(job, network(job), guest_state=GUEST_STATE)
    assert p.sources_list is not None
    assert p.sources_list.splitlines()[1:] == ["deb http://deb.debian.org/debian sid main"]
    assert p.tempest.exclude_list == f"{GUEST_STATE}/lists/exclude.list"
    assert guest_files(job) == {"lists/exclude.list": b"test_domains  # reason\n"}


def test_extra_archives_reach_the_guest_by_their_prefix_on_the_proxy(tmp_path: Path) -> None:
    """Debian's archive (backports, experimental too) stays as named; another repository
    becomes its prefix on the testbed's extra proxy, reached directly."""
    from tempest_live_ci.archives import ExtraArchive
    from tempest_live_ci.guest.plan import guest_sources

    (tmp_path / "sources.list").write_text(
        "# the job's own\n"
        "deb http://deb.debian.org/debian trixie main\n"
        "deb http://deb.debian.org/debian trixie-backports main  # backports\n"
        "\n"
        "deb-src http://ci.example.org/pipeline/7/repo/ trixie main\n")
    ci = ExtraArchive("http://ci.example.org/pipeline/7/repo/").name
    mentors = ExtraArchive("http://mentors.example.org/debian/").name
    job = parse_job({"guest": {"sources_list": str(tmp_path / "sources.list"),
                               "candidate_sources": [
                                   "deb http://deb.debian.org/debian experimental main",
                                   "deb [trusted=yes] http://mentors.example.org/debian ./"]}},
                    "j.yaml", "j")
    p = guest_params(job, network(job), guest_state=GUEST_STATE)
    assert p.sources_list is not None
    assert p.sources_list.splitlines()[1:] == [
        "deb http://deb.debian.org/debian trixie main",
        "deb http://deb.debian.org/debian trixie-backports main",
        f"deb-src http://192.168.100.1:3143/{ci}/ trixie main"]
    assert p.apt_direct == ("192.168.100.1",)
    assert guest_sources(job, network(job))[1] == [
        "deb http://deb.debian.org/debian experimental main",
        f"deb [trusted=yes] http://192.168.100.1:3143/{mentors}/ ./"]
    # Without the proxy (NAT): every line as the job wrote it, https:// allowed.
    nat = parse_job({"testbed": {"mode": "persistent", "apt_proxy": False, "nat": True},
                     "guest": {"candidate_sources": ["deb https://ci.example.org/r ./"]}},
                    "j.yaml", "j")
    assert guest_sources(nat, network(nat, None)) == (None, ["deb https://ci.example.org/r ./"])
    assert guest_params(nat, network(nat, None), guest_state=GUEST_STATE).apt_direct == ()


@pytest.mark.parametrize("data, message", [
    ({"tempest": {"regex": "tempest(["}}, "j.yaml: tempest.regex: 'tempest([' is not a valid"),
    ({"tempest": {"conf": {"nodot": "x"}}}, "j.yaml: tempest.conf: 'nodot' is not a section.key"),
    ({"tempest": {"conf": {"a.b": ["x"]}}}, "j.yaml: tempest.conf.a.b: expected one line"),
    ({"tempest": {"conf": {"a.b": "x\ny"}}}, "j.yaml: tempest.conf.a.b: expected one line"),
    ({"tempest": {"include_list": "/nonexistent/list"}}, "tempest.include_list: no such file"),
    ({"results": {"baseline": "last"}}, "j.yaml: results.baseline: last: not a run directory"),
    ({"results": {"gate": True}}, "j.yaml: results.gate: expected a string, got True"),
    ({"guest": {"suite": "jessie"}}, "j.yaml: guest.suite: 'jessie' is not bookworm"),
    ({"guest": {"install_timeout": 0}}, "j.yaml: guest.install_timeout: 0 is not positive"),
])
def test_bad_values_name_the_key(data: dict[str, object], message: str) -> None:
    with pytest.raises(UsageError) as e:
        parse_job(data, "j.yaml", "j")
    assert message in e.value.message


def test_conf_values_become_text() -> None:
    job = parse_job({"tempest": {"conf": {"compute.build_timeout": 600, "a.b": True}}}, "j", "j")
    assert job.tempest.conf == {"compute.build_timeout": "600", "a.b": "true"}


def test_deploy_archive_holds_the_package_params_and_files() -> None:
    data = deploy_archive({"profile": "identity"}, {"lists/include.list": b"x\n"})
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        names = set(tar.getnames())
        params = tar.extractfile(f"{GUEST_STATE.lstrip('/')}/params.json")
        assert params is not None and json.load(params) == {"profile": "identity"}
        assert tar.getmember(f"{GUEST_STATE.lstrip('/')}/params.json").mode == 0o600
    lib = GUEST_LIB.lstrip("/")
    assert {f"{lib}/deploy/__main__.py", f"{lib}/deploy/profiles.py",
            f"{GUEST_STATE.lstrip('/')}/lists/include.list"} <= names


def test_the_test_image_is_published_for_the_server_alone(tmp_path: Path) -> None:
    testbed = replace(make_testbed(), http_root=tmp_path / "www")
    work = tmp_path / "work"
    work.mkdir()
    made = make_test_image(parse_job({"tempest": {"profile": "image"}}, "j", "j"), work)
    assert isinstance(made, Path) and made.read_bytes().startswith(TEST_IMAGE_MARKER)
    assert made.stat().st_size == 1 << 20
    assert serve_over_http(testbed, made, f"tempest/{made.name}") == \
        "http://192.168.100.1/runs/tlc-0000abcd/tempest/tempest-live-ci-test.raw"
    served = tmp_path / "www" / "runs" / "tlc-0000abcd" / "tempest" / made.name
    assert served.read_bytes() == made.read_bytes()
    # A job's own image: copied as it was checked, readable by the server (root) alone.
    private = tmp_path / "private.qcow2"
    private.write_bytes(b"QFI\xfb" + b"\0" * 1000)
    private.chmod(0o600)
    job = parse_job({"tempest": {"profile": "image", "image": str(private)}}, "j", "j")
    copied = make_test_image(job, work)
    assert isinstance(copied, Path)
    assert serve_over_http(testbed, copied, "tempest/private.qcow2") == \
        "http://192.168.100.1/runs/tlc-0000abcd/tempest/private.qcow2"
    published = served.with_name("private.qcow2")
    assert published.read_bytes() == private.read_bytes()
    for path in (made, served, copied, published):
        assert path.stat().st_mode & 0o777 == 0o600, oct(path.stat().st_mode)
    # A URL is passed on; a profile without images gets none.
    url = "https://images.example.org/cirros.img"
    assert make_test_image(parse_job({"tempest": {"profile": "image", "image": url}}, "j", "j"),
                           work) == url
    assert make_test_image(parse_job({}, "j", "j"), work) is None


def test_a_served_directory_keeps_its_tree_and_no_links(tmp_path: Path) -> None:
    testbed = replace(make_testbed(), http_root=tmp_path / "www")
    repo = tmp_path / "repo"
    (repo / "sub").mkdir(parents=True)
    (repo / "Packages").write_text("Package: keystone\n")
    (repo / "sub" / "a.deb").write_bytes(b"!<arch>\n")
    (repo / "passwd").symlink_to("/etc/passwd")
    assert serve_over_http(testbed, repo, "candidates") == \
        "http://192.168.100.1/runs/tlc-0000abcd/candidates/"
    served = tmp_path / "www" / "runs" / "tlc-0000abcd" / "candidates"
    assert sorted(str(p.relative_to(served)) for p in served.rglob("*")) == \
        ["Packages", "sub", "sub/a.deb"]
    assert (served / "sub" / "a.deb").read_bytes() == b"!<arch>\n"


@pytest.mark.parametrize("change, message", [
    ({"vcpus": True}, "params.vcpus: expected int, got bool"),
    ({"preinstalled": 1}, "params.preinstalled: expected bool, got int"),
    ({"setup_commands": "echo"}, "params.setup_commands: expected a list, got str"),
    ({"tempest": {"concurrency": "2"}}, "params.tempest.concurrency: expected int, got str"),
    ({"tempest": {"conf": {"a.b": 1}}}, "params.tempest.conf: expected a mapping of strings"),
    ({"no_such_key": 1}, "params: unknown keys no_such_key"),
])
def test_params_json_read_back_is_checked_against_the_record(change: dict[str, object],
                                                              message: str) -> None:
    """The guest reads params.json as the typed record: a key or a type the host's code
    does not write is named, not read as something else."""
    job = parse_job({}, "j.yaml", "j")
    data = {**guest_params(job, network(job), guest_state=GUEST_STATE).as_dict(), **change}
    with pytest.raises(ValueError) as raised:
        Params.from_dict(data)
    assert str(raised.value) == message
    missing = guest_params(job, network(job), guest_state=GUEST_STATE).as_dict()
    del missing["profile"]
    with pytest.raises(ValueError, match="params: missing keys profile"):
        Params.from_dict(missing)
