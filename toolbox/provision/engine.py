"""The Docker engine in the guest: where to install it from, apt command lines, the systemd
drop-in that puts dockerd on TLS, and the readiness probe through the host forward.

Everything here that decides something is a pure function, so it is tested without a guest.
"""

from __future__ import annotations

import enum
import shlex
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import docker.errors
import requests

from toolbox.errors import Cancelled, ProvisionError, ToolboxError

if TYPE_CHECKING:
    from toolbox.engine.connect import EngineConfig

DOCKER_REPO_HOST = "download.docker.com"
DOCKER_REPO_URL = "https://download.docker.com/linux"
DOCKER_KEYRING = "/etc/apt/keyrings/docker.asc"
DOCKER_SOURCES = "/etc/apt/sources.list.d/docker.list"
PROBE_SECONDS = 5
# Docker publishes packages for these distributions and architectures (dpkg names).
DOCKER_REPO_DISTROS = ("debian", "ubuntu")
DOCKER_REPO_ARCHES = ("amd64", "arm64", "armhf", "s390x", "ppc64el")
REPO_PREREQUISITES = ("ca-certificates", "curl")  # to fetch Docker's signing key
DOCKER_CE_PACKAGES = (
    "docker-ce",
    "docker-ce-cli",
    "containerd.io",
    "docker-buildx-plugin",
    "docker-compose-plugin",
)
# Without apparmor_parser, dockerd on an AppArmor kernel cannot start any container.
DISTRO_PACKAGES = ("docker.io", "apparmor")

GUEST_TLS_DIR = "/etc/docker/toolbox"
DROPIN_PATH = "/etc/systemd/system/docker.service.d/10-toolbox.conf"
CONTAINERD_SOCKET = "/run/containerd/containerd.sock"
DOCKERD_CANDIDATES = ("/usr/bin/dockerd", "/usr/sbin/dockerd")


class EngineSource(enum.Enum):
    """Where the engine packages come from."""

    DOCKER = "docker"  # Docker's official apt repository (docker-ce)
    DISTRO = "distro"  # the distribution's own docker.io


@dataclass(frozen=True)
class OsRelease:
    """The fields of ``/etc/os-release`` that decide the engine source."""

    id: str
    version_codename: str | None
    id_like: tuple[str, ...] = ()
    pretty_name: str | None = None


def parse_os_release(text: str) -> OsRelease:
    """Parse ``/etc/os-release`` (shell-style ``KEY=value`` lines, values maybe quoted)."""
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            parts = shlex.split(value, comments=False, posix=True)
        except ValueError:
            parts = [value.strip("\"'")]
        values[key.strip()] = " ".join(parts)
    return OsRelease(
        id=values.get("ID", "linux").lower(),
        version_codename=values.get("VERSION_CODENAME") or None,
        id_like=tuple(values.get("ID_LIKE", "").lower().split()),
        pretty_name=values.get("PRETTY_NAME") or None,
    )


@dataclass(frozen=True)
class EnginePlan:
    """What to install: the source, the packages, and for Docker's repository its apt line."""

    source: EngineSource
    packages: tuple[str, ...]
    repo_line: str | None = None
    key_url: str | None = None
    reason: str = ""


def docker_repo_supported(os_release: OsRelease, arch: str) -> bool:
    return (
        os_release.id in DOCKER_REPO_DISTROS
        and os_release.version_codename is not None
        and arch in DOCKER_REPO_ARCHES
    )


def choose_engine_plan(
    os_release: OsRelease,
    arch: str,
    repo_reachable: bool,
    prefer: EngineSource | None = None,
) -> EnginePlan:
    """Docker's repository when the guest supports it and reaches it, else the distribution's
    ``docker.io`` (with ``apparmor``). ``prefer=DISTRO`` skips Docker's repository."""
    if os_release.id not in ("debian", "ubuntu") and "debian" not in os_release.id_like:
        raise ProvisionError(
            f"The guest runs {os_release.pretty_name or os_release.id}, which is not Debian-based",
            hint="Use the default Debian image (`toolbox create --image` with no value).",
        )
    distro = EnginePlan(EngineSource.DISTRO, DISTRO_PACKAGES)
    if prefer is EngineSource.DISTRO:
        return _with_reason(distro, "the distribution's docker.io was asked for")
    if not docker_repo_supported(os_release, arch):
        return _with_reason(
            distro, f"Docker publishes no packages for {os_release.id}/{arch}; using docker.io"
        )
    if not repo_reachable:
        return _with_reason(distro, f"{DOCKER_REPO_HOST} is unreachable; using docker.io")
    base = f"{DOCKER_REPO_URL}/{os_release.id}"
    line = (
        f"deb [arch={arch} signed-by={DOCKER_KEYRING}] {base} {os_release.version_codename} stable"
    )
    return EnginePlan(
        EngineSource.DOCKER,
        (*DOCKER_CE_PACKAGES, "apparmor"),
        repo_line=line,
        key_url=f"{base}/gpg",
        reason=f"installing from {DOCKER_REPO_HOST}",
    )


