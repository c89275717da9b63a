"""Build an image from a folder: the spec and its checks, the context tar, the streamed build.

Usage::

    spec = BuildSpec(Path("app"), tags=("app:dev",), build_args=parse_build_args(["V=1"]))
    result = build_image(client, spec, on_event=print, cancel=threading.Event())

The context tar is made here, not by docker-py's ``APIClient.build``, so its rules are the
docker CLI's: ``.dockerignore`` read the way the CLI reads it (``#`` comments, blank lines,
``!`` exceptions, the last matching pattern wins, a leading ``/`` and ``..`` cleaned away), the
Dockerfile and ``.dockerignore`` always sent, owners set to root. Matching uses docker-py's
``PatternMatcher`` (a port of moby's matcher, ``**`` included). The engine's JSON stream is
parsed into ``BuildEvent`` records: a step header (``Step 3/7 : RUN ...``), output lines, an
error, the built image id. A failure raises ``BuildFailed`` naming the step and its output;
setting ``cancel`` closes the response, which makes the engine stop the build.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tarfile
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import IO, Any

import requests
from docker.utils.build import PatternMatcher

from toolbox.engine.client import EngineClient
from toolbox.engine.connect import unreachable
from toolbox.engine.parse import parse_image_ref
from toolbox.engine.streams import STREAM_ERRORS, CancelWatch, ClosableStream, JSONStreamDecoder
from toolbox.errors import Cancelled, EngineError, EngineUnreachable, ValidationError

DOCKERIGNORE = ".dockerignore"
_ARG_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
# Lines of the legacy builder's own bookkeeping, not the output of a step.
_BOOKKEEPING = re.compile(
    r"^( ---> |Removing intermediate container |Successfully built |Successfully tagged )"
)


# --------------------------------------------------------------------------------------
# The spec and its checks


@dataclass(frozen=True)
class BuildSpec:
    """What to build: ``context`` folder, ``dockerfile`` (relative to the context, or an
    absolute path inside it), tags, build args, an optional multi-stage ``target``."""

    context: Path
    dockerfile: str = "Dockerfile"
    tags: tuple[str, ...] = ()
    build_args: tuple[tuple[str, str], ...] = ()
    target: str | None = None
    no_cache: bool = False
    pull: bool = False


@dataclass(frozen=True)
class CheckedBuild:
    """A spec that passed ``check_spec``: absolute context, the Dockerfile's path inside it
    (forward slashes, as the engine wants it), tags with their default ``:latest``."""

    spec: BuildSpec
    context: Path
    dockerfile: str
    tags: tuple[str, ...]


def parse_build_args(
    items: Iterable[str], field: str = "build_args"
) -> tuple[tuple[str, str], ...]:
    """``KEY=VALUE`` items (blank ones skipped) as pairs; raises ``ValidationError`` naming the
    bad one. The value may be empty and may contain ``=``."""
    pairs: list[tuple[str, str]] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise ValidationError(
                field,
                f"Build arg {item!r} has no value",
                f"Write it as KEY=VALUE, for example {key or 'VERSION'}=1.0.",
            )
        if not _ARG_KEY.fullmatch(key):
            raise ValidationError(
                field,
                f"Build arg name {key!r} is not valid",
                "Names start with a letter or _ and hold letters, digits and _ only.",
            )
        pairs.append((key, value))
    return tuple(pairs)


def check_spec(spec: BuildSpec) -> CheckedBuild:
    """Check the folder, the Dockerfile and the tags before anything is sent."""
    context = Path(spec.context).expanduser()
    if not str(spec.context).strip():
        raise ValidationError("context", "Choose the folder to build from")
    if not context.exists():
        raise ValidationError(
            "context", f"Folder {context} does not exist", "Choose the folder with your Dockerfile."
        )
    if not context.is_dir():
        raise ValidationError(
            "context",
            f"{context} is a file, not a folder",
            "Choose the folder that holds the Dockerfile (the build context).",
        )
    context = context.resolve()
    name = spec.dockerfile.strip() or "Dockerfile"
    given = Path(name).expanduser()
    path = (given if given.is_absolute() else context / given).resolve()
    try:
        relative = path.relative_to(context)
    except ValueError:
        raise ValidationError(
            "dockerfile",
            f"The Dockerfile {path} is outside the folder {context}",
            "Move it into the folder (the engine only sees the folder), or build from a "
            "folder that holds it.",
        ) from None
    if not path.is_file():
        raise ValidationError(
            "dockerfile",
            f"There is no Dockerfile at {path}",
            "Add a Dockerfile to the folder, or choose the Dockerfile to use.",
        )
    tags = tuple(str(parse_image_ref(tag, "tags").with_default_tag()) for tag in spec.tags if tag)
    for key, _value in spec.build_args:
        if not _ARG_KEY.fullmatch(key):
            raise ValidationError("build_args", f"Build arg name {key!r} is not valid")
    target = (spec.target or "").strip()
    if target and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", target):
        raise ValidationError(
            "target",
            f"Target {target!r} is not a stage name",
            "Use the name after AS in a FROM line, like FROM busybox AS build.",
        )
    return CheckedBuild(spec, context, relative.as_posix(), tags)


# --------------------------------------------------------------------------------------
# The context


def read_dockerignore(context: Path) -> list[str]:
    """The patterns of ``context/.dockerignore`` read the way the docker CLI reads them:
    a line starting with ``#`` is a comment, blank lines are skipped, spaces around a pattern
    and after ``!`` are dropped, the path is cleaned (``a/../b`` is ``b``) and a leading ``/``
    removed."""
    path = context / DOCKERIGNORE
    if not path.is_file():
        return []
    patterns: list[str] = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = os.path.normpath(pattern).replace(os.sep, "/")
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern.lstrip("/")
        patterns.append(("!" if invert else "") + pattern)
    return patterns


def context_files(context: Path, patterns: Sequence[str], dockerfile: str) -> list[str]:
    """Paths (relative, forward slashes, sorted) of what the context sends: everything not
    excluded by ``patterns``, with the Dockerfile and ``.dockerignore`` always kept, as the
    docker CLI does."""
    keep = [*patterns, f"!{dockerfile}", f"!{DOCKERIGNORE}"]
    matcher = PatternMatcher(keep)
    files = {path.replace(os.sep, "/") for path in matcher.walk(str(context))}
    # A kept file under an excluded folder: its parent folders go too, so the tar extracts.
    for path in list(files):
        parts = path.split("/")[:-1]
        for depth in range(1, len(parts) + 1):
            files.add("/".join(parts[:depth]))
    return sorted(files)


def make_context(checked: CheckedBuild, fileobj: IO[bytes] | None = None) -> IO[bytes]:
    """The build context as a tar (a temporary file unless ``fileobj`` is given), rewound.
    Owners are root (uid/gid 0, no names) as in the docker CLI's context."""
    out: IO[bytes] = fileobj if fileobj is not None else tempfile.TemporaryFile()  # noqa: SIM115 (the caller closes it)
    patterns = read_dockerignore(checked.context)
    with tarfile.open(fileobj=out, mode="w") as tar:
        for relative in context_files(checked.context, patterns, checked.dockerfile):
            full = checked.context / relative
            try:
                if stat.S_ISSOCK(full.lstat().st_mode):  # not sendable; the CLI skips them too
                    continue
                info = tar.gettarinfo(str(full), arcname=relative)
            except OSError as exc:
                raise ValidationError(
                    "context",
                    f"Cannot read {relative} in the build folder: {exc.strerror or exc}",
                    "Fix its permissions, or list it in .dockerignore.",
                ) from exc
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = int(max(0, min(info.mtime, 8**11 - 1)))
            if info.isfile():
                with open(full, "rb") as handle:
                    tar.addfile(info, handle)
            else:
                tar.addfile(info)
    out.seek(0)
    return out


