"""The terminal command lines, per platform, as exact argv lists."""

from __future__ import annotations

import pytest

from ui.containers.terminal import TerminalCommand, terminal_command

EXEC = ["docker", "-H", "tcp://127.0.0.1:2376", "--tlsverify", "exec", "-it", "web", "sh"]


def which_from(*names: str):
    table = {name: f"/found/{name}" for name in names}
    return table.get


def test_macos_terminal_via_osascript() -> None:
    argv = ["docker", "--tlscacert", "/Users/me/My Certs/ca.pem", "exec", "-it", "web", "sh"]
    cmd = terminal_command("Darwin", argv, which_from("osascript"))
    assert cmd == TerminalCommand(
        (
            "/found/osascript",
            "-e",
            'tell application "Terminal"',
            "-e",
            "do script \"docker --tlscacert '/Users/me/My Certs/ca.pem' exec -it web sh\"",
            "-e",
            "activate",
            "-e",
            "end tell",
        ),
        terminal="Terminal",
    )


def test_macos_quotes_inside_applescript_string_are_escaped() -> None:
    cmd = terminal_command("Darwin", ["echo", 'say "hi"', "a\\b"], which_from("osascript"))
    assert cmd is not None
    assert cmd.argv[4] == "do script \"echo 'say \\\"hi\\\"' 'a\\\\b'\""


def test_macos_without_osascript() -> None:
    assert terminal_command("Darwin", EXEC, which_from()) is None


def test_windows_terminal_preferred() -> None:
    cmd = terminal_command(
        "Windows",
        ["docker", "exec", "-it", "web", "sh", "-c", "a; b"],
        which_from("wt.exe", "powershell.exe", "cmd.exe"),
        title="web (Toolbox)",
    )
    assert cmd == TerminalCommand(
        (
            "/found/wt.exe",
            "new-tab",
            "--title",
            "web (Toolbox)",
            "docker",
            "exec",
            "-it",
            "web",
            "sh",
            "-c",
            "a\\; b",
        ),
        terminal="wt",
    )


def test_windows_powershell_when_no_windows_terminal() -> None:
    argv = ["C:\\Program Files\\Docker\\docker.exe", "exec", "-it", "it's", "sh"]
    cmd = terminal_command("Windows", argv, which_from("powershell.exe", "cmd.exe"))
    assert cmd == TerminalCommand(
        (
            "/found/powershell.exe",
            "-NoExit",
            "-NoProfile",
            "-Command",
            "& 'C:\\Program Files\\Docker\\docker.exe' 'exec' '-it' 'it''s' 'sh'",
        ),
        new_console=True,
        terminal="PowerShell",
    )


def test_windows_cmd_last() -> None:
    cmd = terminal_command("Windows", EXEC, which_from("cmd.exe"))
    assert cmd == TerminalCommand(("/found/cmd.exe", "/k", *EXEC), new_console=True, terminal="cmd")


def test_windows_nothing() -> None:
    assert terminal_command("Windows", EXEC, which_from()) is None


@pytest.mark.parametrize(
    ("available", "expected"),
    [
        (
            ("x-terminal-emulator", "gnome-terminal", "xterm"),
            ("/found/x-terminal-emulator", "-e", *EXEC),
        ),
        (
            ("gnome-terminal", "konsole", "xterm"),
            ("/found/gnome-terminal", "--title", "T", "--", *EXEC),
        ),
        (("konsole", "xterm"), ("/found/konsole", "-p", "tabtitle=T", "-e", *EXEC)),
        (("xterm",), ("/found/xterm", "-T", "T", "-e", *EXEC)),
    ],
)
def test_linux_terminals_in_order(available: tuple[str, ...], expected: tuple[str, ...]) -> None:
    cmd = terminal_command("Linux", EXEC, which_from(*available), title="T")
    assert cmd is not None
    assert cmd.argv == expected
    assert not cmd.new_console


def test_linux_nothing_found() -> None:
    assert terminal_command("Linux", EXEC, which_from()) is None


def test_empty_command_is_a_bug() -> None:
    with pytest.raises(ValueError):
        terminal_command("Linux", [], which_from("xterm"))
