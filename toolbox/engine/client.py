"""``EngineClient``: the engine's containers, images, volumes and networks as typed records,
over docker-py's low-level ``APIClient`` only.

List paths make one request each (never an inspect per row). The engine's errors come out as
``EngineError`` / ``EngineUnreachable`` / ``NotFoundError`` in plain words with a hint.
An ``EngineClient`` belongs to one thread; make one per worker with ``EngineConfig.connect()``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import docker
import requests
from docker import auth

from toolbox.engine.connect import EngineConfig, unreachable
from toolbox.engine.parse import (
    EnvVar,
    ImageRef,
    PortSpec,
    RestartPolicy,
    VolumeSpec,
    parse_image_ref,
)
from toolbox.engine.records import (
    Container,
    EngineInfo,
    Event,
    Image,
    LogLine,
    Network,
    PruneResult,
    PullProgress,
    RunSpec,
    Volume,
    parse_timestamp,
)
from toolbox.engine.streams import (
    STREAM_ERRORS,
    CancelWatch,
    ClosableStream,
    FrameDecoder,
    JSONStreamDecoder,
    LogDecoder,
    ProgressTracker,
    response_socket,
)
from toolbox.errors import (
    Cancelled,
    EngineError,
    EngineUnreachable,
    NotFoundError,
    ToolboxError,
)

T = TypeVar("T")
ProgressCallback = Callable[[PullProgress], None]

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


# --------------------------------------------------------------------------------------
# The engine's errors in plain words


def _first(pattern: str, text: str) -> str | None:
    match = re.search(pattern, text)
    return match.group(1) if match else None


def translate_api_error(
    exc: docker.errors.APIError, action: str, subject: str | None = None
) -> ToolboxError:
    """Turn the engine's refusal of ``action`` on ``subject`` into a ToolboxError with a hint;
    the engine's own text goes to ``details``."""
    text = str(exc.explanation or exc)
    lowered = text.lower()
    what = f" {subject}" if subject else ""
    status = exc.status_code or 0

    if "port is already allocated" in lowered or "address already in use" in lowered:
        port = _first(r":(\d+)(?: failed|: bind|\D*$)", text) or "?"
        return EngineError(
            f"Port {port} is already in use on the engine's host",
            hint=f"Choose another host port, or stop whatever uses port {port}.",
            details=text,
        )
    if "iptables failed" in lowered or "programming external connectivity" in lowered:
        return EngineError(
            "The engine could not set up the port forwarding for the container",
            hint="Restart the engine (stop and start the machine); its firewall rules are "
            "out of step.",
            details=text,
        )
    if "is already in use by container" in lowered:
        name = _first(r'name "/?([^"]+)" is already in use', text) or subject or "?"
        return EngineError(
            f"The name {name!r} is already used by another container",
            hint="Pick another name, or remove or rename the other container.",
            details=text,
        )
    if "no such image" in lowered or isinstance(exc, docker.errors.ImageNotFound):
        image = _first(r"[Nn]o such image: (\S+)", text) or subject or "?"
        return NotFoundError(
            f"Image {image} is not on the engine",
            hint=f"Pull it first (`docker pull {image}` or Images > Pull), or check the name.",
            details=text,
        )
    if (
        "pull access denied" in lowered
        or "manifest unknown" in lowered
        or "repository does not exist" in lowered
        or ("not found" in lowered and "manifest" in lowered)
    ):
        return NotFoundError(
            f"Image{what} was not found in its registry",
            hint="Check the name and tag; a private image needs `docker login` first.",
            details=text,
        )
    if "no such container" in lowered:
        return NotFoundError(
            f"Container{what} does not exist",
            hint="It may have been removed; refresh the list.",
            details=text,
        )
    if "no such volume" in lowered or ("volume" in lowered and status == 404):
        return NotFoundError(f"Volume{what} does not exist", hint="Refresh the list.", details=text)
    if "network" in lowered and ("not found" in lowered or status == 404):
        return NotFoundError(
            f"Network{what} does not exist", hint="Refresh the list.", details=text
        )
    if "cannot remove a running container" in lowered or ("stop the container before" in lowered):
        return EngineError(
            f"Container{what} is running",
            hint="Stop it first, or remove it with force.",
            details=text,
        )
    if "volume is in use" in lowered:
        return EngineError(
            f"Volume{what} is in use by a container",
            hint="Remove the containers that use it first.",
            details=text,
        )
    if "has active endpoints" in lowered:
        return EngineError(
            f"Network{what} still has containers attached",
            hint="Disconnect or remove the containers on it first.",
            details=text,
        )
    if (
        "must force" in lowered
        or "must be forced" in lowered
        or "image is being used" in lowered
        or "is using its referenced image" in lowered
    ):
        return EngineError(
            f"Image{what} is used by a container or has several tags",
            hint="Remove the containers that use it, or remove it with force.",
            details=text,
        )
    if "is not running" in lowered:
        return EngineError(f"Container{what} is not running", hint="Start it first.", details=text)
    if "is already paused" in lowered or "is paused" in lowered:
        return EngineError(f"Container{what} is paused", hint="Unpause it first.", details=text)
    if "is not paused" in lowered:
        return EngineError(f"Container{what} is not paused", hint=None, details=text)
    if (
        "invalid port" in lowered
        or "invalid hostport" in lowered
        or "invalid containerport" in lowered
    ):
        return EngineError(
            f"The engine refused a port setting: {text}",
            hint="Use port numbers from 1 to 65535.",
            details=text,
        )
    if "conflicting options" in lowered or "'autoremove' container with restart" in lowered:
        return EngineError(
            f"Conflicting settings: {text.split(':', 1)[-1].strip()}",
            hint="Auto-remove cannot be combined with a restart policy; turn one off.",
            details=text,
        )
    if any(
        s in lowered for s in ("connection refused", "no such host", "i/o timeout", "tls handshake")
    ):
        return EngineError(
            f"The registry for{what or ' the image'} cannot be reached",
            hint="Check the registry address and that the machine has network access.",
            details=text,
        )
    if status == 404:
        return NotFoundError(
            f"{action.capitalize()}: not found", hint="Refresh the list.", details=text
        )
    return EngineError(
        f"The engine refused to {action}: {text}",
        hint="The engine's message above says what it refused.",
        details=text,
    )


