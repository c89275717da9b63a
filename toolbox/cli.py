"""The ``toolbox`` command line: the same services the GUI uses, headless.

Results go to stdout (tables, JSON, ``env`` output); progress, errors and hints to stderr,
so ``eval $(toolbox env)`` and ``toolbox ls --json | jq`` see only what they should.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import enum
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from toolbox import __version__, dockercontext
from toolbox.errors import (
    EXIT_COMMAND,
    EXIT_DRIVER,
    EXIT_ENGINE,
    EXIT_GENERIC,
    EXIT_IMAGE,
    EXIT_INTERRUPTED,
    EXIT_MACHINE,
    EXIT_NOT_FOUND,
    EXIT_PROVISION,
    EXIT_SSH,
    EXIT_USAGE,
    MachineError,
    ToolboxError,
    UsageError,
)
from toolbox.machine.model import (
    DEFAULT_CPUS,
    DEFAULT_DISK_GIB,
    DEFAULT_MEMORY_MIB,
    DEFAULT_NAME,
    MachineState,
    PortBind,
    format_duration,
    parse_disk_gib,
    parse_forward,
    parse_memory_mib,
    parse_share,
    validate_name,
)

if TYPE_CHECKING:
    from toolbox.cli_progress import ProgressPrinter

DRIVER_CHOICES = ("qemu", "virtualbox")
SHELL_CHOICES = ("bash", "zsh", "fish", "powershell", "cmd")

EPILOG = f"""\
NAME defaults to "{DEFAULT_NAME}" where it is optional.

exit codes:
  0    success
  {EXIT_GENERIC}    unexpected failure
  {EXIT_USAGE}    bad arguments or input
  {EXIT_NOT_FOUND}    no such machine or image
  {EXIT_ENGINE}    the Docker engine failed or could not be reached
  {EXIT_MACHINE}    machine error (damaged record, busy, not running, interrupted create)
  {EXIT_DRIVER}    hypervisor error (VirtualBox or QEMU missing or failing)
  {EXIT_SSH}    SSH to the guest failed (no banner, host key mismatch)
  {EXIT_PROVISION}    provisioning the engine failed
  {EXIT_IMAGE}    guest image download, verification or build failed
  {EXIT_COMMAND}   a command failed
  {EXIT_INTERRUPTED}  interrupted (Ctrl-C)
  other with `ssh NAME -- CMD`: the remote command's exit code