def _with_reason(plan: EnginePlan, reason: str) -> EnginePlan:
    return EnginePlan(plan.source, plan.packages, plan.repo_line, plan.key_url, reason)


def repo_probe_command(host: str = DOCKER_REPO_HOST, seconds: int = PROBE_SECONDS) -> str:
    """A guest shell command that exits 0 only if ``host:443`` accepts TCP within ``seconds``.

    bash's ``/dev/tcp`` needs no curl in the image; a failed DNS lookup returns at once.
    """
    return shlex.join(["timeout", str(seconds), "bash", "-c", f"exec 3<>/dev/tcp/{host}/443"])


# -- apt ------------------------------------------------------------------------------------

APT_OPTIONS = (
    "-o", "APT::Status-Fd=1",  # machine-readable progress (dlstatus/pmstatus) on stdout
    "-o", "Dpkg::Use-Pty=0",
    "-o", "DPkg::Lock::Timeout=300",  # cloud-init may hold the dpkg lock at first boot
    "-o", "Acquire::Retries=3",
)  # fmt: skip


def apt_update_argv() -> list[str]:
    return [
        "env", "DEBIAN_FRONTEND=noninteractive",
        "apt-get", "-q", *APT_OPTIONS, "-o", "Acquire::Languages=none", "update",
    ]  # fmt: skip


def apt_install_argv(packages: Sequence[str]) -> list[str]:
    return [
        "env", "DEBIAN_FRONTEND=noninteractive",
        "apt-get", "-q", "-y", *APT_OPTIONS,
        "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold",
        "install", "--no-install-recommends", *packages,
    ]  # fmt: skip


def docker_repo_setup_commands(plan: EnginePlan) -> list[str]:
    """Shell commands (run as root, after ``REPO_PREREQUISITES`` are installed) that add
    Docker's apt repository and its signing key."""
    assert plan.repo_line and plan.key_url
    return [
        "install -m 0755 -d /etc/apt/keyrings",
        shlex.join(["curl", "-fsSL", "--max-time", "60", plan.key_url, "-o", DOCKER_KEYRING]),
        f"chmod a+r {DOCKER_KEYRING}",
        f"printf '%s\\n' {shlex.quote(plan.repo_line)} > {DOCKER_SOURCES}",
    ]


def docker_repo_remove_command() -> str:
    return f"rm -f {DOCKER_SOURCES} {DOCKER_KEYRING}"


@dataclass(frozen=True)
class AptStatus:
    """One ``APT::Status-Fd`` line: a download or a dpkg progress report."""

    kind: str  # "dlstatus", "pmstatus", "pmerror", "pmconffile", "dlerror"...
    item: str
    percent: float
    message: str


def parse_apt_status(line: str) -> AptStatus | None:
    """Parse ``kind:item:percent:message``; None for apt's ordinary output lines."""
    parts = line.split(":", 3)
    if len(parts) != 4 or not parts[0].startswith(("dl", "pm", "media")):
        return None
    kind, item, percent, message = parts
    try:
        value = float(percent)
    except ValueError:
        return None
    if not 0.0 <= value <= 100.0:
        return None
    return AptStatus(kind, item, value, message.strip())


# -- systemd ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GuestTLSPaths:
    """Where the server's TLS files live in the guest."""

    ca: str = f"{GUEST_TLS_DIR}/ca.pem"
    cert: str = f"{GUEST_TLS_DIR}/server.pem"
    key: str = f"{GUEST_TLS_DIR}/server-key.pem"