# --------------------------------------------------------------------------------------
# Streams


class LogStream(ClosableStream):
    """A container's log lines as they are written; ``close()`` from any thread ends the
    iteration promptly. Never holds more than one read's worth of output."""

    def __init__(
        self, response: requests.Response, tty: bool, timestamps: bool, config: EngineConfig
    ):
        super().__init__(response)
        self._decoder = LogDecoder(tty, timestamps)
        self._config = config

    def __iter__(self) -> Iterator[LogLine]:
        """Ends when the container's output ends (or on ``close()``); raises
        ``EngineUnreachable`` if the connection to the engine drops."""
        for batch in self.batches():
            yield from batch

    def batches(self) -> Iterator[list[LogLine]]:
        """The same lines, a list per read of the stream (all that had arrived): a reader
        that hands lines on in batches holds the GIL far less than one going line by line."""
        for chunk in self.raw():
            lines = self._decoder.feed(chunk)
            if lines:
                yield lines
        if not self.closed:
            rest = self._decoder.finish()
            if rest:
                yield rest

    def decoder(self) -> LogDecoder:
        """A fresh decoder for the bytes of ``raw()`` (feed them, then ``finish()``)."""
        return LogDecoder(self._decoder.tty, self._decoder.timestamps)

    def raw(self) -> Iterator[bytes]:
        """The stream's bytes, undecoded, as they arrive: a reader thread that hands them to
        another thread to decode holds the GIL only to pass them on. Same ends and errors as
        iterating the lines."""
        try:
            yield from self._chunks()
        except STREAM_ERRORS as exc:
            raise EngineUnreachable(
                f"Lost the log stream from {self._config.describe()}",
                hint="The engine stopped or the connection dropped; open the logs again.",
                details=str(exc),
            ) from exc


class EventStream(ClosableStream):
    """The engine's events as typed ``Event``s. The engine never ends this stream by itself,
    so an end that ``close()`` did not cause raises ``EngineUnreachable``."""

    def __init__(self, response: requests.Response, config: EngineConfig):
        super().__init__(response)
        self._config = config

    def __iter__(self) -> Iterator[Event]:
        decoder = JSONStreamDecoder()
        try:
            for chunk in self._chunks():
                for message in decoder.feed(chunk):
                    yield Event.from_api(message)
        except STREAM_ERRORS as exc:
            raise EngineUnreachable(
                f"Lost the event stream of {self._config.describe()}",
                hint="The engine stopped or the connection dropped; it will be retried.",
                details=str(exc),
            ) from exc
        if not self.closed:
            raise EngineUnreachable(
                f"The engine at {self._config.url} ended its event stream",
                hint="The engine is probably restarting; it will be retried.",
            )


class _JSONMessages(ClosableStream):
    """A pull/push response's JSON messages."""

    def __iter__(self) -> Iterator[dict[str, Any]]:
        decoder = JSONStreamDecoder()
        for chunk in self._chunks():
            yield from decoder.feed(chunk)
        if not self.closed:
            yield from decoder.finish()


