"""The ``toolbox`` command line: parsing, output, JSON shapes and exit codes, through
``main()`` with the machine service over the in-memory hypervisor and guest of
machine_fakes.py (tests/e2e/test_machine_e2e.py runs the CLI against real QEMU)."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.unit.machine_fakes import FakeDriver, FakeGuest
from toolbox import cli, dockercontext, errors
from toolbox.cli_progress import ProgressPrinter, format_amount, render_bar
from toolbox.guest.images import ImageStore
from toolbox.machine.service import MachineService, console_log_path
from toolbox.progress import Progress

IMAGE = "test-image"


@pytest.fixture
def fakes(
    toolbox_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[FakeDriver, FakeGuest, MachineService]:
    images = ImageStore()
    disk = tmp_path / "disk.raw"
    disk.write_bytes(b"\0" * 4096)
    images.add(IMAGE, disk, format="raw", arch="amd64", source="test")
    driver = FakeDriver()
    guest = FakeGuest(driver)
    service = MachineService(
        images=images,
        driver_factory=lambda name: driver,
        guest=guest,
        default_driver=lambda: "qemu",
    )
    monkeypatch.setattr(cli, "_service", lambda args: service)
    monkeypatch.setenv("SHELL", "/bin/bash")
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    return driver, guest, service


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def create(capsys: pytest.CaptureFixture[str], name: str = "default") -> None:
    code, _, err = run(capsys, "create", name, "--image", IMAGE)
    assert code == 0, err


# -- parsing ----------------------------------------------------------------------------------


def test_create_arguments() -> None:
    args = cli.build_parser().parse_args(
        ["create", "dev", "--driver", "virtualbox", "--cpus", "4", "--memory", "4G",
         "--disk", "40", "--image", "https://example.org/x.qcow2"]
    )  # fmt: skip
    assert (args.name, args.driver, args.cpus, args.memory, args.disk, args.image) == (
        "dev", "virtualbox", 4, 4096, 40, "https://example.org/x.qcow2"
    )  # fmt: skip


def test_defaults() -> None:
    parser = cli.build_parser()
    args = parser.parse_args(["create"])
    assert (args.name, args.driver, args.cpus, args.memory, args.disk, args.image) == (
        "default", None, 2, 2048, 20, None
    )  # fmt: skip
    for command in ("start", "status", "ip", "inspect", "env", "ssh", "logs",
                    "regenerate-certs", "restart"):  # fmt: skip
        assert parser.parse_args([command]).name == "default"
    for command in ("stop", "kill", "rm"):
        assert parser.parse_args([command]).names == ["default"]


@pytest.mark.parametrize(
    "argv",
    [
        ["create", "Bad_Name"],
        ["create", "--cpus", "0"],
        ["create", "--memory", "12"],
        ["create", "--disk", "1"],
        ["create", "--driver", "hyperv"],
        ["env", "--shell", "tcsh"],
        ["start", "../x"],
        ["port", "add", "default", "0.0.0.0:80:80"],
    ],
)
def test_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == errors.EXIT_USAGE
    assert "error:" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "name", "command"),
    [
        (["ssh", "dev", "--", "ls", "-la", "/"], "dev", ["ls", "-la", "/"]),
        (["ssh", "--", "ls", "-la"], "default", ["ls", "-la"]),
        (["ssh", "--", "--", "x"], "default", ["--", "x"]),
        (["ssh", "dev"], "dev", []),
        (["--debug", "ssh"], "default", []),
    ],
)
def test_ssh_command_after_double_dash(argv: list[str], name: str, command: list[str]) -> None:
    words, remote = cli._split_remote_command(argv)
    args = cli.build_parser().parse_args(words)
    assert args.name == name
    assert (remote if remote is not None else args.command) == command


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    out = capsys.readouterr().out
    for code in (errors.EXIT_NOT_FOUND, errors.EXIT_MACHINE, errors.EXIT_DRIVER,
                 errors.EXIT_SSH, errors.EXIT_PROVISION, errors.EXIT_IMAGE,
                 errors.EXIT_INTERRUPTED):  # fmt: skip
        assert f"\n  {code} " in out
    for command in ("create", "env", "ssh", "regenerate-certs", "image", "ls"):
        assert command in out


# -- commands --------------------------------------------------------------------------------


def test_create_prints_the_engine_phases_and_how_to_use_it(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "create", "--image", IMAGE)
    assert code == 0
    spec = fakes[2].get("default")
    lines = out.splitlines()
    assert (
        lines[0] == f"Created machine default: engine at tcp://127.0.0.1:{spec.engine_port} (TLS)."
    )
    assert lines[1].startswith("Phases: image ")
    assert "provision " in lines[1] and "; total " in lines[1]
    assert "docker --context toolbox-default ps" in lines[2]
    assert lines[3] == "To use it in this shell: eval $(toolbox env)"
    # Not a TTY: plain progress lines on stderr, one start and one done per phase.
    assert "Guest image ..." in err and "Install and secure the engine: done (" in err
    assert dockercontext.current_context() is None


def test_create_use_switches_the_context(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "create", "dev", "--image", IMAGE, "--use")
    assert code == 0 and "toolbox-dev is now current" in out
    assert dockercontext.current_context() == "toolbox-dev"


def test_failed_create_says_how_to_resume(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    fakes[1].fail_provision = 1
    code, out, err = run(capsys, "create", "--image", IMAGE, "--keep-on-failure")
    assert code == errors.EXIT_PROVISION
    assert "Error: engine install failed" in err and "Hint: check the network\n" in err
    assert "`toolbox create default` continues where it stopped" in err
    assert "was removed" not in err
    code, out, err = run(capsys, "ls")
    assert "creation was interrupted after: Boot and wait for SSH" in out
    code, out, _ = run(capsys, "create")
    assert code == 0 and out.startswith("Finished creating machine default")
    assert "keys (done before)" in out


def test_ctrl_c_exits_130(
    fakes: tuple[FakeDriver, FakeGuest, MachineService],
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    fakes[1].on_provision = interrupt
    code, _, err = run(capsys, "create", "--image", IMAGE, "--keep-on-failure")
    assert code == errors.EXIT_INTERRUPTED
    assert "Interrupted." in err and "toolbox rm -f default" in err
    assert "continues where it stopped" in err
    assert fakes[2].store.exists("default")


def test_ctrl_c_without_keep_on_failure_removes_the_machine(
    fakes: tuple[FakeDriver, FakeGuest, MachineService],
    capsys: pytest.CaptureFixture[str],
) -> None:
    def interrupt() -> None:
        raise KeyboardInterrupt

    fakes[1].on_provision = interrupt
    code, _, err = run(capsys, "create", "--image", IMAGE)
    assert code == errors.EXIT_INTERRUPTED
    assert "Interrupted." in err
    assert (
        "The half-made machine 'default' was removed; `toolbox create default "
        "--keep-on-failure` keeps it" in err
    )
    assert "continues where it stopped" not in err
    assert run(capsys, "ls", "-q") == (0, "", "")


def test_failed_create_removes_the_machine_and_the_name_is_free_again(
    fakes: tuple[FakeDriver, FakeGuest, MachineService],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # The case: a create from a missing image left an Error record "x" behind, and
    # the next `toolbox create x` refused.
    code, out, err = run(capsys, "create", "x", "--image", str(tmp_path / "nonexistent.qcow2"))
    assert code == errors.EXIT_NOT_FOUND and out == ""
    assert "Error: No guest image" in err
    assert "Hint: `toolbox image ls` lists cached images" in err
    assert "`toolbox create x --keep-on-failure` keeps it for inspection" in err
    assert "continues where it stopped" not in err
    assert run(capsys, "ls", "-q") == (0, "", "")
    fakes[1].fail_provision = 1
    code, _, err = run(capsys, "create", "x", "--image", IMAGE)
    assert code == errors.EXIT_PROVISION
    assert "Hint: check the network The half-made machine 'x' was removed" in err
    code, out, err = run(capsys, "create", "x", "--image", IMAGE)
    assert code == 0, err
    assert out.startswith("Created machine x")


def test_ls_table_and_json(
    fakes: tuple[FakeDriver, FakeGuest, MachineService],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create(capsys)
    create(capsys, "dev")
    run(capsys, "stop", "dev")
    spec = fakes[2].get("default")
    monkeypatch.setenv("DOCKER_HOST", spec.engine_url)
    code, out, _ = run(capsys, "ls")
    rows = [line.split() for line in out.splitlines()]
    assert rows[0] == ["NAME", "ACTIVE", "DRIVER", "STATE", "URL", "CPUS", "MEMORY", "DISK",
                       "AGENT", "ERRORS"]  # fmt: skip
    # The fakes run no host agent: a running machine's agent shows as down.
    assert rows[1] == ["default", "*", "qemu", "Running", spec.engine_url, "2", "2048", "MiB",
                       "20", "GiB", "down"]  # fmt: skip
    assert rows[2] == ["dev", "-", "qemu", "Stopped", "2", "2048", "MiB", "20", "GiB", "-"]
    code, out, _ = run(capsys, "ls", "--json")
    assert code == 0
    data = json.loads(out)
    assert [(m["name"], m["state"], m["active"], m["url"]) for m in data] == [
        ("default", "Running", True, spec.engine_url),
        ("dev", "Stopped", False, None),
    ]
    assert run(capsys, "ls", "-q")[1] == "default\ndev\n"


def test_ls_marks_the_current_docker_context_active(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys, "dev")
    assert run(capsys, "use", "dev")[0] == 0
    assert json.loads(run(capsys, "ls", "--json")[1])[0]["active"] is True
    assert run(capsys, "use", "--unset")[0] == 0
    assert dockercontext.current_context() is None


def test_status_ip_and_not_found(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "status")
    assert code == errors.EXIT_NOT_FOUND
    assert "No machine named 'default'" in err and "Hint:" in err
    create(capsys)
    code, out, err = run(capsys, "status")
    assert (code, out) == (0, "Running\n")
    assert err.startswith("Host agent: not running (log: ")  # the fakes start no agent
    status = json.loads(run(capsys, "status", "--json")[1])
    agent = status.pop("agent")
    assert status == {"name": "default", "state": "Running", "vm_state": "RUNNING",
                      "busy": False, "detail": None, "hint": None}  # fmt: skip
    assert agent["health"] == "not running" and agent["pid"] is None
    assert agent["log"].endswith("machines/default/agent.log")
    assert run(capsys, "ip") == (0, "127.0.0.1\n", "")
    assert run(capsys, "stop")[0] == 0
    code, _, err = run(capsys, "ip")
    assert code == errors.EXIT_MACHINE and "not running (Stopped)" in err


def test_inspect_text_and_json(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys)
    spec = fakes[2].get("default")
    code, out, _ = run(capsys, "inspect")
    assert code == 0
    assert "Guest addresses: 10.0.2.15" in out
    assert f"127.0.0.1:{spec.engine_port} -> guest 2376/tcp" in out
    data = json.loads(run(capsys, "inspect", "--json")[1])
    assert data["spec"]["engine_port"] == spec.engine_port
    assert data["guest_addresses"] == ["10.0.2.15"]
    assert data["docker_context"] == "toolbox-default"
    assert {f["name"] for f in data["forwards"]} == {"ssh", "engine"}
    assert data["status"]["state"] == "Running"


def test_env_per_shell(
    fakes: tuple[FakeDriver, FakeGuest, MachineService],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create(capsys)
    spec = fakes[2].get("default")
    folder = fakes[2].files("default").directory
    code, out, _ = run(capsys, "env")
    assert code == 0
    assert out == (
        'export DOCKER_TLS_VERIFY="1"\n'
        f'export DOCKER_HOST="tcp://127.0.0.1:{spec.engine_port}"\n'
        f'export DOCKER_CERT_PATH="{folder}"\n'
        'export DOCKER_MACHINE_NAME="default"\n'
        "# Run this command to configure your shell:\n"
        "# eval $(toolbox env default)\n"
    )
    monkeypatch.setenv("SHELL", "/usr/bin/fish")
    assert run(capsys, "env")[1].splitlines()[-1] == "# toolbox env default | source"
    out = run(capsys, "env", "--shell", "powershell")[1]
    assert out.splitlines()[1] == f'$Env:DOCKER_HOST = "tcp://127.0.0.1:{spec.engine_port}"'
    out = run(capsys, "env", "--shell", "cmd", "-u")[1]
    assert out.splitlines()[0] == "SET DOCKER_TLS_VERIFY="


def test_env_unset_needs_no_machine(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "env", "-u", "--shell", "bash")
    assert code == 0 and out.startswith("unset DOCKER_TLS_VERIFY\n")


def test_ssh_runs_a_command_and_returns_its_exit_code(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys)
    code, out, err = run(capsys, "ssh", "default", "--", "uname", "-a")
    assert (code, out, err) == (3, "out: uname -a\n", "warn\n")  # a script: kept apart
    run(capsys, "ssh", "--", "sh", "-c", "echo hi there")
    run(capsys, "ssh", "--", "ls | wc -l")
    assert fakes[1].commands == ["uname -a", "sh -c 'echo hi there'", "ls | wc -l"]


def test_ssh_streams_to_a_terminal(
    fakes: tuple[FakeDriver, FakeGuest, MachineService],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    create(capsys)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    code, out, err = run(capsys, "ssh", "--", "uname")
    assert (code, out, err) == (3, "out: uname\nwarn\n", "")


def test_logs(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys)
    run(capsys, "restart")
    assert run(capsys, "logs")[1] == "boot default\nboot default\n"
    console_log_path("default").write_text("a\nb\nc\n")
    assert run(capsys, "logs", "-n", "2")[1] == "b\nc\n"


def test_stop_start_kill_rm(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys)
    assert run(capsys, "stop")[1] == "Stopped default.\n"
    code, out, _ = run(capsys, "start")
    assert code == 0 and out.startswith("Machine default is running")
    assert run(capsys, "kill")[1] == "Killed default.\n"
    assert run(capsys, "status")[1] == "Stopped\n"
    assert run(capsys, "rm", "-y")[1] == "Removed default.\n"
    assert run(capsys, "ls", "-q")[1] == ""


def test_rm_of_a_running_machine_needs_force(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys)
    code, _, err = run(capsys, "rm", "-y")
    assert code == errors.EXIT_MACHINE and "toolbox rm -f default" in err
    assert run(capsys, "rm", "-f")[0] == 0


def test_regenerate_certs(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys)
    code, out, _ = run(capsys, "regenerate-certs")
    assert code == 0 and out.startswith("New certificates for default")


def test_ports(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys)
    assert run(capsys, "port", "add", "default", "18080:80")[0] == 0
    code, out, err = run(capsys, "port", "ls")
    assert code == 0
    rows = [line.split() for line in out.splitlines()]
    assert rows == [
        ["KIND", "HOST", "GUEST", "PROTO", "VIA", "STATE", "CONTAINERS", "NOTE"],
        ["manual", "127.0.0.1:18080", "80", "tcp", "nat", "active", "-"],
    ]
    assert "bind on 127.0.0.1 only" in err
    data = json.loads(run(capsys, "port", "ls", "--json")[1])
    assert data["bind"] == "loopback" and data["ports"][0]["host"] == "127.0.0.1:18080"
    run(capsys, "stop")
    assert run(capsys, "port", "ls")[1].splitlines()[1].split()[5:7] == ["on", "start"]
    assert run(capsys, "port", "rm", "default", "18080")[0] == 0
    assert run(capsys, "port", "ls")[1].splitlines()[1:] == []
    assert run(capsys, "port")[0] == errors.EXIT_USAGE


def test_image_ls_and_rm(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys)
    out = run(capsys, "image", "ls")[1]
    assert out.splitlines()[1].split()[:3] == [IMAGE, "raw", "amd64"]
    data = json.loads(run(capsys, "image", "ls", "--json")[1])
    assert data[0]["name"] == IMAGE and data[0]["used_by"] == ["default"]
    code, _, err = run(capsys, "image", "rm", IMAGE)
    assert code == errors.EXIT_USAGE and "default" in err
    assert run(capsys, "image", "rm", "-f", IMAGE)[0] == 0
    assert json.loads(run(capsys, "image", "ls", "--json")[1]) == []
    code, _, err = run(capsys, "image", "rm", "nope")
    assert code == errors.EXIT_NOT_FOUND


def test_image_import(
    fakes: tuple[FakeDriver, FakeGuest, MachineService],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    disk = tmp_path / "mine.qcow2"
    disk.write_bytes(b"QFI\xfb" + b"\0" * 1020)
    code, out, _ = run(capsys, "image", "import", str(disk), "--name", "mine")
    assert code == 0 and out.startswith("Imported image mine (qcow2")


# -- progress ------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_progress_lines() -> None:
    stream, clock = io.StringIO(), Clock()
    printer = ProgressPrinter(stream, tty=False, clock=clock)
    printer(Progress("download", "Downloading the image"))
    for done in range(0, 101, 10):
        printer(Progress("download", "Downloading the image", done / 100, done * 10**6,
                         100 * 10**6))  # fmt: skip
    clock.now = 12.5
    printer(Progress("download", "Downloading the image", 1.0, done=True))
    printer(Progress("boot", "Booting"))
    clock.now = 14.0
    printer(Progress("boot", "Booting", 1.0, done=True))
    assert stream.getvalue() == (
        "Downloading the image ...\n"
        "Downloading the image: 30% (30.0/100.0 MB)\n"
        "Downloading the image: 50% (50.0/100.0 MB)\n"
        "Downloading the image: 80% (80.0/100.0 MB)\n"
        "Downloading the image: 100% (100.0/100.0 MB)\n"
        "Downloading the image: done (12.5s)\n"
        "Booting ...\n"
        "Booting: done (1.5s)\n"
    )


def test_tty_progress_bars_redraw_one_line_per_step() -> None:
    stream, clock = io.StringIO(), Clock()
    printer = ProgressPrinter(stream, tty=True, columns=120, clock=clock)
    printer(Progress("download", "Downloading", 0.0, 0, 10**7))
    clock.now = 0.05
    printer(Progress("download", "Downloading", 0.1, 10**6, 10**7))  # throttled
    clock.now = 0.5
    printer(Progress("download", "Downloading", 0.5, 5 * 10**6, 10**7))
    clock.now = 1.0
    printer(Progress("download", "Downloading", 1.0, done=True))
    printer(Progress("boot", "Booting"))
    printer.close()
    frames = stream.getvalue().split("\r\x1b[2K")[1:]
    assert len(frames) == 4
    assert frames[0] == f"{'Downloading':<40} {render_bar(0.0)} 0.0/10.0 MB"
    assert frames[1] == f"{'Downloading':<40} {render_bar(0.5)} 5.0/10.0 MB"
    assert frames[2] == "Downloading  done (1.0s)\n"
    assert frames[3] == "Booting  (0.0s)\n"


def test_bar_and_amount_formats() -> None:
    assert render_bar(0.5, 10) == "[#####.....]  50%"
    assert render_bar(1.7, 4) == "[####] 100%"
    assert format_amount(3, 7) == "3/7"
    assert format_amount(None, 7) == ""
    assert format_amount(1_500_000, 3_000_000) == "1.5/3.0 MB"


@given(st.text(max_size=8))
def test_cpu_argument_accepts_only_plain_numbers(text: str) -> None:
    try:
        value = cli._cpus(text)
    except errors.UsageError:
        return
    assert 1 <= value <= 256 and text.strip() == str(value).rjust(len(text.strip()), "0")


# -- set: CPUs, memory and disk of a stopped machine -----------------------------------------


def test_set_changes_a_stopped_machine(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys)
    run(capsys, "stop")
    code, out, err = run(capsys, "set", "--cpus", "4", "--memory", "4G", "--disk", "40G")
    assert code == 0, err
    assert out == (
        "Machine default now has 4 CPUs, 4096 MiB memory, 40 GiB disk; it takes effect at "
        "its next start.\n"
        "The guest grows its root filesystem to the new disk size when it boots.\n"
    )
    [row] = json.loads(run(capsys, "ls", "--json")[1])
    assert (row["cpus"], row["memory_mib"], row["disk_gib"]) == (4, 4096, 40)
    code, out, _ = run(capsys, "set", "default", "--cpus", "4")
    assert code == 0 and "nothing changed" in out
    code, out, _ = run(capsys, "set", "default", "--memory", "3072")
    assert code == 0 and "3072 MiB memory" in out and "filesystem" not in out


def test_set_is_refused_while_running_and_when_shrinking(
    fakes: tuple[FakeDriver, FakeGuest, MachineService], capsys: pytest.CaptureFixture[str]
) -> None:
    create(capsys)
    code, out, err = run(capsys, "set", "--cpus", "4")
    assert code == errors.EXIT_MACHINE and out == ""
    assert "Error: Machine 'default' is running (Running)" in err
    assert "Hint: Stop it with `toolbox stop default`, change it, then start it again." in err
    run(capsys, "stop")
    code, out, err = run(capsys, "set", "--disk", "10")
    assert code == errors.EXIT_USAGE and out == ""
    assert "Error: The disk of machine 'default' is 20 GiB; it cannot shrink to 10 GiB" in err
    assert "Hint: Give 20 GiB or more: a disk only grows" in err
    code, _, err = run(capsys, "set")
    assert code == errors.EXIT_USAGE and "Error: Nothing to change" in err
    code, _, err = run(capsys, "set", "ghost", "--cpus", "2")
    assert code == errors.EXIT_NOT_FOUND and "No machine named 'ghost'" in err
    assert json.loads(run(capsys, "ls", "--json")[1])[0]["cpus"] == 2


@pytest.mark.parametrize(
    "argv",
    [["set", "--cpus", "0"], ["set", "--memory", "12"], ["set", "--disk", "1"],
     ["set", "Bad_Name", "--cpus", "2"]],
)  # fmt: skip
def test_set_bad_arguments_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == errors.EXIT_USAGE
    assert "error:" in capsys.readouterr().err


def test_ls_active_follows_the_engine_resolver(
    fakes: tuple[FakeDriver, FakeGuest, MachineService],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DOCKER_HOST beats DOCKER_CONTEXT (as for the docker CLI and the app); DOCKER_CONTEXT
    beats the current context; the address may be spelled without the scheme."""
    create(capsys)
    create(capsys, "dev")
    assert run(capsys, "use", "dev")[0] == 0
    spec = fakes[2].get("default")

    def active() -> list[str]:
        return [m["name"] for m in json.loads(run(capsys, "ls", "--json")[1]) if m["active"]]

    assert active() == ["dev"]
    monkeypatch.setenv("DOCKER_CONTEXT", dockercontext.context_name("default"))
    assert active() == ["default"]
    monkeypatch.setenv("DOCKER_CONTEXT", "default")  # the environment's engine: none of them
    assert active() == []
    monkeypatch.setenv("DOCKER_HOST", spec.engine_url.removeprefix("tcp://"))
    monkeypatch.setenv("DOCKER_CONTEXT", dockercontext.context_name("dev"))
    assert active() == ["default"]