"""


# -- argument types ----------------------------------------------------------------------


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Wrap a validator so argparse prints its message as a usage error."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ToolboxError as exc:
            raise argparse.ArgumentTypeError(
                exc.message + (f" ({exc.hint})" if exc.hint else "")
            ) from exc

    convert.__name__ = getattr(parse, "__name__", "value")
    return convert


def _cpus(text: str) -> int:
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 256:
        raise UsageError(f"Invalid CPU count: {text!r}", hint="Use a number from 1 to 256.")
    return int(text)


NAME_ARG = _arg(validate_name)


def _add_name(parser: argparse.ArgumentParser, nargs: str | None = "?") -> None:
    parser.add_argument(
        "name",
        metavar="NAME",
        nargs=nargs,
        default=DEFAULT_NAME if nargs == "?" else None,
        type=NAME_ARG,
        help=f"machine name (default: {DEFAULT_NAME})" if nargs == "?" else "machine name",
    )


# -- output helpers ----------------------------------------------------------------------


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_to_json(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def print_json(value: Any, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    json.dump(_to_json(value), out, indent=2)
    out.write("\n")


def print_table(rows: Sequence[Sequence[str]], headers: Sequence[str], out: TextIO) -> None:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    for row in [headers, *rows]:
        out.write("   ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        out.write("\n")


def _progress(args: argparse.Namespace) -> ProgressPrinter:
    """Progress on stderr; use it as a context manager so a bar line is always ended."""
    from toolbox.cli_progress import ProgressPrinter

    return ProgressPrinter(sys.stderr)


def _service(args: argparse.Namespace) -> Any:
    from toolbox.machine.service import MachineService, ProcessAgents

    return MachineService(agents=ProcessAgents())


def _phase_line(result: Any) -> str:
    parts = [
        f"{p.phase} {'(done before)' if p.skipped else format_duration(p.seconds)}"
        for p in result.phases
    ]
    return f"Phases: {', '.join(parts)}; total {format_duration(result.seconds)}"


def _env_hint(name: str) -> str:
    from toolbox.shellenv import Shell, detect_shell, hint_lines

    shell = detect_shell()
    command = "toolbox env" + ("" if name == DEFAULT_NAME else f" {name}")
    line = hint_lines(shell, command)[-1]
    return line.lstrip("#").replace("REM", "", 1).strip() if shell is Shell.CMD else line[2:]


# -- machine commands -----------------------------------------------------------------------


def cmd_create(args: argparse.Namespace) -> int:
    from toolbox.machine.service import CreateOptions

    service = _service(args)
    options = CreateOptions(
        name=args.name,
        driver=args.driver,
        cpus=args.cpus,
        memory_mib=args.memory,
        disk_gib=args.disk,
        image=args.image,
        shares=() if args.no_share else (tuple(args.share) if args.share else None),
        port_bind=PortBind(args.port_bind),
        keep_on_failure=args.keep_on_failure,
    )
    with _progress(args) as progress:
        try:
            result = service.create(options, progress)
        except (ToolboxError, KeyboardInterrupt) as exc:
            progress.close()  # end the bar line before the advice below
            if _half_made(service, args.name):
                print(
                    f"The machine is kept: `toolbox create {args.name}` continues where it "
                    f"stopped (so does `toolbox start {args.name}`); `toolbox rm -f "
                    f"{args.name}` removes it.",
                    file=sys.stderr,
                )
            elif not isinstance(exc, ToolboxError):
                # What the service noted on an interrupt (a ToolboxError's hint says it).
                for note in getattr(exc, "__notes__", ()):
                    print(note, file=sys.stderr)
            raise
    spec = result.spec
    for warning in result.provision.warnings if result.provision else ():
        print(f"Warning: {warning}", file=sys.stderr)
    verb = "Finished creating" if result.resumed else "Created"
    print(f"{verb} machine {spec.name}: engine at {spec.engine_url} (TLS).")
    print(_phase_line(result))
    if args.use:
        dockercontext.use_context(dockercontext.context_name(spec.name))
        print(f"Docker CLI context {dockercontext.context_name(spec.name)} is now current.")
    else:
        print(
            f"Docker CLI context: {dockercontext.context_name(spec.name)} "
            f"(docker --context {dockercontext.context_name(spec.name)} ps)"
        )
    print(f"To use it in this shell: {_env_hint(spec.name)}")
    return 0


def _half_made(service: Any, name: str) -> bool:
    """Whether an unfinished machine ``name`` is on disk (kept after a failed create)."""
    try:
        return not service.get(name).complete
    except ToolboxError:  # none (removed, or never made), or a damaged record
        return False


def cmd_set(args: argparse.Namespace) -> int:
    result = _service(args).set_resources(
        args.name, cpus=args.cpus, memory_mib=args.memory, disk_gib=args.disk
    )
    spec = result.spec
    now = f"{spec.cpus} CPUs, {spec.memory_mib} MiB memory, {spec.disk_gib} GiB disk"
    if not result.changed:
        print(f"Machine {spec.name} already has {now}; nothing changed.")
        return 0
    print(f"Machine {spec.name} now has {now}; it takes effect at its next start.")
    if "disk_gib" in result.changed:
        print("The guest grows its root filesystem to the new disk size when it boots.")
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    service = _service(args)
    with _progress(args) as progress:
        result = service.start(args.name, progress)
    for warning in result.provision.warnings if result.provision else ():
        print(f"Warning: {warning}", file=sys.stderr)
    print(f"Machine {result.spec.name} is running: engine at {result.spec.engine_url}.")
    print(_phase_line(result))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    service = _service(args)
    for name in args.names:
        service.stop(name, timeout=args.timeout)
        print(f"Stopped {name}.")
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    service = _service(args)
    with _progress(args) as progress:
        result = service.restart(args.name, progress)
    for warning in result.provision.warnings if result.provision else ():
        print(f"Warning: {warning}", file=sys.stderr)
    print(f"Machine {result.spec.name} is running: engine at {result.spec.engine_url}.")
    return 0


def cmd_kill(args: argparse.Namespace) -> int:
    service = _service(args)
    for name in args.names:
        service.kill(name)
        print(f"Killed {name}.")
    return 0


def _confirm(question: str) -> bool:
    try:
        answer = input(f"{question} [y/N] ")
    except EOFError:
        return False
    return answer.strip().lower() in ("y", "yes")


def cmd_rm(args: argparse.Namespace) -> int:
    service = _service(args)
    if not (args.force or args.yes) and sys.stdin.isatty():
        names = ", ".join(args.names)
        if not _confirm(f"Remove {names} with its disk, containers and images?"):
            print("Nothing removed.", file=sys.stderr)
            return EXIT_GENERIC
    for name in args.names:
        service.remove(name, force=args.force)
        print(f"Removed {name}.")
    return 0


def _active_machine(specs: Sequence[Any], environ: Mapping[str, str] | None = None) -> str | None:
    """The machine whose engine the docker CLI would use now (the app's rules too:
    ``toolbox.engine.resolve.choose_engine``): by address, or by its Docker context."""
    from toolbox.engine.resolve import choose_engine

    try:
        choice = choose_engine(None, None, os.environ if environ is None else environ)
    except ToolboxError:
        return None
    for spec in specs:
        if spec is None:
            continue
        if choice.context is not None:
            if dockercontext.context_name(spec.name) == choice.context:
                return str(spec.name)
        elif spec.engine_url == (choice.url or "").rstrip("/"):
            return str(spec.name)
    return None


def cmd_ls(args: argparse.Namespace) -> int:
    service = _service(args)
    statuses = service.statuses()
    if args.quiet:
        for status in statuses:
            print(status.name)
        return 0
    active = _active_machine([s.spec for s in statuses])
    if args.json:
        print_json(
            [
                {
                    "name": s.name,
                    "active": s.name == active,
                    "state": s.state.value,
                    "driver": s.driver,
                    "url": s.url,
                    "cpus": s.spec.cpus if s.spec else None,
                    "memory_mib": s.spec.memory_mib if s.spec else None,
                    "disk_gib": s.spec.disk_gib if s.spec else None,
                    "image": s.spec.image if s.spec else None,
                    "busy": s.busy,
                    "detail": s.detail,
                    "hint": s.hint,
                    "agent": _agent_health(s),
                }
                for s in statuses
            ]
        )
        return 0
    rows = []
    for s in statuses:
        spec = s.spec
        rows.append(
            [
                s.name,
                "*" if s.name == active else "-",
                s.driver or "-",
                s.state.value
                + (" (busy)" if s.busy and s.state is not MachineState.CREATING else ""),
                s.url or "",
                str(spec.cpus) if spec else "",
                f"{spec.memory_mib} MiB" if spec else "",
                f"{spec.disk_gib} GiB" if spec else "",
                {"running": "ok", "not running": "down"}.get(_agent_health(s), _agent_health(s)),
                s.detail or "",
            ]
        )
    headers = [
        "NAME", "ACTIVE", "DRIVER", "STATE", "URL", "CPUS", "MEMORY", "DISK", "AGENT", "ERRORS",
    ]  # fmt: skip
    print_table(rows, headers, sys.stdout)
    return 0


def _agent_health(status: Any) -> str:
    """The host agent's health for a machine row: only running machines have one."""
    from toolbox.agent import state as agent_state

    if status.state is not MachineState.RUNNING:
        return "-"
    return agent_state.status(status.name).health.value