class ExecSession:
    """An interactive exec (a shell in a container) over the engine's hijacked connection,
    for an embedded terminal. Call ``recv`` with short timeouts from one reader thread;
    ``send``/``resize``/``close`` may come from another."""

    def __init__(
        self,
        api: docker.APIClient,
        exec_id: str,
        response: requests.Response,
        sock: socket.socket,
        tty: bool,
        pending: bytes = b"",
    ):
        self.exec_id = exec_id
        self.tty = tty
        self._api = api
        self._response = response
        self._sock = sock
        self._pending = pending
        self._frames = None if tty else FrameDecoder()
        self._eof = False
        self._closed = False
        # OpenSSL objects must not be read and written at once from two threads.
        self._tls_lock = threading.Lock() if isinstance(sock, ssl.SSLSocket) else None

    @property
    def eof(self) -> bool:
        """True once the process ended (or the session was closed)."""
        return self._eof or self._closed

    def send(self, data: bytes) -> None:
        if self._closed:
            raise EngineError("The terminal session is closed")
        with self._tls_lock or contextlib.nullcontext():
            self._sock.settimeout(None)
            self._sock.sendall(data)

    def recv(self, timeout: float | None = None) -> bytes:
        """Output bytes, or b"" when nothing came within ``timeout`` or at the end (see
        ``eof``)."""
        if self._pending:
            data, self._pending = self._pending, b""
            return self._decode(data)
        if self.eof:
            return b""
        with self._tls_lock or contextlib.nullcontext():
            try:
                self._sock.settimeout(timeout)
                data = self._sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                return b""
            except OSError:
                if self._closed:
                    return b""
                data = b""
        if not data:
            self._eof = True
            return b""
        return self._decode(data)

    def _decode(self, data: bytes) -> bytes:
        return data if self._frames is None else self._frames.feed(data)

    def resize(self, rows: int, cols: int) -> None:
        """Tell the process its terminal size changed."""
        try:
            self._api.exec_resize(self.exec_id, height=rows, width=cols)
        except docker.errors.APIError as exc:
            if not self.eof:
                raise translate_api_error(exc, "resize the terminal") from exc
        except (requests.exceptions.RequestException, OSError) as exc:
            if not self.eof:
                raise EngineUnreachable(
                    "Lost the engine while resizing the terminal", details=str(exc)
                ) from exc

    def exit_code(self) -> int | None:
        """The process's exit code once it ended, else None."""
        try:
            info = self._api.exec_inspect(self.exec_id)
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
            return None
        return None if info.get("Running") else info.get("ExitCode")

    def close(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            socket.socket.shutdown(self._sock, socket.SHUT_RDWR)
        with contextlib.suppress(*STREAM_ERRORS):
            self._sock.close()
        with contextlib.suppress(*STREAM_ERRORS):
            self._response.close()


# --------------------------------------------------------------------------------------
# The client


class EngineClient:
    """One engine's API for one thread. Create with ``EngineConfig.connect()``."""

    def __init__(self, config: EngineConfig, api: docker.APIClient):
        self.config = config
        self.api = api

    # ---------------------------------------------------------------- plumbing

    def _call(
        self, action: str, subject: str | None, fn: Callable[..., T], *args: Any, **kwargs: Any
    ) -> T:
        """Run one API call, translating every docker/requests error."""
        try:
            return fn(*args, **kwargs)
        except docker.errors.APIError as exc:
            raise translate_api_error(exc, action, subject) from exc
        except requests.exceptions.ReadTimeout as exc:
            raise EngineError(
                f"The engine did not answer in time while trying to {action}",
                hint="The engine may be busy or the machine overloaded; retry in a moment.",
                details=str(exc),
            ) from exc
        except (
            requests.exceptions.RequestException,
            docker.errors.DockerException,
            OSError,
        ) as exc:
            raise unreachable(self.config, exc) from exc

    def close(self) -> None:
        self.api.close()

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def api_version(self) -> str:
        return str(self.api.api_version)

    def ping(self) -> bool:
        """True when the engine answers; never raises."""
        try:
            return bool(self.api.ping())
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError):
            return False

    def info(self) -> EngineInfo:
        return self.info_and_time()[0]

    def system_time(self) -> dt.datetime:
        """The engine's clock (which ``events(since=...)`` is compared against)."""
        return self.info_and_time()[1]

    def info_and_time(self) -> tuple[EngineInfo, dt.datetime]:
        """Engine info and the engine's clock from one request."""
        raw = self._call("read the engine's info", None, self.api.info)
        when = parse_timestamp(raw.get("SystemTime")) or dt.datetime.now(dt.UTC)
        return EngineInfo.from_api(raw, self.api_version), when

    # ---------------------------------------------------------------- containers

    def containers(self, all: bool = True) -> list[Container]:
        """Every container (or only running ones), one request."""
        now = dt.datetime.now(dt.UTC)
        raw = self._call("list containers", None, self.api.containers, all=all)
        return [Container.from_api(c, now) for c in raw]

    def container(self, id_or_name: str) -> Container:
        """One container by id, id prefix or name, from the list API (not inspect)."""
        now = dt.datetime.now(dt.UTC)
        found = self._call(
            "find the container",
            id_or_name,
            self.api.containers,
            all=True,
            filters={"id": id_or_name},
        )
        # The engine's id filter matches anywhere in the id; an id is matched by its prefix.
        found = [c for c in found if str(c.get("Id", "")).startswith(id_or_name)]
        if not found:
            name = id_or_name.lstrip("/")
            found = self._call(
                "find the container",
                id_or_name,
                self.api.containers,
                all=True,
                filters={"name": name},
            )
            # The name filter matches substrings; keep the exact name only.
            found = [c for c in found if f"/{name}" in (c.get("Names") or ())]
        if not found:
            raise NotFoundError(
                f"Container {id_or_name} does not exist",
                hint="It may have been removed; refresh the list.",
            )
        return Container.from_api(found[0], now)

    def inspect_container(self, id: str) -> dict[str, Any]:
        """The engine's full JSON for the inspect view."""
        return dict(self._call("inspect the container", id, self.api.inspect_container, id))

    def start(self, id: str) -> None:
        self._call("start the container", id, self.api.start, id)

    def stop(self, id: str, timeout: int = 10) -> None:
        self._call("stop the container", id, self.api.stop, id, timeout=timeout)

    def restart(self, id: str, timeout: int = 10) -> None:
        self._call("restart the container", id, self.api.restart, id, timeout=timeout)

    def pause(self, id: str) -> None:
        self._call("pause the container", id, self.api.pause, id)

    def unpause(self, id: str) -> None:
        self._call("unpause the container", id, self.api.unpause, id)

    def kill(self, id: str, signal: str = "KILL") -> None:
        self._call("kill the container", id, self.api.kill, id, signal=signal)

    def remove(self, id: str, force: bool = False, volumes: bool = False) -> None:
        self._call(
            "remove the container", id, self.api.remove_container, id, v=volumes, force=force
        )

    def rename(self, id: str, name: str) -> None:
        self._call("rename the container", id, self.api.rename, id, name)

    def wait(self, id: str, timeout: float | None = None) -> int:
        """Block until the container stops; its exit code."""
        result = self._call("wait for the container", id, self.api.wait, id, timeout=timeout)
        return int(result.get("StatusCode", -1))

    # ---------------------------------------------------------------- run / recreate

    def run(self, spec: RunSpec) -> str:
        """Create and start a container like ``docker run -d``; returns its id. If it cannot
        start, the created container is removed again so the name stays free."""
        config = container_config(spec)
        new_id = self._create(config, spec.name, spec.image)
        try:
            self.start(new_id)
        except ToolboxError:
            with contextlib.suppress(ToolboxError):
                self.remove(new_id, force=True)
            raise
        return new_id

    def _create(self, config: dict[str, Any], name: str | None, image: str) -> str:
        result = self._call(
            "create the container",
            name or image,
            self.api.create_container_from_config,
            config,
            name=name or None,
        )
        return str(result["Id"])

    def spec_of(self, id: str) -> RunSpec:
        """The settings of an existing container as a ``RunSpec`` (for the edit form): only
        what the user set, not what the image provides."""
        info = self.inspect_container(id)
        image_config = self._image_config(str(info.get("Image") or ""))
        return spec_from_inspect(info, image_config)

    def _image_config(self, image_id: str) -> dict[str, Any]:
        try:
            return dict(self.api.inspect_image(image_id).get("Config") or {})
        except (docker.errors.DockerException, requests.exceptions.RequestException):
            return {}

    def recreate(self, id: str, spec: RunSpec) -> str:
        """Replace a container with one made from ``spec`` (other settings carried over, and
        its anonymous volumes kept). The old container is kept, renamed aside, until the new
        one runs; if creating or starting the new one fails, the old one gets its name back
        and is started again if it was running. Returns the new id.

        A container with auto-remove that is running is removed by the engine when stopped,
        so it cannot be brought back if the new one fails to start.
        """
        old = self.inspect_container(id)
        old_id = str(old["Id"])
        old_name = str(old.get("Name") or "").lstrip("/")
        was_running = bool((old.get("State") or {}).get("Running"))
        image_config = self._image_config(str(old.get("Image") or ""))
        config, extra_networks = recreate_config(old, image_config, spec)
        new_name = spec.name or old_name
        aside = f"{old_name}-old-{old_id[:12]}"
        self.rename(old_id, aside)
        try:
            new_id = self._create(config, new_name, spec.image)
        except ToolboxError:
            self._restore(old_id, old_name, was_running=False)
            raise
        try:
            for network, endpoint in extra_networks.items():
                self._call(
                    "connect the network",
                    network,
                    self.api.connect_container_to_network,
                    new_id,
                    network,
                    aliases=endpoint.get("Aliases") or None,
                )
            if was_running:
                self.stop(old_id)
            self.start(new_id)
        except ToolboxError:
            with contextlib.suppress(ToolboxError):
                self.remove(new_id, force=True)
            self._restore(old_id, old_name, was_running)
            raise
        self.remove(old_id, force=True, volumes=False)
        return new_id

    def _restore(self, old_id: str, name: str, was_running: bool) -> None:
        with contextlib.suppress(ToolboxError):
            self.rename(old_id, name)
        if was_running:
            with contextlib.suppress(ToolboxError):
                self.start(old_id)

    # ---------------------------------------------------------------- logs

    def _log_response(
        self,
        id: str,
        follow: bool,
        tail: int | None,
        timestamps: bool,
        since: Any = None,
    ) -> tuple[requests.Response, bool]:
        params: dict[str, Any] = {
            "stdout": 1,
            "stderr": 1,
            "follow": 1 if follow else 0,
            "timestamps": 1 if timestamps else 0,
            "tail": "all" if tail is None else str(max(0, int(tail))),
        }
        if since is not None:
            params["since"] = _unix_time(since)

        def request() -> requests.Response:
            response = self.api._get(
                self.api._url("/containers/{0}/logs", id),
                params=params,
                stream=True,
                timeout=None if follow else self.api.timeout,
            )
            self.api._raise_for_status(response)
            return response

        response = self._call("read the logs", id, request)
        kind = response.headers.get("Content-Type", "")
        if kind.startswith(RAW_STREAM):
            tty = True
        elif kind.startswith(MULTIPLEXED_STREAM):
            tty = False
        else:  # engines before API 1.42 do not say; ask the container
            tty = bool((self.inspect_container(id).get("Config") or {}).get("Tty"))
        return response, tty

    def logs(
        self,
        id: str,
        tail: int | None = 1000,
        timestamps: bool = False,
        since: dt.datetime | float | None = None,
    ) -> list[LogLine]:
        """The last ``tail`` lines (None: all) written so far."""
        response, tty = self._log_response(id, False, tail, timestamps, since)
        return list(LogStream(response, tty, timestamps, self.config))

    def follow_logs(
        self,
        id: str,
        tail: int | None = 1000,
        timestamps: bool = False,
        since: dt.datetime | float | None = None,
    ) -> LogStream:
        """The last ``tail`` lines (None: all; only those written from ``since`` when given),
        then new ones as they come; iterate it on a worker thread and ``close()`` it from
        anywhere."""
        response, tty = self._log_response(id, True, tail, timestamps, since)
        return LogStream(response, tty, timestamps, self.config)

    # ---------------------------------------------------------------- exec

    def exec_shell_argv(self, id: str, shell: str = "sh", docker: str = "docker") -> list[str]:
        """The ``docker exec -it`` command line that opens ``shell`` in the container from a
        terminal, with the options that reach this engine."""
        return [docker, *self.config.docker_cli_args(), "exec", "-it", id, shell]

    def exec_env(self) -> dict[str, str]:
        """The ``DOCKER_*`` variables that point a terminal's ``docker`` at this engine. Empty
        values mean "unset" to the Docker CLI, so the result can be merged into any env."""
        cfg = self.config
        env = {
            "DOCKER_HOST": "",
            "DOCKER_TLS_VERIFY": "",
            "DOCKER_CERT_PATH": "",
            "DOCKER_CONTEXT": "",
        }
        if cfg.docker_config is not None:
            env["DOCKER_CONFIG"] = str(cfg.docker_config)
        if cfg.context:
            env["DOCKER_CONTEXT"] = cfg.context
            return env
        env["DOCKER_HOST"] = cfg.url
        if cfg.uses_tls:
            env["DOCKER_TLS_VERIFY"] = "1" if cfg.tls_verify else ""
            if cfg.cert_dir is not None:
                env["DOCKER_CERT_PATH"] = str(cfg.cert_dir)
        return env

    def open_exec_socket(
        self, id: str, cmd: Sequence[str] = ("sh",), tty: bool = True
    ) -> ExecSession:
        """Start ``cmd`` in the container with stdin attached; talk to it through the
        returned session (an embedded terminal)."""
        created = self._call(
            "start a shell",
            id,
            self.api.exec_create,
            id,
            list(cmd),
            stdin=True,
            stdout=True,
            stderr=True,
            tty=tty,
        )
        exec_id = str(created["Id"])

        def start() -> requests.Response:
            response = self.api._post_json(
                self.api._url("/exec/{0}/start", exec_id),
                headers={"Connection": "Upgrade", "Upgrade": "tcp"},
                data={"Tty": tty, "Detach": False},
                stream=True,
            )
            self.api._raise_for_status(response)
            return response

        response = self._call("start a shell", id, start)
        sock = response_socket(response)
        if sock is None:
            response.close()
            raise EngineError(
                "The engine did not hand over the terminal connection",
                hint="This engine address does not support interactive sessions.",
            )
        return ExecSession(self.api, exec_id, response, sock, tty, _buffered(response, sock))

    # ---------------------------------------------------------------- images

    def images(self) -> list[Image]:
        """Every image (one entry per id with all its tags), one request."""
        raw = self._call("list images", None, self.api.images)
        return [Image.from_api(i) for i in raw]

    def image(self, ref: str) -> Image:
        """One image by reference or id (list API with a filter, then inspect as fallback)."""
        found = []
        with contextlib.suppress(ToolboxError):
            found = self._call("find the image", ref, self.api.images, name=ref)
        if found:
            return Image.from_api(found[0])
        raw = self._call("inspect the image", ref, self.api.inspect_image, ref)
        return Image.from_api({**raw, "Labels": (raw.get("Config") or {}).get("Labels")})

    def _auth_headers(self, ref: ImageRef) -> dict[str, str]:
        registry, _ = auth.resolve_repository_name(ref.name)
        header = auth.get_config_header(self.api, registry)
        # Always send one: without it the engine reads the body as credentials (and a push
        # fails with "missing X-Registry-Auth: EOF").
        return {"X-Registry-Auth": header or auth.encode_header({})}

    def _progress_stream(
        self,
        action: str,
        ref: ImageRef,
        request: Callable[[], requests.Response],
        on_progress: ProgressCallback | None,
        cancel: threading.Event | None,
        push: bool,
    ) -> ProgressTracker:
        if cancel is not None and cancel.is_set():
            raise Cancelled(f"{action.capitalize()} of {ref} cancelled")
        response = self._call(action, str(ref), request)
        stream = _JSONMessages(response)
        tracker = ProgressTracker(push=push)
        with CancelWatch(cancel, stream.close) as watch:
            try:
                for message in stream:
                    progress = tracker.feed(message)
                    if tracker.error:
                        stream.close()
                        fake = docker.errors.APIError(tracker.error, explanation=tracker.error)
                        raise translate_api_error(fake, action, str(ref))
                    if watch.cancelled:
                        break
                    if on_progress is not None:
                        on_progress(progress)
            except STREAM_ERRORS as exc:
                if not watch.cancelled:
                    raise unreachable(self.config, exc) from exc
            finally:
                stream.close()
        if watch.cancelled:
            raise Cancelled(f"{action.capitalize()} of {ref} cancelled")
        if on_progress is not None:
            on_progress(tracker.finish())
        return tracker

    def pull(
        self,
        ref: str,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> Image:
        """Pull ``ref`` (``:latest`` if no tag) reporting aggregated per-layer progress;
        setting ``cancel`` stops it within a moment and raises ``Cancelled``."""
        image_ref = parse_image_ref(ref).with_default_tag()

        def request() -> requests.Response:
            params = {"fromImage": image_ref.name, "tag": image_ref.digest or image_ref.tag}
            response = self.api._post(
                self.api._url("/images/create"),
                params=params,
                headers=self._auth_headers(image_ref),
                stream=True,
                timeout=None,
            )
            self.api._raise_for_status(response)
            return response

        self._progress_stream("pull", image_ref, request, on_progress, cancel, push=False)
        return self.image(str(image_ref))

    def push(
        self,
        ref: str,
        on_progress: ProgressCallback | None = None,
        cancel: threading.Event | None = None,
    ) -> str | None:
        """Push ``ref`` to its registry with progress; returns the pushed digest if told."""
        image_ref = parse_image_ref(ref).with_default_tag()

        def request() -> requests.Response:
            response = self.api._post(
                self.api._url("/images/{0}/push", image_ref.name),
                params={"tag": image_ref.tag},
                headers=self._auth_headers(image_ref),
                stream=True,
                timeout=None,
            )
            self.api._raise_for_status(response)
            return response

        tracker = self._progress_stream("push", image_ref, request, on_progress, cancel, push=True)
        return tracker.digest

    def tag(self, image_id: str, repository: str, tag: str = "latest") -> None:
        ok = self._call("tag the image", image_id, self.api.tag, image_id, repository, tag)
        if not ok:
            raise EngineError(f"The engine did not tag {image_id} as {repository}:{tag}")

    def remove_image(self, ref: str, force: bool = False) -> list[str]:
        """Untag/remove ``ref``; returns the ids of the image layers actually deleted."""
        result = self._call("remove the image", ref, self.api.remove_image, ref, force=force)
        return [str(item["Deleted"]) for item in result or () if item.get("Deleted")]

    def prune_images(self, dangling_only: bool = True) -> PruneResult:
        """Remove dangling images (or, with ``dangling_only=False``, every unused image)."""
        result = self._call(
            "prune images", None, self.api.prune_images, filters={"dangling": dangling_only}
        )
        deleted = tuple(
            str(item["Deleted"])
            for item in result.get("ImagesDeleted") or ()
            if item.get("Deleted")
        )
        return PruneResult(deleted, int(result.get("SpaceReclaimed") or 0))

    # ---------------------------------------------------------------- volumes and networks

    def volumes(self) -> list[Volume]:
        raw = self._call("list volumes", None, self.api.volumes)
        return [Volume.from_api(v) for v in (raw or {}).get("Volumes") or ()]

    def create_volume(
        self, name: str, driver: str = "local", labels: Mapping[str, str] | None = None
    ) -> Volume:
        raw = self._call(
            "create the volume",
            name,
            self.api.create_volume,
            name,
            driver,
            labels=dict(labels or {}),
        )
        return Volume.from_api(raw)

    def remove_volume(self, name: str, force: bool = False) -> None:
        self._call("remove the volume", name, self.api.remove_volume, name, force=force)

    def networks(self) -> list[Network]:
        raw = self._call("list networks", None, self.api.networks)
        return [Network.from_api(n) for n in raw or ()]

    def create_network(
        self, name: str, driver: str = "bridge", subnet: str | None = None
    ) -> Network:
        ipam = None
        if subnet:
            ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=subnet)])
        created = self._call(
            "create the network", name, self.api.create_network, name, driver=driver, ipam=ipam
        )
        net_id = str(created["Id"])
        found = self._call("find the network", name, self.api.networks, ids=[net_id])
        if not found:
            raise NotFoundError(f"Network {name} vanished right after it was created")
        return Network.from_api(found[0])

    def remove_network(self, id: str) -> None:
        self._call("remove the network", id, self.api.remove_network, id)

    @staticmethod
    def volume_users(containers: Sequence[Container]) -> dict[str, list[str]]:
        """Volume name -> names of the containers that mount it (from list records)."""
        users: dict[str, list[str]] = {}
        for c in containers:
            for m in c.mounts:
                if m.type == "volume" and m.name:
                    users.setdefault(m.name, []).append(c.name)
        return users

    @staticmethod
    def network_users(containers: Sequence[Container]) -> dict[str, list[str]]:
        """Network name -> names of the containers attached to it (from list records)."""
        users: dict[str, list[str]] = {}
        for c in containers:
            for net in c.networks:
                users.setdefault(net, []).append(c.name)
        return users

    # ---------------------------------------------------------------- events

    def events(
        self,
        since: dt.datetime | float | None = None,
        filters: Mapping[str, Any] | None = None,
    ) -> EventStream:
        """The engine's event stream from now (or from ``since``, replaying what the engine
        still remembers); ``close()`` from another thread stops it within milliseconds."""
        params: dict[str, Any] = {}
        if since is not None:
            params["since"] = _unix_time(since)
        if filters:
            params["filters"] = json.dumps(
                {k: v if isinstance(v, list | tuple) else [v] for k, v in filters.items()}
            )

        def request() -> requests.Response:
            response = self.api._get(
                self.api._url("/events"), params=params, stream=True, timeout=None
            )
            self.api._raise_for_status(response)
            return response

        return EventStream(self._call("watch events", None, request), self.config)