def dockerd_argv(
    dockerd: str,
    port: int = 2376,
    socket_activation: bool = True,
    tls: GuestTLSPaths = GuestTLSPaths(),
) -> list[str]:
    """The dockerd command line: its unix socket plus mutual TLS on tcp ``port``.

    With ``docker.socket`` present the unix socket is handed over as ``fd://`` (as both
    Debian's and Docker's units do); otherwise dockerd makes it itself.
    """
    unix = "fd://" if socket_activation else "unix:///var/run/docker.sock"
    return [
        dockerd,
        "-H", unix,
        "-H", f"tcp://0.0.0.0:{port}",
        f"--containerd={CONTAINERD_SOCKET}",
        "--tlsverify",
        "--tlscacert", tls.ca,
        "--tlscert", tls.cert,
        "--tlskey", tls.key,
    ]  # fmt: skip


def dropin_text(
    dockerd: str,
    port: int = 2376,
    socket_activation: bool = True,
    tls: GuestTLSPaths = GuestTLSPaths(),
) -> str:
    """``10-toolbox.conf``: clear the packaged ExecStart, then start dockerd our way.

    A drop-in, not ``hosts`` in daemon.json: that clashes with the unit's own ``-H``.
    """
    return (
        "# Written by Toolbox: dockerd on its unix socket and on TLS for the host forward.\n"
        "[Service]\n"
        "ExecStart=\n"
        f"ExecStart={shlex.join(dockerd_argv(dockerd, port, socket_activation, tls))}\n"
    )


def restart_needed_command(paths: Sequence[str], unit: str = "docker.service") -> str:
    """A guest command exiting 0 when ``unit`` is active and started after every file in
    ``paths`` last changed (so it runs with them), 1 otherwise."""
    files = " ".join(shlex.quote(p) for p in paths)
    return (
        f"t=$(systemctl show -p ActiveEnterTimestamp --value {unit}); "
        f'[ -n "$t" ] && systemctl is-active --quiet {unit} || exit 1; '
        f's=$(date -d "$t" +%s) || exit 1; '
        f'for f in {files}; do m=$(stat -c %Y "$f") || exit 1; '
        '[ "$m" -le "$s" ] || exit 1; done'
    )


# -- readiness through the host forward ---------------------------------------------------------


def engine_config(machine_dir: Path, host_port: int) -> EngineConfig:
    """The engine of a machine as the host sees it: TLS on the 127.0.0.1 forward."""
    from toolbox.engine.connect import EngineConfig

    return EngineConfig.from_url(f"tcp://127.0.0.1:{host_port}", cert_path=machine_dir)


def ping_engine(machine_dir: Path, host_port: int, timeout: float = 5.0) -> bool:
    """One ping over TLS; True when the engine answers, False (never raises) otherwise."""
    # docker-py and requests errors are caught too, in case one slips through untranslated.
    failures = (ToolboxError, OSError, docker.errors.DockerException, requests.RequestException)
    try:
        client: Any = engine_config(machine_dir, host_port).connect(timeout=timeout)
    except failures:
        return False
    try:
        return bool(client.ping())
    except failures:
        return False
    finally:
        client.close()


def wait_engine_ready(
    machine_dir: Path,
    host_port: int,
    timeout: float,
    cancel: threading.Event | None = None,
    ping: Callable[[Path, int], bool] | None = None,
) -> float:
    """Ping until the engine answers over TLS; returns the seconds waited.

    Backs off from 0.25 s to 2 s; raises ``ProvisionError`` after ``timeout``.
    """
    probe = ping or ping_engine
    started = time.monotonic()
    delay = 0.25
    while True:
        if cancel is not None and cancel.is_set():
            raise Cancelled("Cancelled while waiting for the engine")
        if probe(machine_dir, host_port):
            return time.monotonic() - started
        left = timeout - (time.monotonic() - started)
        if left <= 0:
            raise ProvisionError(
                f"The engine did not answer over TLS on 127.0.0.1:{host_port} within {timeout:g} s",
                hint="Look at `journalctl -u docker` in the guest (`toolbox ssh`), then run "
                "`toolbox regenerate-certs` if the certificates are at fault.",
            )
        if cancel is not None:
            cancel.wait(min(delay, left))
        else:
            time.sleep(min(delay, left))
        delay = min(delay * 2, 2.0)