# --------------------------------------------------------------------------------------
# The stream


class BuildEventKind(Enum):
    STEP = "step"
    OUTPUT = "output"
    ERROR = "error"
    IMAGE = "image"


@dataclass(frozen=True)
class BuildEvent:
    """One thing the build said: a step header (``step``/``total``/``text`` = the
    instruction), a line of output, the error, or the built image's id (``text``)."""

    kind: BuildEventKind
    text: str
    step: int | None = None
    total: int | None = None


@dataclass(frozen=True)
class BuildStep:
    """One Dockerfile step as the build ran it, with the output it printed."""

    number: int
    total: int
    instruction: str
    output: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return f"Step {self.number}/{self.total}: {self.instruction}"


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tags: tuple[str, ...]
    steps: tuple[BuildStep, ...]

    @property
    def short_id(self) -> str:
        return self.image_id.split(":", 1)[-1][:12]


class BuildFailed(EngineError):
    """The build stopped at ``step`` (None when it failed before the first step); the step's
    output and the engine's message are in ``details``."""

    def __init__(self, message: str, hint: str | None, details: str, step: BuildStep | None):
        super().__init__(message, hint, details)
        self.step = step


@dataclass
class BuildStreamParser:
    """Turns the engine's build messages into ``BuildEvent`` records and keeps the steps.

    ``stream`` text arrives in arbitrary chunks; lines are cut at newlines (a partial line
    waits for the rest, ``finish`` flushes it).
    """

    steps: list[BuildStep] = field(default_factory=list)
    image_id: str | None = None
    error: str | None = None
    preamble: list[str] = field(default_factory=list)
    _partial: str = ""
    _output: list[str] = field(default_factory=list)

    def feed(self, message: dict[str, Any]) -> list[BuildEvent]:
        events: list[BuildEvent] = []
        text = message.get("stream")
        if isinstance(text, str):
            self._partial += text
            *lines, self._partial = self._partial.split("\n")
            for line in lines:
                events.extend(self._line(line.rstrip("\r")))
        aux = message.get("aux")
        if isinstance(aux, dict) and isinstance(aux.get("ID"), str):
            self.image_id = aux["ID"]
            events.append(BuildEvent(BuildEventKind.IMAGE, aux["ID"]))
        detail = message.get("errorDetail")
        error = message.get("error")
        if detail or error:
            text = (detail or {}).get("message") if isinstance(detail, dict) else None
            events.extend(self.finish())
            self.error = str(text or error or "the build failed")
            events.append(BuildEvent(BuildEventKind.ERROR, self.error))
        return events

    def finish(self) -> list[BuildEvent]:
        """Flush a last line without its newline."""
        if not self._partial:
            return []
        line, self._partial = self._partial, ""
        return self._line(line.rstrip("\r"))

    def _line(self, line: str) -> list[BuildEvent]:
        match = _STEP.match(line)
        if match:
            self._close_step()
            number, total, instruction = int(match[1]), int(match[2]), match[3].strip()
            self.steps.append(BuildStep(number, total, instruction))
            return [BuildEvent(BuildEventKind.STEP, instruction, number, total)]
        if self.steps and not _BOOKKEEPING.match(line) and not line.startswith(" ---> "):
            self._output.append(line)
        elif not self.steps:
            self.preamble.append(line)
        step = self.steps[-1] if self.steps else None
        return [
            BuildEvent(
                BuildEventKind.OUTPUT,
                line,
                step.number if step else None,
                step.total if step else None,
            )
        ]

    def _close_step(self) -> None:
        if self.steps and self._output:
            last = self.steps[-1]
            self.steps[-1] = BuildStep(
                last.number, last.total, last.instruction, last.output + tuple(self._output)
            )
        self._output = []

    def done(self) -> tuple[BuildStep, ...]:
        """The steps with every output line attached (call after the stream ended)."""
        self.finish()
        self._close_step()
        return tuple(self.steps)