# --------------------------------------------------------------------------------------
# Helpers: time, buffered socket bytes, container configs


def _unix_time(value: dt.datetime | float) -> str:
    """The engine's ``since`` format: seconds.nanoseconds since the epoch."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        seconds = value.timestamp()
    else:
        seconds = float(value)
    return f"{seconds:.9f}"


def _buffered(response: requests.Response, sock: socket.socket) -> bytes:
    """Bytes http.client already read past the response headers (a shell's first prompt
    can arrive in the same packet); they would be lost by reading the socket directly."""
    try:
        reader = response.raw._fp.fp
    except AttributeError:
        return b""
    if reader is None or not hasattr(reader, "peek"):
        return b""
    previous = sock.gettimeout()
    try:
        sock.settimeout(0.0)
        data = reader.peek(65536)
        return reader.read(len(data)) if data else b""
    except (OSError, ValueError, TypeError):
        return b""
    finally:
        with contextlib.suppress(OSError):
            sock.settimeout(previous)


def _port_key(spec: PortSpec) -> str:
    return f"{spec.container_port}/{spec.protocol}"


def _host_config(spec: RunSpec) -> dict[str, Any]:
    bindings: dict[str, list[dict[str, str]]] = {}
    for p in spec.ports:
        bindings.setdefault(_port_key(p), []).append(
            {"HostIp": p.host_ip or "", "HostPort": "" if p.host_port is None else str(p.host_port)}
        )
    binds = [v.bind_string() for v in spec.volumes if v.source is not None]
    return {
        "PortBindings": bindings,
        "Binds": binds,
        "RestartPolicy": {
            "Name": spec.restart.value,
            "MaximumRetryCount": spec.restart_max_retries
            if spec.restart is RestartPolicy.ON_FAILURE
            else 0,
        },
        "AutoRemove": spec.auto_remove,
    }


def container_config(spec: RunSpec) -> dict[str, Any]:
    """The engine's create body (``POST /containers/create``) for ``spec``."""
    return {
        "Image": spec.image,
        "Cmd": list(spec.command) if spec.command is not None else None,
        "Env": [str(e) for e in spec.env],
        "Labels": dict(spec.labels),
        "ExposedPorts": {_port_key(p): {} for p in spec.ports},
        "Volumes": {v.target: {} for v in spec.volumes if v.source is None},
        "Tty": spec.tty,
        "OpenStdin": spec.stdin_open,
        "StdinOnce": False,
        "AttachStdin": False,
        "AttachStdout": False,
        "AttachStderr": False,
        "HostConfig": _host_config(spec),
    }


