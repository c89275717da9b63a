"""``toolbox env`` output, exact text for every shell, set and unset; shell detection."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolbox.errors import UsageError
from toolbox.shellenv import EngineEnv, Shell, detect_shell, parse_exports, render

ENV = EngineEnv("default", "tcp://127.0.0.1:40376", Path("/home/jane/.local/share/m/default"))
WIN_ENV = EngineEnv(
    "dev", "tcp://127.0.0.1:50376", Path(r"C:\Users\Jane Doe\AppData\Local\Toolbox\machines\dev")
)


def test_bash() -> None:
    assert render(Shell.BASH, ENV) == (
        'export DOCKER_TLS_VERIFY="1"\n'
        'export DOCKER_HOST="tcp://127.0.0.1:40376"\n'
        'export DOCKER_CERT_PATH="/home/jane/.local/share/m/default"\n'
        'export DOCKER_MACHINE_NAME="default"\n'
        "# Run this command to configure your shell:\n"
        "# eval $(toolbox env default)\n"
    )


def test_zsh_given_explicitly_names_the_shell_in_the_hint() -> None:
    assert render(Shell.ZSH, ENV, shell_given=True).splitlines()[-1] == (
        "# eval $(toolbox env --shell zsh default)"
    )


def test_fish() -> None:
    assert render(Shell.FISH, ENV) == (
        'set -gx DOCKER_TLS_VERIFY "1";\n'
        'set -gx DOCKER_HOST "tcp://127.0.0.1:40376";\n'
        'set -gx DOCKER_CERT_PATH "/home/jane/.local/share/m/default";\n'
        'set -gx DOCKER_MACHINE_NAME "default";\n'
        "# Run this command to configure your shell:\n"
        "# toolbox env default | source\n"
    )


def test_powershell_with_a_windows_path_with_spaces() -> None:
    assert render(Shell.POWERSHELL, WIN_ENV, shell_given=True) == (
        '$Env:DOCKER_TLS_VERIFY = "1"\n'
        '$Env:DOCKER_HOST = "tcp://127.0.0.1:50376"\n'
        '$Env:DOCKER_CERT_PATH = "C:\\Users\\Jane Doe\\AppData\\Local\\Toolbox\\machines\\dev"\n'
        '$Env:DOCKER_MACHINE_NAME = "dev"\n'
        "# Run this command to configure your shell:\n"
        "# & toolbox env --shell powershell dev | Invoke-Expression\n"
    )


def test_cmd_with_a_windows_path_with_spaces() -> None:
    assert render(Shell.CMD, WIN_ENV, shell_given=True) == (
        "SET DOCKER_TLS_VERIFY=1\n"
        "SET DOCKER_HOST=tcp://127.0.0.1:50376\n"
        "SET DOCKER_CERT_PATH=C:\\Users\\Jane Doe\\AppData\\Local\\Toolbox\\machines\\dev\n"
        "SET DOCKER_MACHINE_NAME=dev\n"
        "REM Run this command to configure your shell:\n"
        "REM     @FOR /f \"tokens=*\" %i IN ('toolbox env --shell cmd dev') DO @%i\n"
    )


@pytest.mark.parametrize(
    ("shell", "text"),
    [
        (Shell.BASH, "unset DOCKER_TLS_VERIFY\nunset DOCKER_HOST\nunset DOCKER_CERT_PATH\n"
         "unset DOCKER_MACHINE_NAME\n# Run this command to configure your shell:\n"
         "# eval $(toolbox env -u)\n"),
        (Shell.FISH, "set -e DOCKER_TLS_VERIFY;\nset -e DOCKER_HOST;\nset -e DOCKER_CERT_PATH;\n"
         "set -e DOCKER_MACHINE_NAME;\n# Run this command to configure your shell:\n"
         "# toolbox env -u | source\n"),
        (Shell.POWERSHELL, "Remove-Item Env:\\DOCKER_TLS_VERIFY\nRemove-Item Env:\\DOCKER_HOST\n"
         "Remove-Item Env:\\DOCKER_CERT_PATH\nRemove-Item Env:\\DOCKER_MACHINE_NAME\n"
         "# Run this command to configure your shell:\n# & toolbox env -u | Invoke-Expression\n"),
        (Shell.CMD, "SET DOCKER_TLS_VERIFY=\nSET DOCKER_HOST=\nSET DOCKER_CERT_PATH=\n"
         "SET DOCKER_MACHINE_NAME=\nREM Run this command to configure your shell:\n"
         "REM     @FOR /f \"tokens=*\" %i IN ('toolbox env -u') DO @%i\n"),
    ],
)  # fmt: skip
def test_unset(shell: Shell, text: str) -> None:
    assert render(shell, None, unset=True) == text


def test_special_characters_are_escaped_per_shell() -> None:
    env = EngineEnv("m", "tcp://127.0.0.1:1", Path('/o"dd/$HOME/`x`/back\\slash'))
    assert 'export DOCKER_CERT_PATH="/o\\"dd/\\$HOME/\\`x\\`/back\\\\slash"' in render(
        Shell.BASH, env
    )
    assert 'set -gx DOCKER_CERT_PATH "/o\\"dd/\\$HOME/`x`/back\\\\slash";' in render(
        Shell.FISH, env
    )
    assert '$Env:DOCKER_CERT_PATH = "/o`"dd/`$HOME/``x``/back\\slash"' in render(
        Shell.POWERSHELL, env
    )
    cmd_env = EngineEnv("m", "tcp://127.0.0.1:1", Path("C:\\A&B\\x|y"))
    assert "SET DOCKER_CERT_PATH=C:\\A^&B\\x^|y" in render(Shell.CMD, cmd_env)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=40))
def test_bash_output_reads_back_through_parse_exports(text: str) -> None:
    env = EngineEnv("m", "tcp://127.0.0.1:2376", Path("/p") / text.replace("/", "_"))
    parsed = parse_exports(render(Shell.BASH, env))
    assert parsed["DOCKER_CERT_PATH"] == str(env.cert_path)


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cc")), max_size=30))
def test_real_bash_evaluates_the_output_to_the_same_values(text: str) -> None:
    env = EngineEnv("m", "tcp://127.0.0.1:2376", Path("/p") / text.replace("/", "_"))
    script = render(Shell.BASH, env) + 'printf "%s\\0" "$DOCKER_CERT_PATH" "$DOCKER_HOST"'
    out = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", script], capture_output=True, check=True
    ).stdout.decode("utf-8")
    assert out.split("\0")[:2] == [str(env.cert_path), "tcp://127.0.0.1:2376"]


@pytest.mark.parametrize(
    ("shell_var", "expected"),
    [("/bin/bash", Shell.BASH), ("/usr/bin/zsh", Shell.ZSH), ("/usr/local/bin/fish", Shell.FISH),
     ("/bin/sh", Shell.BASH), ("", Shell.BASH), ("/opt/homebrew/bin/pwsh", Shell.POWERSHELL)],
)  # fmt: skip
def test_detect_from_shell_variable(shell_var: str, expected: Shell) -> None:
    assert detect_shell({"SHELL": shell_var}, "linux") is expected
    assert detect_shell({"SHELL": shell_var}, "darwin") is expected


@pytest.mark.parametrize(
    ("parent", "env", "expected"),
    [
        ("cmd.exe", {}, Shell.CMD),
        ("C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe", {}, Shell.POWERSHELL),
        ("pwsh.exe", {"SHELL": "/usr/bin/bash"}, Shell.POWERSHELL),
        ("mintty.exe", {"SHELL": "/usr/bin/bash"}, Shell.BASH),
        ("bash.exe", {"SHELL": "C:\\Program Files\\Git\\usr\\bin\\bash.exe"}, Shell.BASH),
        (None, {}, Shell.POWERSHELL),
        ("explorer.exe", {}, Shell.POWERSHELL),
    ],
)
def test_detect_on_windows_from_the_parent_process(
    parent: str | None, env: dict[str, str], expected: Shell
) -> None:
    assert detect_shell(env, "win32", lambda: parent) is expected


@pytest.mark.parametrize(
    ("text", "shell"), [("BASH", Shell.BASH), ("pwsh", Shell.POWERSHELL), ("cmd.exe", Shell.CMD)]
)
def test_shell_names(text: str, shell: Shell) -> None:
    assert Shell.parse(text) is shell


def test_unknown_shell_names_the_choices() -> None:
    with pytest.raises(UsageError) as info:
        Shell.parse("tcsh")
    assert "bash, zsh, fish, powershell, cmd" in (info.value.hint or "")
