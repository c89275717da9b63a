"""The pure parts of provisioning the engine: source choice, apt lines, status parsing, drop-in."""

from __future__ import annotations

import shlex
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolbox.errors import Cancelled, ProvisionError
from toolbox.provision.engine import (
    DROPIN_PATH,
    AptStatus,
    EngineSource,
    OsRelease,
    apt_install_argv,
    apt_update_argv,
    choose_engine_plan,
    docker_repo_setup_commands,
    dockerd_argv,
    dropin_text,
    parse_apt_status,
    parse_os_release,
    repo_probe_command,
    restart_needed_command,
    wait_engine_ready,
)

BOOKWORM = """PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
"""

JAMMY = """NAME="Ubuntu"
VERSION="22.04.4 LTS (Jammy Jellyfish)"
ID=ubuntu
ID_LIKE=debian
PRETTY_NAME="Ubuntu 22.04.4 LTS"
VERSION_CODENAME=jammy
"""


def test_parse_os_release() -> None:
    assert parse_os_release(BOOKWORM) == OsRelease(
        "debian", "bookworm", (), "Debian GNU/Linux 12 (bookworm)"
    )
    ubuntu = parse_os_release(JAMMY)
    assert (ubuntu.id, ubuntu.version_codename, ubuntu.id_like) == ("ubuntu", "jammy", ("debian",))
    assert parse_os_release("") == OsRelease("linux", None)
    assert parse_os_release("# comment\nID='weird'\nbroken line\nX=\"unterminated\n").id == "weird"


