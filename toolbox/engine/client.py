"""``EngineClient``: the engine's containers, images, volumes and networks as typed records,
over docker-py's low-level ``APIClient`` only.

List paths make one request each (never an inspect per row). The engine's errors come out as
``EngineError`` / ``EngineUnreachable`` / ``NotFoundError`` in plain words with a hint
(``toolbox.engine.errors``). An ``EngineClient`` belongs to one thread; make one per worker
with ``connect(config)`` here or ``EngineConfig.connect()``. Its streams and exec sessions
live in ``toolbox.engine.sessions``, the run-spec conversion in ``toolbox.engine.runspec``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import threading
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import docker
import requests
from docker import auth

from toolbox.engine.apiclient import DEFAULT_TIMEOUT, make_api_client
from toolbox.engine.connect import EngineConfig

# Imports marked `noqa: F401` or written `X as X` are re-exports: these names were defined
# or imported here before the engine package was split by concern, and other code imports
# them from toolbox.engine.client.
from toolbox.engine.errors import _first, translate_api_error, unreachable  # noqa: F401
from toolbox.engine.parse import EnvVar as EnvVar
from toolbox.engine.parse import ImageRef, parse_image_ref
from toolbox.engine.parse import PortSpec as PortSpec
from toolbox.engine.parse import RestartPolicy as RestartPolicy
from toolbox.engine.parse import VolumeSpec as VolumeSpec
from toolbox.engine.records import (
    Container,
    EngineInfo,
    Image,
    LogLine,
    Network,
    PruneResult,
    PullProgress,
    RunSpec,
    Volume,
    parse_timestamp,
)
from toolbox.engine.records import Event as Event
from toolbox.engine.runspec import (  # noqa: F401
    _CARRIED,
    _host_config,
    _port_key,
    _volume_from_bind,
    container_config,
    recreate_config,
    spec_from_inspect,
)
from toolbox.engine.sessions import (
    EventStream,
    ExecSession,
    LogStream,
    _JSONMessages,
    buffered_bytes,
)
from toolbox.engine.sessions import buffered_bytes as _buffered  # noqa: F401
from toolbox.engine.streams import STREAM_ERRORS, CancelWatch, ProgressTracker, response_socket
from toolbox.engine.streams import ClosableStream as ClosableStream
from toolbox.engine.streams import FrameDecoder as FrameDecoder
from toolbox.engine.streams import JSONStreamDecoder as JSONStreamDecoder
from toolbox.engine.streams import LogDecoder as LogDecoder
from toolbox.errors import (
    Cancelled,
    EngineError,
    NotFoundError,
    ToolboxError,
)
from toolbox.errors import EngineUnreachable as EngineUnreachable

T = TypeVar("T")
ProgressCallback = Callable[[PullProgress], None]

RAW_STREAM = "application/vnd.docker.raw-stream"
MULTIPLEXED_STREAM = "application/vnd.docker.multiplexed-stream"


def connect(config: EngineConfig, timeout: float = DEFAULT_TIMEOUT) -> EngineClient:
    """An ``EngineClient`` for ``config``'s engine (one per thread). Raises
    ``EngineUnreachable`` with a hint when the engine cannot be reached or refuses the
    certificates."""
    return EngineClient(config, make_api_client(config, timeout))


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
        return ExecSession(self.api, exec_id, response, sock, tty, buffered_bytes(response, sock))

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


def _unix_time(value: dt.datetime | float) -> str:
    """The engine's ``since`` format: seconds.nanoseconds since the epoch."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        seconds = value.timestamp()
    else:
        seconds = float(value)
    return f"{seconds:.9f}"
