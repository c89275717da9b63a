"""Compose projects: containers grouped by their compose labels, project actions on an
``EngineClient``, and ``up``/``down`` through the compose CLI.

Grouping works on the list records the event cache already holds (labels come with
``GET /containers/json``), so it costs no request. Project actions list the project's
containers afresh with one label-filtered request, so they also reach containers the caller
has not seen yet. The compose CLI (``docker compose`` plugin, else ``docker-compose``) runs in
its own process group with the engine's ``DOCKER_*`` settings; its output is streamed line by
line and ``cancel()`` terminates the whole group.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from toolbox.engine.records import Container, ContainerState, LogLine
from toolbox.errors import Cancelled, CommandError, NotFoundError, ToolboxError

if TYPE_CHECKING:
    from toolbox.engine.client import EngineClient, LogStream
    from toolbox.engine.connect import EngineConfig

PROJECT_LABEL = "com.docker.compose.project"
SERVICE_LABEL = "com.docker.compose.service"
WORKING_DIR_LABEL = "com.docker.compose.project.working_dir"
CONFIG_FILES_LABEL = "com.docker.compose.project.config_files"
NUMBER_LABEL = "com.docker.compose.container-number"

# Variables that make requests (docker-compose 1.x) trust another CA than DOCKER_CERT_PATH's.
CA_OVERRIDES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
INSTALL_HINT = (
    "Install Docker Compose: the `docker compose` plugin (package docker-compose-plugin, or "
    "Docker Desktop), or the standalone `docker-compose` (Debian/Ubuntu: apt install "
    "docker-compose; Homebrew: brew install docker-compose), then try again."
)


# --------------------------------------------------------------------------------------
# Grouping


class ProjectState(Enum):
    """A project's state from its containers' states."""

    RUNNING = "running"  # every container running
    PARTIAL = "partial"  # some running
    STOPPED = "stopped"  # none running


@dataclass(frozen=True)
class ComposeProject:
    """One compose project as the containers' labels describe it."""

    name: str
    containers: tuple[Container, ...]
    working_dir: str | None
    config_files: tuple[str, ...]

    @property
    def services(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(service_of(c) for c in self.containers))

    @property
    def running(self) -> int:
        return sum(1 for c in self.containers if c.state.is_running)

    @property
    def state(self) -> ProjectState:
        running = self.running
        if running == 0:
            return ProjectState.STOPPED
        return ProjectState.RUNNING if running == len(self.containers) else ProjectState.PARTIAL

    @property
    def summary(self) -> str:
        """ "running 2/3", "running 3/3", "stopped 0/3"."""
        word = "stopped" if self.state is ProjectState.STOPPED else "running"
        return f"{word} {self.running}/{len(self.containers)}"


def project_of(container: Container) -> str | None:
    return container.labels.get(PROJECT_LABEL) or None


def service_of(container: Container) -> str:
    """The compose service, else the container's name."""
    return container.labels.get(SERVICE_LABEL) or container.name


def container_number(container: Container) -> int:
    value = container.labels.get(NUMBER_LABEL, "")
    return int(value) if value.isdigit() else 0


def group_projects(
    containers: Iterable[Container],
) -> tuple[list[ComposeProject], list[Container]]:
    """(projects by name, their containers by service and number; the containers of no
    project, in the given order)."""
    members: dict[str, list[Container]] = {}
    loose: list[Container] = []
    for c in containers:
        project = project_of(c)
        if project is None:
            loose.append(c)
        else:
            members.setdefault(project, []).append(c)
    projects = []
    for name in sorted(members):
        items = sorted(members[name], key=lambda c: (service_of(c), container_number(c), c.name))
        working_dir = next((c.labels[WORKING_DIR_LABEL] for c in items if c.labels.get(
            WORKING_DIR_LABEL)), None)  # fmt: skip
        files = next((c.labels[CONFIG_FILES_LABEL] for c in items if c.labels.get(
            CONFIG_FILES_LABEL)), "")  # fmt: skip
        config_files = tuple(f for f in files.split(",") if f)
        projects.append(ComposeProject(name, tuple(items), working_dir, config_files))
    return projects, loose