@given(
    st.sampled_from(["debian", "ubuntu", "fedora", "Alpine"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=12),
    st.sampled_from(['"', "'", ""]),
)
def test_parse_os_release_any_quoting(distro: str, codename: str, quote: str) -> None:
    text = f"ID={quote}{distro}{quote}\nVERSION_CODENAME={quote}{codename}{quote}\n"
    parsed = parse_os_release(text)
    assert parsed.id == distro.lower()
    assert parsed.version_codename == codename


@given(st.text(max_size=400))
def test_parse_os_release_never_crashes(text: str) -> None:
    assert isinstance(parse_os_release(text), OsRelease)


DEBIAN = parse_os_release(BOOKWORM)


def test_reachable_docker_repo_is_preferred() -> None:
    plan = choose_engine_plan(DEBIAN, "amd64", repo_reachable=True)
    assert plan.source is EngineSource.DOCKER
    assert plan.packages == (
        "docker-ce",
        "docker-ce-cli",
        "containerd.io",
        "docker-buildx-plugin",
        "docker-compose-plugin",
        "apparmor",
    )
    assert plan.repo_line == (
        "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] "
        "https://download.docker.com/linux/debian bookworm stable"
    )
    assert plan.key_url == "https://download.docker.com/linux/debian/gpg"


def test_unreachable_repo_falls_back_to_docker_io_with_apparmor() -> None:
    plan = choose_engine_plan(DEBIAN, "amd64", repo_reachable=False)
    assert plan.source is EngineSource.DISTRO
    assert plan.packages == ("docker.io", "apparmor")
    assert plan.repo_line is None
    assert "unreachable" in plan.reason


def test_ubuntu_gets_the_ubuntu_repo() -> None:
    plan = choose_engine_plan(parse_os_release(JAMMY), "arm64", repo_reachable=True)
    assert plan.repo_line is not None
    assert "linux/ubuntu jammy stable" in plan.repo_line
    assert "arch=arm64" in plan.repo_line


def test_asking_for_the_distribution_package_skips_docker() -> None:
    plan = choose_engine_plan(DEBIAN, "amd64", True, prefer=EngineSource.DISTRO)
    assert plan.source is EngineSource.DISTRO


@pytest.mark.parametrize(
    ("release", "arch"),
    [
        (OsRelease("debian", "bookworm"), "riscv64"),  # no Docker packages for the arch
        (OsRelease("debian", None), "amd64"),  # no codename, no repo line
        (OsRelease("devuan", "daedalus", ("debian",)), "amd64"),  # Debian-like, not Docker's
    ],
)
def test_unsupported_combinations_use_docker_io(release: OsRelease, arch: str) -> None:
    assert choose_engine_plan(release, arch, True).source is EngineSource.DISTRO


def test_a_non_debian_guest_is_refused_with_a_hint() -> None:
    with pytest.raises(ProvisionError) as info:
        choose_engine_plan(OsRelease("fedora", None, (), "Fedora Linux 40"), "amd64", True)
    assert "Fedora Linux 40" in info.value.message
    assert info.value.hint


def test_probe_command_is_short_and_needs_no_curl() -> None:
    assert shlex.split(repo_probe_command()) == [
        "timeout",
        "5",
        "bash",
        "-c",
        "exec 3<>/dev/tcp/download.docker.com/443",
    ]


def test_apt_command_lines() -> None:
    assert apt_update_argv() == [
        "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q",
        "-o", "APT::Status-Fd=1", "-o", "Dpkg::Use-Pty=0", "-o", "DPkg::Lock::Timeout=300",
        "-o", "Acquire::Retries=3", "-o", "Acquire::Languages=none", "update",
    ]  # fmt: skip
    assert apt_install_argv(["docker.io", "apparmor"]) == [
        "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "-q", "-y",
        "-o", "APT::Status-Fd=1", "-o", "Dpkg::Use-Pty=0", "-o", "DPkg::Lock::Timeout=300",
        "-o", "Acquire::Retries=3",
        "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
        "install", "--no-install-recommends", "docker.io", "apparmor",
    ]  # fmt: skip


def test_docker_repo_setup_commands() -> None:
    plan = choose_engine_plan(DEBIAN, "amd64", True)
    commands = docker_repo_setup_commands(plan)
    assert commands[:3] == [
        "install -m 0755 -d /etc/apt/keyrings",
        "curl -fsSL --max-time 60 https://download.docker.com/linux/debian/gpg "
        "-o /etc/apt/keyrings/docker.asc",
        "chmod a+r /etc/apt/keyrings/docker.asc",
    ]
    # The sources line survives the shell intact.
    words = shlex.split(commands[3])
    assert words[:2] == ["printf", "%s\\n"]
    assert words[2] == plan.repo_line
    assert words[3:] == [">", "/etc/apt/sources.list.d/docker.list"]
    assert len(commands) == 4


def test_parse_apt_status_lines() -> None:
    assert parse_apt_status("pmstatus:runc:58.5366:Preparing to configure runc (amd64)") == (
        AptStatus("pmstatus", "runc", 58.5366, "Preparing to configure runc (amd64)")
    )
    assert parse_apt_status("dlstatus:3:45.8832:Retrieving file 3 of 4 (7s remaining)") == (
        AptStatus("dlstatus", "3", 45.8832, "Retrieving file 3 of 4 (7s remaining)")
    )
    # A message may itself contain colons.
    status = parse_apt_status("pmerror:foo:10:dpkg: error: oops")
    assert status is not None and status.message == "dpkg: error: oops"
    for line in ("Get:1 http://deb.debian.org/debian bookworm InRelease", "", "pmstatus:x:nan?:m"):
        assert parse_apt_status(line) is None


@given(
    st.sampled_from(["dlstatus", "pmstatus"]),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789.+-", min_size=1, max_size=20),
    st.floats(min_value=0, max_value=100, allow_nan=False),
    st.text(max_size=60).filter(lambda s: "\n" not in s and "\r" not in s),
)
def test_apt_status_round_trip(kind: str, item: str, percent: float, message: str) -> None:
    status = parse_apt_status(f"{kind}:{item}:{percent:.4f}:{message}")
    assert status is not None
    assert (status.kind, status.item, status.message) == (kind, item, message.strip())
    assert abs(status.percent - percent) < 0.001


@given(st.text(max_size=200))
def test_apt_status_never_crashes(line: str) -> None:
    status = parse_apt_status(line)
    assert status is None or 0 <= status.percent <= 100


def test_dropin_for_debians_docker_io() -> None:
    assert DROPIN_PATH == "/etc/systemd/system/docker.service.d/10-toolbox.conf"
    assert dropin_text("/usr/sbin/dockerd") == (
        "# Written by Toolbox: dockerd on its unix socket and on TLS for the host forward.\n"
        "[Service]\n"
        "ExecStart=\n"
        "ExecStart=/usr/sbin/dockerd -H fd:// -H tcp://0.0.0.0:2376 "
        "--containerd=/run/containerd/containerd.sock --tlsverify "
        "--tlscacert /etc/docker/toolbox/ca.pem --tlscert /etc/docker/toolbox/server.pem "
        "--tlskey /etc/docker/toolbox/server-key.pem\n"
    )


def test_dropin_for_dockers_package_without_socket_activation() -> None:
    argv = dockerd_argv("/usr/bin/dockerd", port=12376, socket_activation=False)
    assert argv[:5] == [
        "/usr/bin/dockerd",
        "-H",
        "unix:///var/run/docker.sock",
        "-H",
        "tcp://0.0.0.0:12376",
    ]
    text = dropin_text("/usr/bin/dockerd", 12376, False)
    lines = text.splitlines()
    assert lines[1:3] == ["[Service]", "ExecStart="]  # the empty ExecStart= clears the unit's
    assert lines[3] == "ExecStart=" + " ".join(argv)
    assert "fd://" not in text


def test_restart_needed_command_is_valid_shell() -> None:
    command = restart_needed_command(["/etc/a b.pem", "/etc/c.pem"])
    assert "'/etc/a b.pem' /etc/c.pem" in command
    assert command.startswith("t=$(systemctl show -p ActiveEnterTimestamp --value docker.service)")


def test_wait_engine_ready_retries_then_succeeds(tmp_path: Path) -> None:
    answers = iter([False, False, True])
    calls: list[int] = []

    def ping(folder: Path, port: int) -> bool:
        calls.append(port)
        return next(answers)

    waited = wait_engine_ready(tmp_path, 4242, timeout=10, ping=ping)
    assert calls == [4242, 4242, 4242]
    assert 0.5 <= waited < 5  # two backoff pauses: 0.25 s then 0.5 s


def test_wait_engine_ready_gives_up_with_a_hint(tmp_path: Path) -> None:
    with pytest.raises(ProvisionError) as info:
        wait_engine_ready(tmp_path, 4242, timeout=0.6, ping=lambda folder, port: False)
    assert "127.0.0.1:4242" in info.value.message
    assert "regenerate-certs" in (info.value.hint or "")


def test_wait_engine_ready_can_be_cancelled(tmp_path: Path) -> None:
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(Cancelled):
        wait_engine_ready(tmp_path, 1, timeout=10, cancel=cancel, ping=lambda f, p: False)
