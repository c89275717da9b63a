"""Provisioning a guest over SSH: idempotent steps, each check -> apply -> verify with a hint.

``provision(ctx)`` runs them in order: hostname, engine install, TLS files, systemd drop-in,
enable + start, ready (docker-py pings over TLS through the host forward). A step whose check
passes is not applied, so running it again on a provisioned machine changes nothing.
"""

from __future__ import annotations

import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from pathlib import Path

from toolbox import tls
from toolbox.errors import (
    Cancelled,
    CommandError,
    HostKeyMismatch,
    ProvisionError,
    SSHError,
)
from toolbox.progress import Progress, ProgressCallback
from toolbox.provision import certs as certs_mod
from toolbox.provision import clock
from toolbox.provision import engine as eng
from toolbox.ssh.client import GuestSSH


class StepFailed(ProvisionError):
    """A provisioning step failed; ``step`` names it (for the GUI's step list)."""

    def __init__(self, step: str, message: str, hint: str | None, details: str | None = None):
        super().__init__(message, hint, details)
        self.step = step


@dataclass(frozen=True)
class ProvisionContext:
    """Everything provisioning needs about one machine; ``ssh`` may be connected or not."""

    machine: str
    ssh: GuestSSH
    machine_dir: Path
    ca_dir: Path
    _: KW_ONLY
    engine_guest_port: int = 2376
    engine_host_port: int
    san_names: tuple[str, ...] = ()
    progress: ProgressCallback | None = None
    cancel: threading.Event | None = None
    engine_source: eng.EngineSource | None = None  # None: Docker's repo, else docker.io
    install_timeout: float = 1800.0
    ready_timeout: float = 180.0
    log_path: Path | None = None  # the machine's provisioning log, appended to


@dataclass(frozen=True)
class StepResult:
    name: str
    changed: bool
    seconds: float
    warning: str = ""  # an optional step that failed: why (provisioning went on)


@dataclass(frozen=True)
class ProvisionReport:
    steps: tuple[StepResult, ...]

    @property
    def changed(self) -> bool:
        return any(s.changed for s in self.steps)

    @property
    def changed_steps(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.steps if s.changed)

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.steps)


@dataclass
class ProvisionRun:
    """One run over the steps: the context plus what earlier steps learned or changed."""

    ctx: ProvisionContext
    force_certs: bool = False
    restart: bool = False
    engine_plan: eng.EnginePlan | None = None
    _addresses: list[str] | None = None
    _dockerd: str | None = None
    _socket_activation: bool | None = None
    _step: str = "provision"
    _last: tuple[str, float | None] = ("", None)
    _floor: float = 0.0
    log: list[str] = field(default_factory=list)

    @property
    def ssh(self) -> GuestSSH:
        return self.ctx.ssh

    def write_log(self, line: str) -> None:
        """Append one line to the provisioning log (if the machine has one); never fails
        provisioning (a full disk loses log lines, not the machine)."""
        path = self.ctx.log_path
        if path is None:
            return
        stamp = time.strftime("%Y-%m-%d %H:%M:%S")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a", encoding="utf-8") as out:
                out.write(f"{stamp} [{self._step}] {line.rstrip()}\n")
        except OSError:
            pass

    def report(self, message: str, fraction: float | None = None, done: bool = False) -> None:
        if (message, fraction) != self._last:
            self.write_log(message)
        if self.ctx.progress is None:
            return
        if fraction is not None:
            fraction = self._floor = max(fraction, self._floor)  # a bar never goes back
        if (message, fraction) == self._last and not done:
            return
        self._last = (message, fraction)
        self.ctx.progress(Progress(f"provision.{self._step}", message, fraction, done=done))

    def guest_addresses(self) -> list[str]:
        if self._addresses is None:
            out = self.ssh.run(certs_mod.IP_ADDR_COMMAND, 30, check=False).stdout
            self._addresses = certs_mod.parse_ipv4_addresses(out)
        return self._addresses

    def wanted_sans(self) -> tuple[str, ...]:
        return certs_mod.server_sans(
            self.guest_addresses(), (*self.ctx.san_names, self.ctx.machine)
        )

    def dockerd(self) -> str:
        if self._dockerd is None:
            found = self.ssh.run(
                "for p in "
                + " ".join(eng.DOCKERD_CANDIDATES)
                + '; do [ -x "$p" ] && echo "$p" && exit 0; done; exit 1',
                30,
                check=False,
            )
            if not found.ok:
                raise ProvisionError(
                    "dockerd is not installed in the guest",
                    hint="Run provisioning again; the engine install step puts it there.",
                )
            self._dockerd = found.stdout.strip()
        return self._dockerd

    def socket_activation(self) -> bool:
        if self._socket_activation is None:
            result = self.ssh.run("systemctl cat docker.socket >/dev/null 2>&1", 30, check=False)
            self._socket_activation = result.ok
        return self._socket_activation

    def dropin(self) -> str:
        return eng.dropin_text(self.dockerd(), self.ctx.engine_guest_port, self.socket_activation())