# Config fields carried over on recreate when the user changed them from the image's.
_CARRIED = ("Entrypoint", "WorkingDir", "User", "StopSignal", "Healthcheck", "Domainname")


def recreate_config(
    old: Mapping[str, Any], image_config: Mapping[str, Any], spec: RunSpec
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """The create body for recreating ``old`` (inspect JSON) with ``spec``: the spec's
    settings, plus the old container's other host settings and its own config overrides;
    its anonymous volumes are mounted again by name so their data survives. Also returns
    the extra networks to connect after create."""
    config = container_config(spec)
    old_config = old.get("Config") or {}
    same_image = spec.image == old_config.get("Image")
    for key in _CARRIED:
        value = old_config.get(key)
        if value and (not same_image or value != image_config.get(key)):
            config[key] = value
    if old_config.get("Hostname") and not str(old.get("Id", "")).startswith(old_config["Hostname"]):
        config["Hostname"] = old_config["Hostname"]
    host = dict(old.get("HostConfig") or {})
    host.update(config["HostConfig"])
    # Anonymous volumes: mount the old ones by name where the new container wants them.
    wanted = set(config["Volumes"])
    if same_image:
        wanted |= set(image_config.get("Volumes") or {})
    bound = {b.split(":")[1] for b in host.get("Binds") or () if b.count(":") >= 1}
    for mount in old.get("Mounts") or ():
        dest = mount.get("Destination")
        if (
            mount.get("Type") == "volume"
            and mount.get("Name")
            and dest in wanted
            and dest not in bound
        ):
            mode = "rw" if mount.get("RW", True) else "ro"
            host["Binds"] = [*host.get("Binds", []), f"{mount['Name']}:{dest}:{mode}"]
    config["HostConfig"] = host
    networks = dict(((old.get("NetworkSettings") or {}).get("Networks")) or {})
    primary = str(host.get("NetworkMode") or "default")
    extra: dict[str, dict[str, Any]] = {}
    short = str(old.get("Id", ""))[:12]
    for name, endpoint in networks.items():
        if name == primary or (primary == "default" and name == "bridge"):
            continue
        aliases = [a for a in (endpoint or {}).get("Aliases") or () if a != short]
        extra[name] = {"Aliases": aliases}
    return config, extra


def spec_from_inspect(info: Mapping[str, Any], image_config: Mapping[str, Any]) -> RunSpec:
    """A ``RunSpec`` of what the user set on a container (inspect JSON), leaving out what
    its image provides (default command, env, labels, volumes)."""
    cfg = info.get("Config") or {}
    host = info.get("HostConfig") or {}
    cmd = cfg.get("Cmd")
    command = tuple(cmd) if cmd and cmd != image_config.get("Cmd") else None
    image_env = set(image_config.get("Env") or ())
    env = tuple(
        EnvVar(*e.split("=", 1)) for e in cfg.get("Env") or () if "=" in e and e not in image_env
    )
    ports: list[PortSpec] = []

    def port_order(item: tuple[str, Any]) -> tuple[int, str]:
        number, _, proto = item[0].partition("/")
        return (int(number) if number.isdigit() else 0, proto)

    for key, bindings in sorted((host.get("PortBindings") or {}).items(), key=port_order):
        number, _, proto = key.partition("/")
        for b in bindings or ():
            hp = str(b.get("HostPort") or "")
            ports.append(
                PortSpec(
                    int(number),
                    proto or "tcp",
                    b.get("HostIp") or None,
                    int(hp) if hp.isdigit() else None,
                )
            )
    volumes: list[VolumeSpec] = []
    for bind in host.get("Binds") or ():
        volumes.append(_volume_from_bind(bind))
    bound = {v.target for v in volumes}
    image_volumes = set(image_config.get("Volumes") or {})
    for target in cfg.get("Volumes") or {}:
        if target not in bound and target not in image_volumes:
            volumes.append(VolumeSpec(None, target, False, "volume"))
    policy = host.get("RestartPolicy") or {}
    image_labels = image_config.get("Labels") or {}
    labels = {k: v for k, v in (cfg.get("Labels") or {}).items() if image_labels.get(k) != v}
    return RunSpec(
        image=str(cfg.get("Image") or info.get("Image") or ""),
        name=str(info.get("Name") or "").lstrip("/") or None,
        command=command,
        ports=tuple(ports),
        env=env,
        volumes=tuple(volumes),
        restart=RestartPolicy.from_api(policy.get("Name")),
        restart_max_retries=int(policy.get("MaximumRetryCount") or 0),
        auto_remove=bool(host.get("AutoRemove")),
        tty=bool(cfg.get("Tty")),
        stdin_open=bool(cfg.get("OpenStdin")),
        labels=labels,
    )


def _volume_from_bind(bind: str) -> VolumeSpec:
    """``src:dst[:opts]`` from HostConfig.Binds (Windows drive letters included)."""
    drive = ""
    rest = bind
    if re.match(r"[A-Za-z]:[\\/]", bind):
        drive, rest = bind[:2], bind[2:]
    parts = rest.split(":")
    source = drive + parts[0]
    target = parts[1] if len(parts) > 1 else parts[0]
    options = parts[2].split(",") if len(parts) > 2 else []
    kind = "bind" if source.startswith("/") or drive else "volume"
    return VolumeSpec(source, target, "ro" in options, kind)