def failure(parser: BuildStreamParser, message: str) -> BuildFailed:
    """The ``BuildFailed`` for an engine ``message``: names the step that was running."""
    steps = parser.done()
    step = steps[-1] if steps else None
    output = "\n".join(step.output if step else parser.preamble)
    details = (output + "\n\n" if output else "") + message
    if step is None:
        return BuildFailed(
            f"The build failed before its first step: {message}",
            "Check the Dockerfile's syntax and that the base image is on the engine or in "
            "a registry the machine can reach.",
            details,
            None,
        )
    code = re.search(r"returned a non-zero code: (\d+)", message)
    why = f"exited with code {code[1]}" if code else message
    return BuildFailed(
        f"{step.label} failed: {why}",
        "The step's output below says why; fix the Dockerfile or the files it uses and "
        "build again (steps before it come from the cache).",
        details,
        step,
    )


class _BuildMessages(ClosableStream):
    def __iter__(self) -> Iterator[dict[str, Any]]:
        decoder = JSONStreamDecoder()
        for chunk in self._chunks():
            yield from decoder.feed(chunk)
        if not self.closed:
            yield from decoder.finish()


def build_params(checked: CheckedBuild) -> dict[str, Any]:
    """The ``POST /build`` query for a checked spec (the docker CLI's defaults: ``rm``)."""
    spec = checked.spec
    params: dict[str, Any] = {"dockerfile": checked.dockerfile, "rm": "1"}
    if checked.tags:
        params["t"] = list(checked.tags)
    if spec.build_args:
        params["buildargs"] = json.dumps(dict(spec.build_args))
    if spec.target:
        params["target"] = spec.target.strip()
    if spec.no_cache:
        params["nocache"] = "1"
    if spec.pull:
        params["pull"] = "1"
    return params