def folder_on_host(project: ComposeProject, exists: Callable[[str], bool] = os.path.isdir) -> bool:
    """True when the project's working directory exists on this computer (it is a path on
    the engine's client that ran compose, which may be another machine)."""
    return bool(project.working_dir) and exists(project.working_dir or "")


# --------------------------------------------------------------------------------------
# Project actions on the engine


def _label_filter(project: str) -> dict[str, Any]:
    return {"label": f"{PROJECT_LABEL}={project}"}


def project_containers(client: EngineClient, project: str) -> list[Container]:
    """The project's containers now (one label-filtered list request)."""
    raw = client._call(
        "list the project's containers",
        project,
        client.api.containers,
        all=True,
        filters=_label_filter(project),
    )
    return [Container.from_api(c) for c in raw]


def project_networks(client: EngineClient, project: str) -> list[dict[str, Any]]:
    """The networks compose made for the project (labelled with it)."""
    raw = client._call(
        "list the project's networks", project, client.api.networks, filters=_label_filter(project)
    )
    return list(raw or ())


def _require(client: EngineClient, project: str) -> list[Container]:
    found = project_containers(client, project)
    if not found:
        raise NotFoundError(
            f"Compose project {project} has no containers",
            hint="It was removed meanwhile; bring it up again from its compose file.",
        )
    return found


def start_project(client: EngineClient, project: str) -> list[str]:
    """Start the project's stopped containers; returns their names."""
    done = []
    for c in _require(client, project):
        if c.state in (ContainerState.CREATED, ContainerState.EXITED, ContainerState.DEAD):
            client.start(c.id)
            done.append(c.name)
    return done


def stop_project(client: EngineClient, project: str, timeout: int = 10) -> list[str]:
    """Stop the project's running containers; returns their names."""
    done = []
    for c in _require(client, project):
        if c.state.is_running:
            client.stop(c.id, timeout=timeout)
            done.append(c.name)
    return done


def restart_project(client: EngineClient, project: str, timeout: int = 10) -> list[str]:
    done = []
    for c in _require(client, project):
        if c.state is not ContainerState.REMOVING:
            client.restart(c.id, timeout=timeout)
            done.append(c.name)
    return done


@dataclass(frozen=True)
class RemovedProject:
    containers: tuple[str, ...]
    networks: tuple[str, ...]


def remove_project(client: EngineClient, project: str, volumes: bool = False) -> RemovedProject:
    """Remove the project's containers (running ones forced) and then its networks, like
    ``compose down`` without a compose file. Named volumes are kept."""
    containers = []
    for c in project_containers(client, project):
        client.remove(c.id, force=c.state.is_running, volumes=volumes)
        containers.append(c.name)
    networks = []
    for net in project_networks(client, project):
        client.remove_network(str(net["Id"]))
        networks.append(str(net.get("Name") or net["Id"]))
    if not containers and not networks:
        raise NotFoundError(
            f"Compose project {project} has no containers or networks",
            hint="It was removed meanwhile.",
        )
    return RemovedProject(tuple(containers), tuple(networks))


# --------------------------------------------------------------------------------------
# Aggregated logs


@dataclass(frozen=True)
class ServiceLine:
    """One log line of a project's service."""

    service: str
    container: str
    line: LogLine