Check = Callable[[ProvisionRun], bool]
Apply = Callable[[ProvisionRun], None]


@dataclass(frozen=True)
class Step:
    """One idempotent step: ``apply`` runs only when ``check`` fails; ``verify`` must pass after."""

    name: str
    description: str
    check: Check
    apply: Apply
    verify: Check
    hint: str
    # An optional step's failure is reported and logged, and provisioning goes on: what it
    # sets up is a convenience (the shares' sshfs), not the engine.
    optional: bool = False


# -- hostname ---------------------------------------------------------------------------------


def _hostname_check(run: ProvisionRun) -> bool:
    name = shlex.quote(run.ctx.machine)
    command = (
        f'[ "$(hostname)" = {name} ] && [ "$(cat /etc/hostname)" = {name} ] && '
        f"grep -qE '^127\\.0\\.1\\.1[[:space:]]+'{name}'([[:space:]]|$)' /etc/hosts"
    )
    return run.ssh.run(command, 30, check=False).ok


def _hostname_apply(run: ProvisionRun) -> None:
    name = shlex.quote(run.ctx.machine)
    run.ssh.run(
        f"hostnamectl set-hostname {name} 2>/dev/null || "
        f"{{ echo {name} > /etc/hostname && hostname {name}; }}; "
        f"echo {name} > /etc/hostname; "
        "sed -i '/^127\\.0\\.1\\.1[[:space:]]/d' /etc/hosts; "
        f"echo 127.0.1.1 {name} >> /etc/hosts",
        60,
        sudo=True,
    )


# -- engine install ---------------------------------------------------------------------------

_ENGINE_CHECK = (
    "{ [ -x /usr/bin/dockerd ] || [ -x /usr/sbin/dockerd ]; } && "
    "{ [ -x /sbin/apparmor_parser ] || [ -x /usr/sbin/apparmor_parser ]; } && "
    "systemctl cat docker.service >/dev/null 2>&1"
)


def _engine_check(run: ProvisionRun) -> bool:
    return run.ssh.run(_ENGINE_CHECK, 30, check=False).ok


class _AptProgress:
    """Turns apt's status lines into progress reports within [start, end] of the step."""

    def __init__(self, run: ProvisionRun, start: float, end: float, what: str):
        self.run, self.start, self.end, self.what = run, start, end, what

    def __call__(self, line: str) -> None:
        self.run.log.append(line)
        self.run.write_log("  " + line)
        status = eng.parse_apt_status(line)
        if status is None:
            return
        if status.kind == "dlstatus":
            fraction = self.start + (self.end - self.start) * 0.3 * status.percent / 100
            self.run.report(f"{self.what}: downloading ({status.percent:.0f}%)", fraction)
        elif status.kind == "pmstatus":
            fraction = self.start + (self.end - self.start) * (0.3 + 0.7 * status.percent / 100)
            self.run.report(f"{self.what}: {status.message}", fraction)