def build_image(
    client: EngineClient,
    spec: BuildSpec,
    on_event: Callable[[BuildEvent], None] | None = None,
    cancel: threading.Event | None = None,
) -> BuildResult:
    """Build ``spec`` on the engine, reporting each event; raises ``ValidationError`` for a
    bad spec, ``BuildFailed`` naming the failing step, ``Cancelled`` when ``cancel`` is set."""
    checked = check_spec(spec)
    subject = checked.tags[0] if checked.tags else str(checked.context)
    if cancel is not None and cancel.is_set():
        raise Cancelled(f"Build of {subject} cancelled")
    api = client.api
    with make_context(checked) as context:

        def request() -> requests.Response:
            headers = {"Content-Type": "application/x-tar"}
            api._set_auth_headers(headers)
            response = api._post(
                api._url("/build"),
                data=context,
                params=build_params(checked),
                headers=headers,
                stream=True,
                timeout=None,
            )
            api._raise_for_status(response)
            return response

        try:
            response = client._call("build the image", subject, request)
        except EngineUnreachable:
            raise
        except EngineError as exc:  # refused before the first step (bad target, syntax)
            text = exc.details or exc.message
            raise BuildFailed(
                f"The engine refused the build: {text}",
                "Check the Dockerfile (its syntax, the stage names after AS) and the target.",
                text,
                None,
            ) from exc
    stream = _BuildMessages(response)
    parser = BuildStreamParser()
    with CancelWatch(cancel, stream.close) as watch:
        try:
            for message in stream:
                for event in parser.feed(message):
                    if on_event is not None and not watch.fired:
                        on_event(event)
                if parser.error is not None:
                    break
        except STREAM_ERRORS as exc:
            if not watch.fired:
                raise unreachable(client.config, exc) from exc
        finally:
            stream.close()
    if watch.fired:
        raise Cancelled(f"Build of {subject} cancelled")
    if on_event is not None:
        for event in parser.finish():
            on_event(event)
    if parser.error is not None:
        raise failure(parser, parser.error)
    steps = parser.done()
    if parser.image_id is None:
        raise failure(parser, "the engine ended the build without naming an image")
    return BuildResult(parser.image_id, checked.tags, steps)
