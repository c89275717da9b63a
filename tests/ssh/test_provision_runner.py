"""The provisioning step runner over a real SSH connection (the loopback sshd as the guest).

The steps here touch only a temp folder; the real steps run against a QEMU guest in
tests/vm/test_provision.py.
"""

from __future__ import annotations

import shlex
import threading
from pathlib import Path

import pytest

from tests.ssh.conftest import LocalSSHD
from toolbox.errors import Cancelled
from toolbox.progress import Progress
from toolbox.provision import ProvisionContext, Step, StepFailed, run_steps
from toolbox.provision.steps import ProvisionRun
from toolbox.ssh.client import GuestSSH


def _ctx(sshd: LocalSSHD, tmp_path: Path, **kwargs: object) -> ProvisionContext:
    ssh = GuestSSH(
        sshd.host, sshd.port, sshd.user, sshd.user_key.private_path, sshd.host_key.public_line
    )
    return ProvisionContext(
        "test",
        ssh,
        tmp_path / "machine",
        tmp_path / "certs",
        engine_host_port=1,
        **kwargs,  # type: ignore[arg-type]
    )


def _file_step(path: Path, content: str) -> Step:
    """A real idempotent step: the guest file holds ``content``."""

    def check(run: ProvisionRun) -> bool:
        return run.ssh.read_text(str(path)) == content

    def apply(run: ProvisionRun) -> None:
        run.ssh.run(f"printf %s {shlex.quote(content)} > {shlex.quote(str(path))}")

    return Step(path.name, f"Writing {path.name}", check, apply, check, "fix the file")


def test_steps_apply_once_then_change_nothing(sshd: LocalSSHD, tmp_path: Path) -> None:
    events: list[Progress] = []
    ctx = _ctx(sshd, tmp_path, progress=events.append)
    (tmp_path / "b").write_text("already")
    steps = (_file_step(tmp_path / "a", "hello"), _file_step(tmp_path / "b", "already"))
    try:
        first = run_steps(ctx, steps)
        assert [(s.name, s.changed) for s in first.steps] == [("a", True), ("b", False)]
        assert (tmp_path / "a").read_text() == "hello"
        second = run_steps(ctx, steps)
        assert not second.changed and second.changed_steps == ()
        assert second.seconds >= 0
    finally:
        ctx.ssh.close()
    ids = {e.step for e in events}
    assert ids == {"provision.a", "provision.b"}
    done = [e for e in events if e.done]
    assert [(e.step, e.message) for e in done[:2]] == [
        ("provision.a", "Writing a (done)"),
        ("provision.b", "Writing b (already done)"),
    ]


def test_a_step_whose_verify_fails_names_the_step(sshd: LocalSSHD, tmp_path: Path) -> None:
    ctx = _ctx(sshd, tmp_path)

    def never(run: ProvisionRun) -> bool:
        return run.ssh.run("false", check=False).ok

    def noop(run: ProvisionRun) -> None:
        run.ssh.run("true")

    step = Step("stubborn", "Doing the thing", never, noop, never, "do it by hand")
    with pytest.raises(StepFailed) as info:
        run_steps(ctx, (step,))
    ctx.ssh.close()
    assert info.value.step == "stubborn"
    assert "applied, but its check still fails" in info.value.message
    assert info.value.hint == "do it by hand"


def test_a_failing_command_becomes_a_step_failure_with_its_output(
    sshd: LocalSSHD, tmp_path: Path
) -> None:
    ctx = _ctx(sshd, tmp_path)

    def apply(run: ProvisionRun) -> None:
        run.ssh.run("echo 'E: Unable to locate package nope' >&2; exit 100")

    step = Step("engine", "Installing", lambda run: False, apply, lambda run: True, "retry")
    with pytest.raises(StepFailed) as info:
        run_steps(ctx, (step,))
    ctx.ssh.close()
    assert info.value.step == "engine"
    assert info.value.message.startswith("Installing failed:")
    assert "Unable to locate package nope" in (info.value.details or "")
    assert "exit code 100" in (info.value.details or "")


def test_cancel_stops_before_the_next_step(sshd: LocalSSHD, tmp_path: Path) -> None:
    cancel = threading.Event()
    ctx = _ctx(sshd, tmp_path, cancel=cancel)

    def apply(run: ProvisionRun) -> None:
        cancel.set()

    first = Step("one", "One", lambda run: False, apply, lambda run: True, "")
    second = _file_step(tmp_path / "never", "x")
    with pytest.raises(Cancelled):
        run_steps(ctx, (first, second))
    ctx.ssh.close()
    assert not (tmp_path / "never").exists()


def test_the_provisioning_log_has_every_step_and_the_failure(
    sshd: LocalSSHD, tmp_path: Path
) -> None:
    log = tmp_path / "logs" / "provision.log"
    ctx = _ctx(sshd, tmp_path, log_path=log)

    def apply(run: ProvisionRun) -> None:
        run.ssh.run("echo 'E: Unable to locate package nope' >&2; exit 100")

    ok = _file_step(tmp_path / "a", "hello")
    bad = Step("engine", "Installing", lambda run: False, apply, lambda run: True, "retry")
    with pytest.raises(StepFailed):
        run_steps(ctx, (ok, bad))
    ctx.ssh.close()
    text = log.read_text()
    assert "provisioning test: a, engine" in text
    assert "[a] Writing a (done)" in text
    assert "[engine] Installing" in text
    assert "FAILED: Installing failed:" in text
    assert "Unable to locate package nope" in text  # the command's output, for the user
    assert text.count("\n") == len(text.splitlines())  # one entry per line


def test_an_optional_step_that_fails_is_reported_and_provisioning_goes_on(
    sshd: LocalSSHD, tmp_path: Path
) -> None:
    log = tmp_path / "provision.log"
    events: list[Progress] = []
    ctx = _ctx(sshd, tmp_path, log_path=log, progress=events.append)

    def apply(run: ProvisionRun) -> None:
        run.ssh.run("echo 'dpkg: error processing package fuse3' >&2; exit 100")

    optional = Step(
        "shares", "Installing sshfs", lambda run: False, apply, lambda run: True,
        "shares cannot be mounted", optional=True,
    )  # fmt: skip
    after = _file_step(tmp_path / "after", "still done")
    report = run_steps(ctx, (optional, after))
    ctx.ssh.close()
    assert [(s.name, s.changed) for s in report.steps] == [("shares", False), ("after", True)]
    assert "Installing sshfs failed" in report.steps[0].warning
    assert "shares cannot be mounted" in report.steps[0].warning
    assert report.steps[1].warning == ""
    assert (tmp_path / "after").read_text() == "still done"
    assert "failed, going on without it" in next(e.message for e in events if e.done)
    text = log.read_text()
    assert "optional step shares failed, going on" in text
    assert "dpkg: error processing package fuse3" in text
