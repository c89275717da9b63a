"""Builds on the real harness engine from local busybox: build args, a multi-stage target,
``.dockerignore`` with ``!`` exceptions, no-cache, a failing step named with its output,
cancel of a long step; then the built image's history against its Dockerfile."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
import threading
import time
from pathlib import Path

import docker
import pytest

from tests import harness
from toolbox.engine.build import (
    BuildEvent,
    BuildEventKind,
    BuildFailed,
    BuildSpec,
    BuildStreamParser,
    build_image,
    check_spec,
    context_files,
    make_context,
    parse_build_args,
    read_dockerignore,
)
from toolbox.engine.client import EngineClient
from toolbox.engine.history import clean_created_by, image_history
from toolbox.errors import Cancelled, ValidationError

BASE = "tbxbuild-base:latest"


@pytest.fixture(scope="module")
def base(engine) -> str:
    client = docker.DockerClient(base_url=engine.url)
    try:
        if not client.api.images(name=BASE):
            harness.import_busybox(client, "tbxbuild-base", "latest")
    finally:
        client.close()
    return BASE


@pytest.fixture
def ctx(tmp_path: Path) -> Path:
    """An empty build folder (tmp_path also holds the test's TOOLBOX_HOME)."""
    folder = tmp_path / "ctx"
    folder.mkdir()
    return folder


def run_in(docker_client: docker.DockerClient, image: str, command: str) -> str:
    out = docker_client.containers.run(image, ["sh", "-c", command], remove=True)
    return out.decode().strip()


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return folder


# -- checks (no engine) ---------------------------------------------------------------------


def test_spec_errors_say_what_is_wrong(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="does not exist") as missing:
        check_spec(BuildSpec(tmp_path / "nope"))
    assert missing.value.field == "context"
    with pytest.raises(ValidationError, match="no Dockerfile") as nofile:
        check_spec(BuildSpec(tmp_path))
    assert nofile.value.hint
    (tmp_path / "ctx").mkdir()
    (tmp_path / "Dockerfile.out").write_text("FROM x\n")
    with pytest.raises(ValidationError, match="outside the folder"):
        check_spec(BuildSpec(tmp_path / "ctx", dockerfile="../Dockerfile.out"))
    with pytest.raises(ValidationError, match="has no value"):
        parse_build_args(["VERSION"])
    with pytest.raises(ValidationError, match="not valid"):
        parse_build_args(["1BAD=x"])
    assert parse_build_args(["A=1", " ", "B=x=y", "C="]) == (("A", "1"), ("B", "x=y"), ("C", ""))
    write(tmp_path / "ctx", {"sub/Dockerfile.dev": "FROM x\n"})
    checked = check_spec(BuildSpec(tmp_path / "ctx", "sub/Dockerfile.dev", tags=("app",)))
    assert checked.dockerfile == "sub/Dockerfile.dev"
    assert checked.tags == ("app:latest",)


def test_dockerignore_follows_the_cli_rules(ctx: Path) -> None:
    write(
        ctx,
        {
            "Dockerfile": "FROM x\n",
            ".dockerignore": "# a comment\n\n*.log\n!keep.log\n/secret/\n!secret/public.txt\n"
            "Dockerfile\n.dockerignore\n  build/../cache  \n**/*.tmp\n",
            "app.py": "",
            "debug.log": "",
            "keep.log": "",
            "secret/key.pem": "",
            "secret/public.txt": "",
            "cache/x": "",
            "deep/er/a.tmp": "",
            "deep/er/b.txt": "",
        },
    )
    patterns = read_dockerignore(ctx)
    assert patterns[0] == "*.log" and "secret" in patterns and "cache" in patterns
    files = context_files(ctx, patterns, "Dockerfile")
    # The Dockerfile and .dockerignore are sent although listed; the rest as the CLI decides.
    assert files == [
        ".dockerignore",
        "Dockerfile",
        "app.py",
        "deep",
        "deep/er",
        "deep/er/b.txt",
        "keep.log",
        "secret",
        "secret/public.txt",
    ]
    with (
        make_context(check_spec(BuildSpec(ctx))) as tar_file,
        tarfile.open(fileobj=tar_file) as tar,
    ):
        members = {m.name: m for m in tar.getmembers()}
    assert sorted(members) == files
    assert {(m.uid, m.gid) for m in members.values()} == {(0, 0)}


def test_stream_parser_cuts_lines_and_steps() -> None:
    parser = BuildStreamParser()
    events: list[BuildEvent] = []
    for message in (
        {"stream": "Step 1/2 : FROM base\n"},
        {"stream": " ---> abc\nStep 2/2 : RUN echo hi"},
        {"stream": "\n ---> Running in 123\nh"},
        {"stream": "i\n"},
        {"aux": {"ID": "sha256:" + "f" * 64}},
    ):
        events += parser.feed(message)
    steps = parser.done()
    assert [(e.kind, e.step) for e in events if e.kind is BuildEventKind.STEP] == [
        (BuildEventKind.STEP, 1),
        (BuildEventKind.STEP, 2),
    ]
    assert steps[1].instruction == "RUN echo hi" and steps[1].output == ("hi",)
    assert parser.image_id == "sha256:" + "f" * 64


def test_clean_created_by() -> None:
    assert clean_created_by('/bin/sh -c #(nop)  CMD ["sh"]') == 'CMD ["sh"]'
    assert clean_created_by("|1 V=2 /bin/sh -c echo $V > /v") == "RUN echo $V > /v"
    assert clean_created_by("/bin/sh -c echo hi") == "RUN echo hi"
    assert clean_created_by("RUN /bin/sh -c true # buildkit") == "RUN true"
    assert clean_created_by("") == ""


# -- real builds ----------------------------------------------------------------------------


def test_build_with_arg_reports_steps_and_tags(
    client: EngineClient, docker_client, base: str, name: str, ctx: Path
) -> None:
    write(
        ctx,
        {
            "Dockerfile": f"FROM {base}\nARG GREETING=none\n"
            'RUN echo "$GREETING" > /greeting && echo built-$GREETING\n'
            'COPY data.txt /data.txt\nCMD ["cat", "/greeting"]\n',
            "data.txt": "payload\n",
        },
    )
    events: list[BuildEvent] = []
    result = build_image(
        client,
        BuildSpec(ctx, tags=(f"{name}:v1",), build_args=(("GREETING", "hello"),)),
        on_event=events.append,
    )
    steps = [e for e in events if e.kind is BuildEventKind.STEP]
    assert [(e.step, e.total) for e in steps] == [(i, 5) for i in range(1, 6)]
    assert steps[2].text.startswith("RUN echo")
    assert "built-hello" in [e.text for e in events if e.kind is BuildEventKind.OUTPUT]
    assert result.steps[2].output == ("built-hello",)
    assert docker_client.images.get(f"{name}:v1").id == result.image_id
    assert run_in(docker_client, result.image_id, "cat /greeting /data.txt") == "hello\npayload"

    history = image_history(client, f"{name}:v1")
    # Newest first: CMD, COPY, RUN, ARG, then the imported base layer.
    assert [h.instruction for h in history[:4]] == ["CMD", "COPY", "RUN", "ARG"]
    # The engine stores the exec form Go-printed, without commas (``docker history`` agrees).
    assert history[0].created_by == 'CMD ["cat" "/greeting"]'
    assert history[2].created_by.startswith('RUN echo "$GREETING" > /greeting')
    assert history[3].created_by == "ARG GREETING=none"
    assert history[0].layer_id == result.image_id and not history[0].missing
    assert history[0].size == 0 and history[3].size == 0
    assert history[1].size == len("payload\n")
    assert history[2].size == len("hello\n")
    base_id = docker_client.images.get(base).id
    assert history[-1].layer_id == base_id
    assert history[-1].size == docker_client.images.get(base).attrs["Size"]
    assert sum(h.size for h in history) == docker_client.images.get(f"{name}:v1").attrs["Size"]


def test_multi_stage_target_stops_at_the_stage(
    client: EngineClient, docker_client, base: str, name: str, ctx: Path
) -> None:
    write(
        ctx,
        {
            "Dockerfile": f"FROM {base} AS build\nRUN echo compiled > /artifact\n"
            f"FROM {base} AS final\nCOPY --from=build /artifact /artifact\n"
            "RUN echo final > /stage\n",
        },
    )
    build_stage = build_image(client, BuildSpec(ctx, tags=(f"{name}:build",), target="build"))
    assert run_in(docker_client, build_stage.image_id, "cat /artifact; ls /stage || true") == (
        "compiled"
    )
    final = build_image(client, BuildSpec(ctx, tags=(f"{name}:final",)))
    assert run_in(docker_client, final.image_id, "cat /artifact /stage") == "compiled\nfinal"
    with pytest.raises(BuildFailed, match="target nosuch") as refused:
        build_image(client, BuildSpec(ctx, target="nosuch"))
    assert refused.value.step is None and refused.value.hint


def test_dockerignore_in_a_real_build(
    client: EngineClient, docker_client, base: str, name: str, ctx: Path
) -> None:
    write(
        ctx,
        {
            "Dockerfile": f"FROM {base}\nCOPY . /ctx\n",
            ".dockerignore": "*.secret\n!allowed.secret\nDockerfile\n",
            "app.txt": "app",
            "hidden.secret": "no",
            "allowed.secret": "yes",
        },
    )
    result = build_image(client, BuildSpec(ctx, tags=(f"{name}:ign",)))
    listing = run_in(docker_client, result.image_id, "ls -A /ctx").split()
    # The Dockerfile is sent (the engine needs it) but, being listed, the engine leaves it
    # out of what COPY sees, as with the docker CLI; .dockerignore is not listed, so it stays.
    assert sorted(listing) == [".dockerignore", "allowed.secret", "app.txt"]


def test_no_cache_reruns_steps(client: EngineClient, base: str, name: str, ctx: Path) -> None:
    write(ctx, {"Dockerfile": f"FROM {base}\nRUN date +%s%N > /stamp\n"})
    first = build_image(client, BuildSpec(ctx, tags=(f"{name}:a",)))
    events: list[BuildEvent] = []
    cached = build_image(client, BuildSpec(ctx, tags=(f"{name}:a",)), on_event=events.append)
    assert cached.image_id == first.image_id
    assert any("Using cache" in e.text for e in events)
    events.clear()
    fresh = build_image(
        client, BuildSpec(ctx, tags=(f"{name}:a",), no_cache=True), on_event=events.append
    )
    assert fresh.image_id != first.image_id
    assert not any("Using cache" in e.text for e in events)


def test_failing_step_is_named_with_its_output(client: EngineClient, base: str, ctx: Path) -> None:
    write(
        ctx,
        {"Dockerfile": f"FROM {base}\nRUN echo fine\nRUN echo about-to-fail && false\nRUN true\n"},
    )
    with pytest.raises(BuildFailed) as failed:
        build_image(client, BuildSpec(ctx))
    error = failed.value
    assert error.step is not None
    assert (error.step.number, error.step.total) == (3, 4)
    assert error.step.instruction == "RUN echo about-to-fail && false"
    assert error.message == "Step 3/4: RUN echo about-to-fail && false failed: exited with code 1"
    assert "about-to-fail" in error.step.output
    assert error.details and "about-to-fail" in error.details and error.hint


def test_cancel_stops_a_long_step(
    client: EngineClient, docker_client, base: str, name: str, ctx: Path
) -> None:
    write(ctx, {"Dockerfile": f"FROM {base}\nRUN echo started && sleep 60\n"})
    cancel = threading.Event()
    started = threading.Event()

    def on_event(event: BuildEvent) -> None:
        if event.text == "started":
            started.set()

    outcome: list[BaseException] = []

    def run() -> None:
        try:
            build_image(client, BuildSpec(ctx, tags=(f"{name}:c",)), on_event, cancel)
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    assert started.wait(60), "the RUN step never started"
    began = time.monotonic()
    cancel.set()
    thread.join(10)
    assert not thread.is_alive()
    assert time.monotonic() - began < 3
    assert len(outcome) == 1 and isinstance(outcome[0], Cancelled)
    assert not docker_client.api.images(name=f"{name}:c")
    # The engine stops the step's container once the client went away.
    harness.wait_until(
        lambda: not docker_client.api.containers(filters={"ancestor": base, "status": "running"}),
        timeout=30,
        what="the build container to stop",
    )


def test_cli_build_prints_steps_and_fails_with_the_step(
    engine, docker_client, base: str, name: str, ctx: Path, capsys
) -> None:
    from toolbox import cli
    from toolbox.errors import EXIT_ENGINE, EXIT_USAGE

    write(ctx, {"Dockerfile": f"FROM {base}\nARG V\nRUN echo cli-$V\n"})
    tag = f"{name}:cli"
    argv = ["build", str(ctx), "-t", tag, "--build-arg", "V=9", "--engine", engine.url]
    assert cli.main(argv) == 0
    out = capsys.readouterr().out.splitlines()
    steps = [line for line in out if line.startswith("Step ")]
    assert steps == [f"Step 1/3 : FROM {base}", "Step 2/3 : ARG V", "Step 3/3 : RUN echo cli-$V"]
    assert "cli-9" in out and out[-1].endswith(f" as {tag}")
    assert docker_client.images.get(tag)

    assert cli.main(["build", str(ctx), "--build-arg", "V", "--engine", engine.url]) == EXIT_USAGE
    assert "KEY=VALUE" in capsys.readouterr().err
    write(ctx, {"Dockerfile": f"FROM {base}\nRUN false\n"})
    assert cli.main(["build", str(ctx), "-q", "--engine", engine.url]) == EXIT_ENGINE
    err = capsys.readouterr().err
    assert "Error: Step 2/2: RUN false failed: exited with code 1" in err


DOCKER_CLI = shutil.which("docker")


@pytest.mark.skipif(DOCKER_CLI is None, reason="the docker CLI is not installed")
def test_context_matches_the_docker_cli(
    engine, docker_client, client: EngineClient, base: str, name: str, ctx: Path
) -> None:
    """The same folder and .dockerignore built by the docker CLI (legacy builder) and by
    Toolbox: ``COPY . /ctx`` sees exactly the same files."""
    write(
        ctx,
        {
            "Dockerfile": f"FROM {base}\nCOPY . /ctx\n",
            ".dockerignore": "# comment\n**/*.tmp\n!keep/**/*.tmp\nlogs\n!logs/important.log\n"
            "/build/\nsrc/*/generated\n  spaced.txt  \n! notes.md\n*.md\n!README.md\n",
            "a.tmp": "",
            "keep/deep/b.tmp": "",
            "keep/c.txt": "",
            "logs/x.log": "",
            "logs/important.log": "",
            "build/out.bin": "",
            "src/mod/generated/g.py": "",
            "src/mod/real.py": "",
            "spaced.txt": "",
            "notes.md": "",
            "README.md": "",
            "other.md": "",
        },
    )
    listing = "find /ctx | sort"
    env = {**os.environ, "DOCKER_HOST": engine.url, "DOCKER_BUILDKIT": "0"}
    cli_tag = f"{name}:cli"
    subprocess.run(
        [DOCKER_CLI or "docker", "build", "-q", "-t", cli_tag, str(ctx)],
        env=env,
        check=True,
        capture_output=True,
    )
    ours = build_image(client, BuildSpec(ctx, tags=(f"{name}:ours",)))
    expected = run_in(docker_client, cli_tag, listing)
    assert run_in(docker_client, ours.image_id, listing) == expected
    assert "/ctx/keep/deep/b.tmp" in expected and "/ctx/a.tmp" not in expected