def _apt(run: ProvisionRun, argv: list[str], start: float, end: float, what: str) -> None:
    run.ssh.run(
        shlex.join(argv),
        run.ctx.install_timeout,
        sudo=True,
        on_output=_AptProgress(run, start, end, what),
        cancel=run.ctx.cancel,
        hint="apt in the guest failed; check that the guest reaches the Debian mirror.",
    )


def _engine_apply(run: ProvisionRun) -> None:
    ssh = run.ssh
    run.report("Looking at the guest system", 0.0)
    os_release = eng.parse_os_release(ssh.run("cat /etc/os-release", 30).stdout)
    arch = ssh.run("dpkg --print-architecture", 30).stdout.strip()
    reachable = False
    if run.ctx.engine_source is not eng.EngineSource.DISTRO and eng.docker_repo_supported(
        os_release, arch
    ):
        run.report(f"Checking whether {eng.DOCKER_REPO_HOST} is reachable", 0.01)
        reachable = ssh.run(eng.repo_probe_command(), eng.PROBE_SECONDS + 10, check=False).ok
    plan = eng.choose_engine_plan(os_release, arch, reachable, run.ctx.engine_source)
    if plan.source is eng.EngineSource.DOCKER:
        try:
            _apt(run, eng.apt_update_argv(), 0.02, 0.05, "Updating package lists")
            prerequisites = eng.apt_install_argv(eng.REPO_PREREQUISITES)
            _apt(run, prerequisites, 0.05, 0.08, "Installing curl")
            run.report("Adding Docker's apt repository", 0.08)
            for command in eng.docker_repo_setup_commands(plan):
                ssh.run(command, 120, sudo=True, cancel=run.ctx.cancel)
            _apt(run, eng.apt_update_argv(), 0.08, 0.1, "Updating package lists")
            _apt(run, eng.apt_install_argv(plan.packages), 0.1, 1.0, "Installing Docker")
            run.engine_plan = plan
            return
        except CommandError as exc:
            ssh.run(eng.docker_repo_remove_command(), 60, check=False, sudo=True)
            reason = f"Docker's repository failed ({exc.message}); using docker.io"
            plan = eng.choose_engine_plan(os_release, arch, False, eng.EngineSource.DISTRO)
            plan = eng.EnginePlan(plan.source, plan.packages, reason=reason)
    run.report(f"Installing the engine: {plan.reason}", 0.02)
    _apt(run, eng.apt_update_argv(), 0.02, 0.08, "Updating package lists")
    _apt(run, eng.apt_install_argv(plan.packages), 0.08, 1.0, "Installing docker.io")
    run.engine_plan = plan


# -- shares -------------------------------------------------------------------------------------

_SHARES_CHECK = "command -v sshfs >/dev/null 2>&1 && command -v fusermount3 >/dev/null 2>&1"


def _shares_check(run: ProvisionRun) -> bool:
    return run.ssh.run(_SHARES_CHECK, 30, check=False).ok


_INITRAMFS_CONF = "/etc/initramfs-tools/update-initramfs.conf"


def sshfs_install_command() -> str:
    """apt-get install sshfs, as a shell command for root, with two things set aside:

    - fuse3's postinst asks for a new initramfs, which takes 3 to 4 minutes under TCG and
      is not needed (nothing mounts a FUSE root at boot): ``update_initramfs=no`` for the
      length of this one install, the file put back afterwards whatever happens;
    - its scripts' ``echo`` to stdout fails with EIO on our SSH exec channel (seen here:
      "update-initramfs: 16: echo: echo: I/O error", and the install fails): apt's output
      goes to a log file in the guest and only its status lines (fd 3) come back to us.
    """
    argv = eng.apt_install_argv(("sshfs",))
    argv = ["APT::Status-Fd=3" if a == "APT::Status-Fd=1" else a for a in argv]
    conf, saved = _INITRAMFS_CONF, _INITRAMFS_CONF + ".toolbox"
    return (
        f"if [ -f {conf} ]; then cp -p {conf} {saved} && "
        f"sed -i 's/^update_initramfs=.*/update_initramfs=no/' {conf}; fi; "
        f"{shlex.join(argv)} 3>&1 >>/var/log/toolbox-apt.log 2>&1; rc=$?; "
        f"if [ -f {saved} ]; then mv -f {saved} {conf}; fi; "
        "[ $rc -eq 0 ] || tail -n 20 /var/log/toolbox-apt.log >&2; exit $rc"
    )