def cmd_status(args: argparse.Namespace) -> int:
    from toolbox.agent import state as agent_state

    status = _service(args).status(args.name)
    agent = agent_state.status(status.name)
    report = agent.report
    if args.json:
        print_json(
            {
                "name": status.name,
                "state": status.state.value,
                "vm_state": status.vm_state,
                "busy": status.busy,
                "detail": status.detail,
                "hint": status.hint,
                "agent": {
                    "health": agent.health.value,
                    "pid": report.pid if report else None,
                    "heartbeat": report.heartbeat if report else None,
                    "engine": report.engine if report else None,
                    "log": str(agent.log),
                    "warnings": list(report.warnings) if report else [],
                },
            }
        )
        return 0
    print(status.state.value)
    if status.detail:
        print(f"  {status.detail}", file=sys.stderr)
    if status.hint:
        print(f"Hint: {status.hint}", file=sys.stderr)
    if status.state is MachineState.RUNNING:
        print(f"Host agent: {agent.summary()} (log: {agent.log})", file=sys.stderr)
        for warning in report.warnings if report else ():
            print(f"Warning: {warning}", file=sys.stderr)
    return 0


def cmd_ip(args: argparse.Namespace) -> int:
    print(_service(args).ip(args.name))
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    info = _service(args).inspect(args.name)
    if args.json:
        print_json(info)
        return 0
    spec = info.spec
    lines = [
        f"Name:            {spec.name}",
        f"State:           {info.status.state.value}"
        + (f" ({info.status.detail})" if info.status.detail else ""),
        f"Driver:          {spec.driver}",
        f"CPUs:            {spec.cpus}",
        f"Memory:          {spec.memory_mib} MiB",
        f"Disk:            {spec.disk_gib} GiB",
        f"Image:           {spec.image}",
        f"Created:         {spec.created.isoformat()}",
        f"Engine:          {info.engine_url} (TLS; certificates in {info.cert_path})",
        f"Docker context:  {info.docker_context}",
        f"SSH:             {info.ssh_user}@127.0.0.1 port {spec.ssh_port}, key {info.ssh_key}",
        f"Host key:        {info.host_key_fingerprint or 'unknown'}",
        f"Guest addresses: {', '.join(info.guest_addresses) or 'unknown (not running)'}",
        f"Console log:     {info.console_log}",
        f"Folder:          {info.directory}",
        "Forwards:",
    ]
    lines += [
        f"  {f.name:<16} {f.host_ip}:{f.host_port} -> guest {f.guest_port}/{f.protocol}"
        for f in info.forwards
    ]
    print("\n".join(lines))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from toolbox.shellenv import Shell, detect_shell, render

    shell = Shell.parse(args.shell) if args.shell else detect_shell()
    if args.unset:
        sys.stdout.write(render(shell, None, unset=True, shell_given=bool(args.shell)))
        return 0
    env = _service(args).env(args.name)
    sys.stdout.write(render(shell, env, shell_given=bool(args.shell)))
    return 0


def cmd_use(args: argparse.Namespace) -> int:
    if args.unset:
        dockercontext.use_context(None)
        print("The Docker CLI uses its default context again.")
        return 0
    spec = _service(args).get(args.name)
    name = dockercontext.context_name(spec.name)
    if dockercontext.read_context(name) is None:
        raise MachineError(
            f"Machine {spec.name!r} has no Docker context yet",
            hint=f"Run `toolbox start {spec.name}`; it writes the context.",
        )
    dockercontext.use_context(name)
    print(f"The Docker CLI now uses context {name} (machine {spec.name}).")
    return 0