class ProjectLogs:
    """Follows the logs of several containers at once, each on its own reader thread, and
    hands every line to ``on_lines`` (from those threads). ``close()`` from any thread stops
    all of them."""

    def __init__(self, on_lines: Callable[[list[ServiceLine]], None]):
        self.on_lines = on_lines
        self._streams: list[LogStream] = []
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()
        self._lock = threading.Lock()

    def follow(
        self, client: EngineClient, containers: Sequence[Container], tail: int = 200
    ) -> None:
        """Open one follow stream per container (on the calling, worker thread) and start
        reading them."""
        for c in containers:
            if self._closed.is_set():
                return
            stream = client.follow_logs(c.id, tail=tail)
            with self._lock:
                if self._closed.is_set():
                    stream.close()
                    return
                self._streams.append(stream)
            thread = threading.Thread(
                target=self._read, args=(stream, service_of(c), c.name), daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _read(self, stream: LogStream, service: str, name: str) -> None:
        try:
            for batch in stream.batches():
                if self._closed.is_set():
                    return
                self.on_lines([ServiceLine(service, name, line) for line in batch])
        except ToolboxError:
            if not self._closed.is_set():
                raise

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.close()

    def join(self, timeout: float = 5.0) -> None:
        for thread in self._threads:
            thread.join(timeout)


# --------------------------------------------------------------------------------------
# The compose CLI


@dataclass(frozen=True)
class ComposeCLI:
    """How to call compose: ``("docker", "compose")`` or ``("/usr/bin/docker-compose",)``."""

    prefix: tuple[str, ...]

    @property
    def plugin(self) -> bool:
        return len(self.prefix) == 2

    @property
    def label(self) -> str:
        return "docker compose" if self.plugin else "docker-compose"


def find_compose(
    which: Callable[[str], str | None] = shutil.which,
    path: str | None = None,
    probe: Callable[[Sequence[str]], bool] | None = None,
) -> ComposeCLI | None:
    """The ``docker compose`` plugin when ``docker compose version`` works, else the
    standalone ``docker-compose``, else None. ``path`` replaces ``$PATH`` for the search."""

    def find(name: str) -> str | None:
        if path is None:
            return which(name)
        return shutil.which(name, path=path)

    def works(argv: Sequence[str]) -> bool:
        try:
            done = subprocess.run(
                list(argv), capture_output=True, timeout=20, check=False, stdin=subprocess.DEVNULL
            )
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.returncode == 0

    check = probe or works
    docker = find("docker")
    if docker is not None and check([docker, "compose", "version"]):
        return ComposeCLI((docker, "compose"))
    standalone = find("docker-compose")
    if standalone is not None:
        return ComposeCLI((standalone,))
    return None


def require_compose(path: str | None = None) -> ComposeCLI:
    found = find_compose(path=path)
    if found is None:
        raise NotFoundError(
            "Docker Compose is not installed: neither `docker compose` nor `docker-compose` "
            "was found",
            hint=INSTALL_HINT,
        )
    return found


def compose_env(config: EngineConfig, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The child's environment: ``base`` (default: ours) pointed at the engine of ``config``
    the way ``toolbox env`` does it, without the CA overrides that break TLS in requests."""
    env = dict(os.environ if base is None else base)
    for name in (*CA_OVERRIDES, "DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_TLS"):
        env.pop(name, None)
    env.pop("DOCKER_CERT_PATH", None)
    env.pop("DOCKER_CONTEXT", None)
    if config.docker_config is not None:
        env["DOCKER_CONFIG"] = str(config.docker_config)
    if config.context:
        env["DOCKER_CONTEXT"] = config.context
        return env
    env["DOCKER_HOST"] = config.url
    if config.uses_tls:
        if config.tls_verify:
            env["DOCKER_TLS_VERIFY"] = "1"
        else:
            env["DOCKER_TLS"] = "1"
        cert_dir = config.cert_dir
        if cert_dir is None and (config.tls_ca or config.tls_cert):
            raise ToolboxError(
                "Compose cannot use this engine's TLS files: they are not ca.pem, cert.pem "
                "and key.pem in one folder",
                hint="Connect through a Docker context or a DOCKER_CERT_PATH folder.",
            )
        if cert_dir is not None:
            env["DOCKER_CERT_PATH"] = str(cert_dir)
    return env


def compose_argv(
    cli: ComposeCLI,
    action: str,
    files: Sequence[str] = (),
    project: str | None = None,
    extra: Sequence[str] = (),
) -> list[str]:
    """``[compose…, -f FILE…, -p PROJECT, action, extra…]``; ``up`` runs detached."""
    argv = list(cli.prefix)
    for f in files:
        argv += ["-f", f]
    if project:
        argv += ["-p", project]
    argv.append(action)
    if action == "up" and "-d" not in extra and "--detach" not in extra:
        argv.append("-d")
    argv += list(extra)
    return argv


@dataclass(frozen=True)
class ComposeResult:
    argv: tuple[str, ...]
    exit_code: int
    output: str


class ComposeRun:
    """One compose command in its own process group, output (stdout and stderr together)
    handed line by line to ``on_line``. ``run()`` blocks (call it on a worker);
    ``cancel()`` from any thread terminates the group (SIGTERM, SIGKILL after
    ``grace`` seconds)."""

    def __init__(
        self,
        argv: Sequence[str],
        env: Mapping[str, str],
        on_line: Callable[[str], None] | None = None,
        cwd: str | None = None,
        grace: float = 5.0,
    ):
        self.argv = tuple(argv)
        self.env = dict(env)
        self.on_line = on_line
        self.cwd = cwd
        self.grace = grace
        self.proc: subprocess.Popen[bytes] | None = None
        self._cancelled = threading.Event()
        self._lock = threading.Lock()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def run(self) -> ComposeResult:
        """Run to the end. Raises ``Cancelled`` after ``cancel()``, ``CommandError`` (with the
        output's tail) when compose fails."""
        kwargs: dict[str, Any] = {}
        if sys.platform == "win32":
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP
        else:
            kwargs["start_new_session"] = True
        with self._lock:
            if self._cancelled.is_set():
                raise Cancelled("Cancelled before compose started")
            try:
                self.proc = subprocess.Popen(
                    list(self.argv),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    env=self.env,
                    cwd=self.cwd,
                    **kwargs,
                )
            except OSError as exc:
                raise CommandError(
                    self.argv, 127, stderr=str(exc), hint=INSTALL_HINT,
                    message=f"Could not start {self.argv[0]}: {exc.strerror or exc}",
                ) from exc  # fmt: skip
        proc = self.proc
        lines: list[str] = []
        assert proc.stdout is not None
        for raw in proc.stdout:
            text = raw.decode("utf-8", "replace").rstrip("\r\n")
            lines.append(text)
            if self.on_line is not None:
                self.on_line(text)
        code = proc.wait()
        output = "\n".join(lines)
        if self._cancelled.is_set():
            raise Cancelled(f"Cancelled: {' '.join(self.argv)}")
        if code != 0:
            raise CommandError(
                self.argv,
                code,
                stdout=output,
                hint="Read compose's output above; fix the compose file or the engine, then retry.",
            )
        return ComposeResult(self.argv, code, output)

    def cancel(self) -> None:
        """Terminate compose and everything it started (its process group)."""
        with self._lock:
            self._cancelled.set()
            proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        self._signal(proc, terminate=True)
        try:
            proc.wait(self.grace)
        except subprocess.TimeoutExpired:
            self._signal(proc, terminate=False)

    @staticmethod
    def _signal(proc: subprocess.Popen[bytes], terminate: bool) -> None:
        try:
            if sys.platform == "win32":
                proc.terminate() if terminate else proc.kill()
            else:
                os.killpg(proc.pid, signal.SIGTERM if terminate else signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def compose_run(
    config: EngineConfig,
    action: str,
    files: Sequence[str],
    project: str | None = None,
    on_line: Callable[[str], None] | None = None,
    extra: Sequence[str] = (),
    path: str | None = None,
    base_env: Mapping[str, str] | None = None,
) -> ComposeRun:
    """A ``ComposeRun`` of ``action`` (``up``/``down``/…) on ``files`` against the engine of
    ``config``, in the first file's folder. Raises ``NotFoundError`` (what to install) when
    there is no compose."""
    cli = require_compose(path=path)
    env = compose_env(config, base_env)
    if path is not None:
        env["PATH"] = path
    cwd = os.path.dirname(os.path.abspath(files[0])) if files else None
    return ComposeRun(compose_argv(cli, action, files, project, extra), env, on_line, cwd=cwd)