def _shares_apply(run: ProvisionRun) -> None:
    """sshfs mounts the host's shared folders (the host agent runs it over SSH)."""
    _apt(run, eng.apt_update_argv(), 0.0, 0.4, "Updating package lists")
    run.ssh.run(
        sshfs_install_command(),
        run.ctx.install_timeout,
        sudo=True,
        on_output=_AptProgress(run, 0.4, 1.0, "Installing sshfs"),
        cancel=run.ctx.cancel,
        hint="apt in the guest failed; `toolbox ssh NAME -- cat /var/log/toolbox-apt.log` "
        "shows its output.",
    )


# -- TLS --------------------------------------------------------------------------------------

_GUEST_TLS = eng.GuestTLSPaths()


def _guest_tls_sums(run: ProvisionRun) -> dict[str, str]:
    paths = (_GUEST_TLS.ca, _GUEST_TLS.cert, _GUEST_TLS.key)
    out = run.ssh.run("sha256sum " + " ".join(paths), 30, check=False, sudo=True).stdout
    return certs_mod.parse_sha256sum(out)


def _local_tls(run: ProvisionRun) -> dict[str, Path]:
    files = certs_mod.MachineCerts(run.ctx.machine_dir)
    return {
        _GUEST_TLS.ca: files.ca,
        _GUEST_TLS.cert: files.server.cert,
        _GUEST_TLS.key: files.server.key,
    }


def _tls_check(run: ProvisionRun) -> bool:
    if run.force_certs:
        return False
    ca = tls.ensure_ca(run.ctx.ca_dir)
    files = certs_mod.MachineCerts(run.ctx.machine_dir)
    if not (
        certs_mod.server_cert_ok(files, ca, run.wanted_sans())
        and certs_mod.client_cert_ok(files, ca)
    ):
        return False
    return _tls_in_guest(run)


def _tls_in_guest(run: ProvisionRun) -> bool:
    sums = _guest_tls_sums(run)
    return all(
        sums.get(remote) == certs_mod.sha256_file(local)
        for remote, local in _local_tls(run).items()
    )


def _tls_apply(run: ProvisionRun) -> None:
    ca = tls.ensure_ca(run.ctx.ca_dir)
    run.report("Issuing certificates", 0.2)
    certs_mod.ensure_machine_certs(
        run.ctx.machine_dir, ca, run.wanted_sans(), force=run.force_certs
    )
    run.force_certs = False  # issued once per run; verify looks at the result
    run.report("Copying the server certificate into the guest", 0.6)
    for remote, local in _local_tls(run).items():
        mode = 0o600 if remote == _GUEST_TLS.key else 0o644
        run.ssh.upload(local, remote, mode=mode, sudo=True)
    run.restart = True


# -- systemd drop-in ---------------------------------------------------------------------------


def _dropin_check(run: ProvisionRun) -> bool:
    if run.ssh.read_text(eng.DROPIN_PATH) != run.dropin():
        return False
    reload = run.ssh.run(
        "systemctl show -p NeedDaemonReload --value docker.service", 30, check=False
    )
    return reload.stdout.strip() == "no"


def _dropin_apply(run: ProvisionRun) -> None:
    run.ssh.upload(run.dropin().encode(), eng.DROPIN_PATH, mode=0o644, sudo=True)
    run.ssh.run("systemctl daemon-reload", 120, sudo=True)
    run.restart = True


def _dropin_verify(run: ProvisionRun) -> bool:
    if not _dropin_check(run):
        return False
    shown = run.ssh.run("systemctl show -p ExecStart --value docker.service", 30, check=False)
    return f"tcp://0.0.0.0:{run.ctx.engine_guest_port}" in shown.stdout


# -- enable + start ------------------------------------------------------------------------------


def _units(run: ProvisionRun) -> str:
    return "docker.socket docker.service" if run.socket_activation() else "docker.service"