def cmd_ssh(args: argparse.Namespace) -> int:
    command = list(args.command)
    service = _service(args)
    if command:
        # One argument is a shell command line as is; several are quoted word by word.
        text = command[0] if len(command) == 1 else shlex.join(command)
        if sys.stdout.isatty():
            # A person is watching: stream both outputs as they come.
            def echo(line: str) -> None:
                sys.stdout.write(line if line.endswith("\n") else line + "\n")
                sys.stdout.flush()

            result = service.ssh_run(args.name, text, on_output=echo)
        else:
            # A script: keep stdout and stderr apart.
            result = service.ssh_run(args.name, text)
            sys.stdout.write(result.stdout)
            sys.stderr.write(result.stderr)
        return int(result.exit_code)
    ssh = shutil.which("ssh")
    if ssh is None:
        raise UsageError(
            "No ssh program found for an interactive session",
            hint=f"Install OpenSSH, or run one command with `toolbox ssh {args.name} -- CMD`.",
        )
    argv = service.ssh_argv(args.name, None, ssh_binary=ssh)
    if os.name == "nt":  # pragma: no cover - Windows has no exec
        return subprocess.call(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(ssh, argv)


def cmd_logs(args: argparse.Namespace) -> int:
    from toolbox.agent.state import log_path as agent_log_path
    from toolbox.machine.service import console_log_path, provision_log_path

    service = _service(args)
    service.get(args.name)
    if args.provision:
        path, what, when = provision_log_path(args.name), "provisioning log", "provisioned"
    elif args.agent:
        path, what, when = agent_log_path(args.name), "host agent log", "running"
    else:
        path, what, when = console_log_path(args.name), "console log", "started"
    if not path.exists():
        raise MachineError(
            f"Machine {args.name!r} has no {what} yet ({path})",
            hint=f"It is written once the machine is {when}: `toolbox start {args.name}`.",
        )
    with open(path, encoding="utf-8", errors="replace") as fh:
        lines = fh.readlines()
        tail = lines[-args.lines :] if args.lines else lines
        sys.stdout.writelines(tail)
        sys.stdout.flush()
        while args.follow:
            line = fh.readline()
            if line:
                sys.stdout.write(line)
                sys.stdout.flush()
            else:
                time.sleep(0.25)
    return 0


def cmd_regenerate_certs(args: argparse.Namespace) -> int:
    service = _service(args)
    with _progress(args) as progress:
        result = service.regenerate_certs(args.name, progress)
    print(f"New certificates for {result.spec.name}; engine at {result.spec.engine_url}.")
    return 0


# -- ports ------------------------------------------------------------------------------------


def cmd_port_ls(args: argparse.Namespace) -> int:
    from toolbox.agent import state as agent_state

    service = _service(args)
    spec = service.get(args.name)
    running = service.status(spec.name).state is MachineState.RUNNING
    agent = agent_state.status(spec.name)
    entries: list[dict[str, Any]] = [
        {
            "kind": "manual",
            "protocol": f.protocol,
            "host": f"{f.host_ip}:{f.host_port}",
            "guest_port": f.guest_port,
            "via": "nat",
            "state": "active" if running else "on start",
            "containers": [],
            "reason": "",
        }
        for f in spec.forwards
    ]
    for f in agent.report.forwards if agent.report else ():
        entries.append(
            {
                "kind": "auto",
                "protocol": f.protocol,
                "host": f.address() if f.host_ip else "-",
                "guest_port": f.guest_port,
                "via": f.via or "-",
                "state": f.state,
                "containers": list(f.containers),
                "reason": f.reason,
            }
        )
    if args.json:
        print_json({"agent": agent.health.value, "bind": spec.port_bind.value, "ports": entries})
        return 0
    rows = [
        [
            e["kind"],
            e["host"],
            str(e["guest_port"]),
            e["protocol"],
            e["via"],
            e["state"],
            ", ".join(e["containers"]) or "-",
            e["reason"],
        ]
        for e in entries
    ]
    print_table(
        rows, ["KIND", "HOST", "GUEST", "PROTO", "VIA", "STATE", "CONTAINERS", "NOTE"], sys.stdout
    )
    print(
        f"Published ports bind {_bind_text(spec.port_bind)}; host agent {agent.summary()}.",
        file=sys.stderr,
    )
    return 0


def _bind_text(bind: PortBind) -> str:
    if bind is PortBind.LOOPBACK:
        return "on 127.0.0.1 only"
    return "where the container asked (0.0.0.0 for -p PORT:PORT: reachable from the network)"


def cmd_port_bind(args: argparse.Namespace) -> int:
    spec = _service(args).set_port_bind(args.name, PortBind(args.mode))
    print(f"Published ports of {spec.name} now bind {_bind_text(spec.port_bind)}.")
    if spec.port_bind is PortBind.PUBLISHED:
        print(
            "Warning: every port a container publishes on all interfaces is now offered to the "
            "networks this computer is on.",
            file=sys.stderr,
        )
    return 0


# -- shares -----------------------------------------------------------------------------------


def cmd_share_ls(args: argparse.Namespace) -> int:
    from toolbox.agent import state as agent_state

    spec = _service(args).get(args.name)
    agent = agent_state.status(spec.name)
    live = {(r.host_path, r.guest_path): r for r in (agent.report.shares if agent.report else ())}
    entries = []
    for share in spec.shares:
        report = live.get((share.host_path, share.guest_path))
        entries.append(
            {
                "host_path": share.host_path,
                "guest_path": share.guest_path,
                "readonly": share.readonly,
                "state": report.state if report else "not mounted",
                "reason": report.reason if report else "",
            }
        )
    if args.json:
        print_json(entries)
        return 0
    rows = [
        [e["host_path"], e["guest_path"], "ro" if e["readonly"] else "rw", e["state"], e["reason"]]
        for e in entries
    ]
    print_table(rows, ["HOST", "GUEST", "MODE", "STATE", "NOTE"], sys.stdout)
    return 0


def _wait_share(name: str, guest_path: str, present: bool) -> str | None:
    """Wait (a few seconds) for a running machine's agent to mount or unmount a share;
    returns the state it reports, or None when no agent runs."""
    from toolbox.agent import state as agent_state

    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        agent = agent_state.status(name)
        if agent.health is agent_state.Health.NOT_RUNNING:
            return None
        shares = {r.guest_path: r for r in (agent.report.shares if agent.report else ())}
        report = shares.get(guest_path)
        if not present and report is None:
            return "unmounted"
        if present and report is not None and report.state != "mounting":
            return report.state + (f": {report.reason}" if report.reason else "")
        time.sleep(0.2)
    return "pending"


def cmd_share_add(args: argparse.Namespace) -> int:
    service = _service(args)
    share = args.share
    spec = service.add_share(args.name, share)
    print(f"Sharing {share} with {spec.name}.")
    if service.status(spec.name).state is MachineState.RUNNING:
        service.revive_agents()
        print(f"Mount: {_wait_share(spec.name, share.guest_path, True) or 'on the next start'}")
    return 0


def cmd_share_rm(args: argparse.Namespace) -> int:
    service = _service(args)
    before = {s.guest_path for s in service.get(args.name).shares}
    spec = service.remove_share(args.name, args.path)
    gone = before - {s.guest_path for s in spec.shares}
    print(f"No longer sharing {', '.join(sorted(gone))} with {spec.name}.")
    if service.status(spec.name).state is MachineState.RUNNING:
        for path in gone:
            _wait_share(spec.name, path, False)
    return 0


# -- the host agent ---------------------------------------------------------------------------


def cmd_agent_run(args: argparse.Namespace) -> int:
    from toolbox.agent.runner import main as agent_main

    return agent_main(args.name)


def cmd_agent_status(args: argparse.Namespace) -> int:
    from toolbox.agent import state as agent_state

    _service(args).get(args.name)  # a clear error for an unknown machine
    agent = agent_state.status(args.name)
    if agent.report is None:
        print(agent.health.value)
        return 0
    print(agent.report.to_json())
    return 0


def cmd_port_add(args: argparse.Namespace) -> int:
    spec = _service(args).add_forward(args.name, args.spec)
    print(f"Forwarding {args.spec} for {spec.name}.")
    return 0


def cmd_port_rm(args: argparse.Namespace) -> int:
    _service(args).remove_forward(args.name, args.spec.host_port, args.spec.protocol)
    print(f"Removed the forward from port {args.spec.host_port}/{args.spec.protocol}.")
    return 0


# -- images -----------------------------------------------------------------------------------


def cmd_image_ls(args: argparse.Namespace) -> int:
    service = _service(args)
    images = service.images.list()
    if args.json:
        print_json(
            [
                {
                    "name": i.name,
                    "format": i.format,
                    "arch": i.arch,
                    "size": i.size,
                    "source": i.source,
                    "created": i.created,
                    "path": i.path,
                    "direct_kernel_boot": i.kernel is not None,
                    "used_by": service.image_users(i.name),
                }
                for i in images
            ]
        )
        return 0
    rows = [
        [
            i.name,
            i.format,
            i.arch,
            f"{i.size / 1e6:.0f} MB",
            i.created.strftime("%Y-%m-%d %H:%M"),
            ", ".join(service.image_users(i.name)) or "-",
            i.source,
        ]
        for i in images
    ]
    print_table(
        rows, ["NAME", "FORMAT", "ARCH", "SIZE", "CREATED", "USED BY", "SOURCE"], sys.stdout
    )
    return 0


def cmd_image_rm(args: argparse.Namespace) -> int:
    service = _service(args)
    for name in args.names:
        service.remove_image(name, force=args.force)
        print(f"Removed image {name}.")
    return 0


def cmd_image_build(args: argparse.Namespace) -> int:
    from toolbox.guest.build import build_image
    from toolbox.guest.images import LOCAL_ENGINE_IMAGE_NAME, LOCAL_IMAGE_NAME

    name = args.name or (LOCAL_ENGINE_IMAGE_NAME if args.engine else LOCAL_IMAGE_NAME)
    kwargs: dict[str, Any] = {"name": name, "store": _service(args).images, "engine": args.engine}
    if args.mirror:
        kwargs["mirror"] = args.mirror
    if args.arch:
        kwargs["arch"] = args.arch
    with _progress(args) as progress:
        image = build_image(progress=progress, **kwargs)
    print(f"Built image {image.name} ({image.size / 1e6:.0f} MB) at {image.path}.")
    return 0


def cmd_image_import(args: argparse.Namespace) -> int:
    service = _service(args)
    image = service.images.import_file(Path(args.path), name=args.name)
    print(f"Imported image {image.name} ({image.format}, {image.size / 1e6:.0f} MB).")
    return 0


# -- parser -------------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    """``toolbox build``: build an image on the engine the docker CLI would use."""
    from pathlib import Path

    from toolbox.engine.build import BuildEvent, BuildEventKind, BuildSpec, build_image
    from toolbox.engine.build import parse_build_args as build_args
    from toolbox.engine.resolve import resolve_engine

    spec = BuildSpec(
        Path(args.path),
        dockerfile=args.file or "Dockerfile",
        tags=tuple(args.tag or ()),
        build_args=build_args(args.build_arg or (), "--build-arg"),
        target=args.target,
        no_cache=args.no_cache,
        pull=args.pull,
    )

    def show(event: BuildEvent) -> None:
        if event.kind is BuildEventKind.STEP:
            print(f"Step {event.step}/{event.total} : {event.text}", flush=True)
        elif event.kind is BuildEventKind.OUTPUT:
            print(event.text, flush=True)

    with resolve_engine(args.engine, args.context).connect() as client:
        result = build_image(client, spec, None if args.quiet else show)
    if args.quiet:
        print(", ".join(result.tags) or result.image_id)
    else:
        named = f" as {', '.join(result.tags)}" if result.tags else ""
        print(f"Built {result.short_id}{named}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="toolbox",
        description="Create and control the Docker VM, and talk to its engine.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"toolbox {__version__}")
    parser.add_argument("--debug", action="store_true", help="show error details and tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(
        name: str, handler: Callable[[argparse.Namespace], int], text: str
    ) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=text, description=text)
        p.set_defaults(handler=handler, top=name)
        return p

    p = add("build", cmd_build, "build an image from a folder with a Dockerfile")
    p.add_argument("path", metavar="PATH", help="the build context (a folder)")
    p.add_argument("-f", "--file", help="the Dockerfile, inside PATH (default: PATH/Dockerfile)")
    p.add_argument("-t", "--tag", action="append", help="name:tag for the image (repeatable)")
    p.add_argument("--build-arg", action="append", metavar="KEY=VALUE", help="(repeatable)")
    p.add_argument("--target", help="build up to this stage of a multi-stage Dockerfile")
    p.add_argument("--no-cache", action="store_true", help="do not use the build cache")
    p.add_argument("--pull", action="store_true", help="always pull newer base images")
    p.add_argument("-q", "--quiet", action="store_true", help="print only the tag or image id")
    p.add_argument("-H", "--engine", help="engine address (default: as the docker CLI picks)")
    p.add_argument("--context", help="Docker CLI context to use")

    p = add("create", cmd_create, "create a machine (or continue an interrupted create)")
    _add_name(p)
    p.add_argument(
        "--driver",
        choices=DRIVER_CHOICES,
        help="hypervisor (default: VirtualBox when installed, else QEMU)",
    )
    p.add_argument("--cpus", type=_arg(_cpus), default=DEFAULT_CPUS, help="virtual CPUs")
    p.add_argument(
        "--memory",
        type=_arg(parse_memory_mib),
        default=DEFAULT_MEMORY_MIB,
        metavar="MIB",
        help=f"memory in MiB, or with a unit like 4G (default: {DEFAULT_MEMORY_MIB})",
    )
    p.add_argument(
        "--disk",
        type=_arg(parse_disk_gib),
        default=DEFAULT_DISK_GIB,
        metavar="GIB",
        help=f"disk size in GiB (default: {DEFAULT_DISK_GIB})",
    )
    p.add_argument(
        "--image",
        metavar="NAME|PATH|URL",
        help="guest image: a cached name, a file, or an http(s) URL "
        "(default: the Debian 12 cloud image)",
    )
    p.add_argument(
        "--use",
        action="store_true",
        help="also make the machine's context the Docker CLI's current one",
    )
    p.add_argument(
        "--share",
        action="append",
        type=_arg(parse_share),
        metavar="HOSTPATH[:GUESTPATH][:ro]",
        help="share a host folder into the machine (repeatable; default: your home folder "
        "at the same path, /Users on macOS, C:\\Users as /c/Users on Windows)",
    )
    p.add_argument("--no-share", action="store_true", help="share no host folder")
    p.add_argument(
        "--port-bind",
        choices=[b.value for b in PortBind],
        default=PortBind.LOOPBACK.value,
        help="where published container ports bind on this computer: loopback (default, "
        "127.0.0.1 only) or published (what the container asked for: 0.0.0.0 exposes them "
        "to your network)",
    )
    p.add_argument(
        "--keep-on-failure",
        action="store_true",
        help="keep a machine whose create failed or was interrupted, to inspect it or to "
        "continue it with `toolbox create NAME` (by default it is removed)",
    )

    p = add("set", cmd_set, "change a stopped machine's CPUs, memory or disk size")
    _add_name(p)
    p.add_argument("--cpus", type=_arg(_cpus), help="virtual CPUs")
    p.add_argument(
        "--memory",
        type=_arg(parse_memory_mib),
        metavar="SIZE",
        help="memory in MiB, or with a unit like 4G",
    )
    p.add_argument(
        "--disk",
        type=_arg(parse_disk_gib),
        metavar="SIZE",
        help="disk size in GiB, or with a unit like 1T; it only grows (the guest grows its "
        "filesystem at its next boot)",
    )

    p = add("start", cmd_start, "start a machine and wait for its engine")
    _add_name(p)
    p = add("stop", cmd_stop, "stop machines cleanly")
    p.add_argument("names", metavar="NAME", nargs="*", type=NAME_ARG, default=[DEFAULT_NAME])
    p.add_argument(
        "--timeout",
        type=float,
        default=60.0,
        help="seconds before the VM is powered off hard (default: 60)",
    )
    p = add("restart", cmd_restart, "stop and start a machine")
    _add_name(p)
    p = add("kill", cmd_kill, "power machines off at once")
    p.add_argument("names", metavar="NAME", nargs="*", type=NAME_ARG, default=[DEFAULT_NAME])
    p = add("rm", cmd_rm, "remove machines, with their disks")
    p.add_argument("names", metavar="NAME", nargs="*", type=NAME_ARG, default=[DEFAULT_NAME])
    p.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="kill a running VM and remove even a damaged machine",
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")

    p = add("ls", cmd_ls, "list machines")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("-q", "--quiet", action="store_true", help="print names only")
    p = add("status", cmd_status, "print a machine's state")
    _add_name(p)
    p.add_argument("--json", action="store_true", help="print JSON")
    p = add("ip", cmd_ip, "print the address the docker CLI uses for a machine (127.0.0.1)")
    _add_name(p)
    p = add("inspect", cmd_inspect, "show a machine's details, forwards and guest addresses")
    _add_name(p)
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("env", cmd_env, "print the commands that point docker at a machine")
    _add_name(p)
    p.add_argument(
        "--shell",
        choices=SHELL_CHOICES,
        help="shell syntax (default: detected from $SHELL or the parent process)",
    )
    p.add_argument("-u", "--unset", action="store_true", help="print the commands that undo it")
    p = add("use", cmd_use, "make a machine's context the Docker CLI's current context")
    _add_name(p)
    p.add_argument("--unset", action="store_true", help="go back to Docker's default context")

    p = add("ssh", cmd_ssh, "log in to a machine, or run one command in it (after --)")
    _add_name(p)
    p.add_argument(
        "command",
        nargs=argparse.REMAINDER,
        metavar="-- CMD",
        help="command to run instead of an interactive shell",
    )
    p = add("logs", cmd_logs, "print a machine's console, provisioning or host agent log")
    _add_name(p)
    p.add_argument("-n", "--lines", type=int, default=0, help="only the last N lines")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing new lines")
    which = p.add_mutually_exclusive_group()
    which.add_argument(
        "--provision", action="store_true", help="the provisioning log instead of the console"
    )
    which.add_argument(
        "--agent", action="store_true", help="the host agent's log (ports and shares)"
    )
    p = add(
        "regenerate-certs",
        cmd_regenerate_certs,
        "issue new TLS certificates for a machine's engine",
    )
    _add_name(p)

    p = add("port", lambda a: _help(a), "forward loopback host ports to a machine")
    port = p.add_subparsers(dest="port_command", metavar="COMMAND")
    pp = port.add_parser(
        "ls", help="list a machine's forwards: containers' published ports and manual ones"
    )
    pp.set_defaults(handler=cmd_port_ls)
    _add_name(pp)
    pp.add_argument("--json", action="store_true", help="print JSON")
    text = "where published ports bind: loopback (127.0.0.1) or published (as asked)"
    pp = port.add_parser("bind", help=text, description=text)
    pp.set_defaults(handler=cmd_port_bind)
    _add_name(pp, nargs=None)
    pp.add_argument("mode", choices=[b.value for b in PortBind])
    for verb, handler, text in (
        ("add", cmd_port_add, "forward [127.0.0.1:]HOST:GUEST[/tcp|udp]"),
        ("rm", cmd_port_rm, "remove the forward from HOST[/tcp|udp]"),
    ):
        pp = port.add_parser(verb, help=text, description=text)
        pp.set_defaults(handler=handler)
        _add_name(pp, nargs=None)
        pp.add_argument("spec", type=_arg(parse_forward), metavar="PORTS")
    p.set_defaults(_sub=p)

    p = add("share", lambda a: _help(a), "host folders shared into a machine")
    shares = p.add_subparsers(dest="share_command", metavar="COMMAND")
    sp = shares.add_parser("ls", help="list a machine's shares and whether they are mounted")
    sp.set_defaults(handler=cmd_share_ls)
    _add_name(sp)
    sp.add_argument("--json", action="store_true", help="print JSON")
    text = "share HOSTPATH[:GUESTPATH][:ro] (mounted at once when the machine runs)"
    sp = shares.add_parser("add", help=text, description=text)
    sp.set_defaults(handler=cmd_share_add)
    _add_name(sp, nargs=None)
    sp.add_argument("share", type=_arg(parse_share), metavar="HOSTPATH[:GUESTPATH][:ro]")
    text = "stop sharing the share with this host or guest path"
    sp = shares.add_parser("rm", help=text, description=text)
    sp.set_defaults(handler=cmd_share_rm)
    _add_name(sp, nargs=None)
    sp.add_argument("path", metavar="PATH")
    p.set_defaults(_sub=p)

    p = add("agent", lambda a: _help(a), "the host agent that forwards ports and mounts shares")
    agents = p.add_subparsers(dest="agent_command", metavar="COMMAND")
    ap = agents.add_parser("status", help="print the agent's last report (JSON)")
    ap.set_defaults(handler=cmd_agent_status)
    _add_name(ap)
    ap = agents.add_parser(
        "run", help="run the agent in the foreground (toolbox starts it by itself)"
    )
    ap.set_defaults(handler=cmd_agent_run, no_revive=True)
    _add_name(ap)
    p.set_defaults(_sub=p)

    p = add("image", lambda a: _help(a), "guest images: build, list, import, remove")
    images = p.add_subparsers(dest="image_command", metavar="COMMAND")
    ip = images.add_parser("ls", help="list cached guest images")
    ip.set_defaults(handler=cmd_image_ls)
    ip.add_argument("--json", action="store_true", help="print JSON")
    ip = images.add_parser("rm", help="remove cached guest images")
    ip.set_defaults(handler=cmd_image_rm)
    ip.add_argument("names", metavar="NAME", nargs="+")
    ip.add_argument(
        "-f",
        "--force",
        action="store_true",
        help="remove even an image a machine's disk is based on",
    )
    ip = images.add_parser(
        "build", help="build a Debian 12 guest image locally (Linux, mmdebstrap)"
    )
    ip.set_defaults(handler=cmd_image_build)
    ip.add_argument(
        "--name", help="name in the cache (default debian-12-local, with --engine -engine)"
    )
    ip.add_argument(
        "--engine",
        action="store_true",
        help="bake the engine, sshfs and AppArmor in: machines from it provision offline in "
        "seconds",
    )
    ip.add_argument("--mirror", help="Debian mirror (default: http://deb.debian.org/debian)")
    ip.add_argument("--arch", help="amd64 or arm64 (default: this host's)")
    ip = images.add_parser("import", help="add a disk image file to the cache")
    ip.set_defaults(handler=cmd_image_import)
    ip.add_argument("path", metavar="PATH")
    ip.add_argument("--name", help="name in the cache (default: from the file name)")
    p.set_defaults(_sub=p)
    return parser


# Commands after which a running machine's host agent is started again when it died. Not
# stop, kill, rm (they end it) nor create/start (they start it themselves).
REVIVING_COMMANDS = frozenset(
    {"ls", "status", "ip", "inspect", "env", "use", "ssh", "logs", "port", "share", "agent"}
)


def _revive(args: argparse.Namespace) -> None:
    with contextlib.suppress(ToolboxError, OSError):
        _service(args).revive_agents()


def _help(args: argparse.Namespace) -> int:
    args._sub.print_help(sys.stderr)
    return EXIT_USAGE


def _split_remote_command(argv: list[str]) -> tuple[list[str], list[str] | None]:
    """``toolbox ssh [NAME] -- CMD...``: everything after the first ``--`` is the remote
    command, so ``toolbox ssh -- ls`` does not take ``ls`` for a machine name."""
    if "ssh" in argv and "--" in argv[argv.index("ssh") :]:
        cut = argv.index("--", argv.index("ssh"))
        return argv[:cut], argv[cut + 1 :]
    return argv, None


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    words, remote = _split_remote_command(list(sys.argv[1:] if argv is None else argv))
    args = parser.parse_args(words)
    if remote is not None:
        args.command = remote
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 0
    try:
        top = getattr(args, "top", None)
        if top in REVIVING_COMMANDS and not getattr(args, "no_revive", False):
            _revive(args)
        return int(handler(args) or 0)
    except ToolboxError as exc:
        print(f"Error: {exc}", file=sys.stderr)
        if exc.hint:
            print(f"Hint: {exc.hint}", file=sys.stderr)
        if args.debug and exc.details and exc.details not in str(exc):
            print(exc.details, file=sys.stderr)
        if args.debug:
            import traceback

            traceback.print_exc()
        return exc.exit_code
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `toolbox ls | head`
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