def _service_check(run: ProvisionRun) -> bool:
    if run.restart:
        return False
    enabled = run.ssh.run(f"systemctl is-enabled {_units(run)}", 30, check=False)
    if not enabled.ok:
        return False
    files = [eng.DROPIN_PATH, _GUEST_TLS.ca, _GUEST_TLS.cert, _GUEST_TLS.key]
    # Active and started after the files last changed: it runs with them.
    return run.ssh.run(eng.restart_needed_command(files), 30, check=False, sudo=True).ok


def _service_apply(run: ProvisionRun) -> None:
    run.ssh.run(f"systemctl enable {_units(run)}", 120, sudo=True)
    run.report("Restarting dockerd", 0.5)
    result = run.ssh.run("systemctl restart docker.service", 300, check=False, sudo=True)
    if not result.ok:
        journal = run.ssh.run(
            "journalctl -u docker.service -n 40 --no-pager", 60, check=False, sudo=True
        )
        raise StepFailed(
            "service",
            "dockerd did not start in the guest",
            hint="Read the journal below; `toolbox ssh` then `sudo journalctl -u docker` "
            "shows more.",
            details=(result.stderr + "\n" + journal.stdout).strip(),
        )
    run.restart = False


def _service_verify(run: ProvisionRun) -> bool:
    active = run.ssh.run("systemctl is-active docker.service", 30, check=False)
    return active.stdout.strip() == "active"


# -- guest clock -------------------------------------------------------------------------------


def _clock_check(run: ProvisionRun) -> bool:
    for path, content, _ in clock.FILES:
        if run.ssh.read_text(path) != content:
            return False
    enabled = run.ssh.run(f"systemctl is-enabled {clock.TIMER_UNIT}", 30, check=False)
    active = run.ssh.run(f"systemctl is-active {clock.TIMER_UNIT}", 30, check=False)
    return enabled.stdout.strip() == "enabled" and active.stdout.strip() == "active"


def _clock_apply(run: ProvisionRun) -> None:
    for path, content, mode in clock.FILES:
        run.ssh.upload(content.encode(), path, mode=mode, sudo=True)
    run.ssh.run("systemctl daemon-reload", 120, sudo=True)
    run.ssh.run(f"systemctl enable --now {clock.TIMER_UNIT}", 120, sudo=True)


# -- ready -----------------------------------------------------------------------------------------


def _ready_check(run: ProvisionRun) -> bool:
    return eng.ping_engine(run.ctx.machine_dir, run.ctx.engine_host_port)


def _ready_apply(run: ProvisionRun) -> None:
    run.report(f"Waiting for the engine on 127.0.0.1:{run.ctx.engine_host_port}", None)
    eng.wait_engine_ready(
        run.ctx.machine_dir, run.ctx.engine_host_port, run.ctx.ready_timeout, run.ctx.cancel
    )


STEPS: tuple[Step, ...] = (
    Step(
        "hostname",
        "Setting the guest's hostname",
        _hostname_check,
        _hostname_apply,
        _hostname_check,
        "The guest refused to change its hostname; check that sudo works for the guest user.",
    ),
    Step(
        "clock",
        "Keeping the guest clock with the host's",
        _clock_check,
        _clock_apply,
        _clock_check,
        "systemd in the guest did not start toolbox-clock-sync.timer; see "
        "`systemctl status toolbox-clock-sync.timer` in the guest (`toolbox ssh`).",
    ),
    Step(
        "engine",
        "Installing the Docker engine",
        _engine_check,
        _engine_apply,
        _engine_check,
        "Installing packages failed: the guest must reach its Debian mirror (check the host's "
        "network or proxy), then retry.",
    ),
    Step(
        "shares",
        "Installing sshfs for the shared folders",
        _shares_check,
        _shares_apply,
        _shares_check,
        "Installing sshfs failed, so shared folders cannot be mounted in this machine (the "
        "engine works); `toolbox logs NAME --provision` shows apt's output.",
        optional=True,
    ),
    Step(
        "tls",
        "Securing the engine with TLS certificates",
        _tls_check,
        _tls_apply,
        _tls_check,
        "Run `toolbox regenerate-certs`; if the CA itself is damaged, remove "
        "<data>/certs to make a new one (every machine then needs new certs).",
    ),
    Step(
        "dropin",
        "Configuring dockerd to listen on TLS",
        _dropin_check,
        _dropin_apply,
        _dropin_verify,
        "systemd in the guest did not take the drop-in; see `systemctl status docker`.",
    ),
    Step(
        "service",
        "Starting the Docker engine",
        _service_check,
        _service_apply,
        _service_verify,
        "dockerd did not start; see `sudo journalctl -u docker` in the guest (`toolbox ssh`).",
    ),
    Step(
        "ready",
        "Waiting for the engine to answer",
        _ready_check,
        _ready_apply,
        _ready_check,
        "The engine runs but does not answer through the port forward; check the machine's "
        "forwards (`toolbox inspect`) and try `toolbox regenerate-certs`.",
    ),
)


def run_steps(
    ctx: ProvisionContext, steps: tuple[Step, ...], *, force_certs: bool = False
) -> ProvisionReport:
    """Run ``steps`` in order, each check -> apply -> verify; stop at the first failure
    with a ``StepFailed`` naming the step and carrying its hint."""
    run = ProvisionRun(ctx, force_certs=force_certs)
    run.write_log(f"provisioning {ctx.machine}: {', '.join(s.name for s in steps)}")
    if not ctx.ssh.connected:
        ctx.ssh.connect()
    results: list[StepResult] = []
    try:
        for step in steps:
            try:
                results.append(_run_step(run, step))
            except StepFailed as exc:
                if not step.optional:
                    raise
                warning = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
                run.write_log(f"optional step {step.name} failed, going on: {warning}")
                for line in str(exc.details or "").splitlines():
                    run.write_log("  " + line)
                run.report(f"{step.description}: failed, going on without it", 1.0, True)
                results.append(StepResult(step.name, False, 0.0, warning))
    except BaseException as exc:
        run.write_log(f"FAILED: {exc}")
        details = getattr(exc, "details", None)
        if details:
            for line in str(details).splitlines():
                run.write_log("  " + line)
        raise
    run.write_log("provisioning finished")
    return ProvisionReport(tuple(results))


def _run_step(run: ProvisionRun, step: Step) -> StepResult:
    ctx = run.ctx
    if ctx.cancel is not None and ctx.cancel.is_set():
        raise Cancelled("Provisioning was cancelled")
    run._step, run._last, run._floor = step.name, ("", None), 0.0
    run.report(step.description, 0.0)
    started = time.monotonic()
    try:
        changed = not step.check(run)
        if changed:
            step.apply(run)
            if not step.verify(run):
                raise StepFailed(
                    step.name,
                    f"{step.description}: applied, but its check still fails",
                    step.hint,
                )
    except (StepFailed, Cancelled, HostKeyMismatch):
        raise
    except CommandError as exc:
        raise StepFailed(
            step.name,
            f"{step.description} failed: {exc.message}",
            exc.hint or step.hint,
            details=str(exc),
        ) from exc
    except (ProvisionError, SSHError) as exc:
        raise StepFailed(
            step.name,
            f"{step.description} failed: {exc.message}",
            exc.hint or step.hint,
            details=exc.details,
        ) from exc
    seconds = time.monotonic() - started
    run.report(step.description + (" (done)" if changed else " (already done)"), 1.0, True)
    return StepResult(step.name, changed, seconds)


def provision(ctx: ProvisionContext) -> ProvisionReport:
    """Bring the guest to a running, TLS-secured engine; safe to run again at any point."""
    return run_steps(ctx, STEPS)


def regenerate_certs(ctx: ProvisionContext) -> ProvisionReport:
    """Reissue the server and client certificates, put them in the guest, restart dockerd."""
    wanted = {"tls", "service", "ready"}
    steps = tuple(s for s in STEPS if s.name in wanted)
    return run_steps(ctx, steps, force_certs=True)
