"""The page for a computer with no usable hypervisor: what to install on this OS, why, and
where from; it checks again by itself when the app regains focus (the user comes back from the
installer), or on "Check again".

Usage::

    panel = NoHypervisorPanel(service, tasks)     # service: the MachineService (its drivers)
    panel.checked.connect(lambda usable: ...)     # after every check
    panel.check()                                 # probes on a worker, never on the GUI thread

Signals:
    checked(bool): a check finished; True when some driver is usable now.
"""

from __future__ import annotations

import datetime as dt
import html
import platform
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from toolbox.errors import ToolboxError
from ui.tasks import TaskRunner

if TYPE_CHECKING:
    from toolbox.drivers.base import Availability
    from toolbox.machine.service import MachineService

Probe = Callable[[], "list[tuple[str, Availability]]"]

WHY = (
    "Toolbox runs the Docker engine inside a small Linux virtual machine, so it needs a "
    "hypervisor to run that machine: VirtualBox when it is installed, else QEMU. Neither "
    "was found on this computer."
)


@dataclass(frozen=True)
class InstallAdvice:
    """What to install on one OS: steps (commands or actions) and links (title, URL)."""

    system: str
    steps: tuple[str, ...]
    links: tuple[tuple[str, str], ...]
    note: str = ""


def install_advice(system: str | None = None) -> InstallAdvice:
    """The install advice for ``system`` (``platform.system()`` names; others get Linux's)."""
    system = system or platform.system()
    if system == "Darwin":
        return InstallAdvice(
            "macOS",
            (
                "Install QEMU with Homebrew: brew install qemu",
                "or install VirtualBox (Intel Macs): download it from virtualbox.org",
            ),
            (
                ("Homebrew", "https://brew.sh"),
                ("QEMU for macOS", "https://www.qemu.org/download/#macos"),
                ("VirtualBox downloads", "https://www.virtualbox.org/wiki/Downloads"),
            ),
            "On Apple Silicon, QEMU runs the machine with Apple's Hypervisor framework (hvf).",
        )
    if system == "Windows":
        return InstallAdvice(
            "Windows",
            (
                "Install VirtualBox: download the Windows hosts installer from virtualbox.org",
                "or install QEMU for Windows (the 64-bit installer) into C:\\Program Files\\qemu",
            ),
            (
                ("VirtualBox downloads", "https://www.virtualbox.org/wiki/Downloads"),
                ("QEMU for Windows", "https://www.qemu.org/download/#windows"),
            ),
            "QEMU is fast only with the Windows Hypervisor Platform (WHPX): turn it on in "
            '"Turn Windows features on or off" and restart; without it QEMU works, slowly.',
        )
    return InstallAdvice(
        "Linux",
        (
            "Debian or Ubuntu: sudo apt-get install qemu-system-x86 qemu-utils",
            "Fedora: sudo dnf install qemu-system-x86 qemu-img",
        ),
        (("QEMU for Linux", "https://www.qemu.org/download/#linux"),),
        "For speed, let your user open /dev/kvm (add it to the kvm group, then log in again).",
    )


def advice_html(advice: InstallAdvice) -> str:
    """The advice as the rich text the panel shows (links open in the browser)."""
    steps = "".join(f"<li>{html.escape(step)}</li>" for step in advice.steps)
    links = " · ".join(
        f'<a href="{html.escape(url)}">{html.escape(title)}</a>' for title, url in advice.links
    )
    note = f"<p>{html.escape(advice.note)}</p>" if advice.note else ""
    return (
        f"<p>{html.escape(WHY)}</p><p><b>On {html.escape(advice.system)}:</b></p>"
        f"<ul>{steps}</ul>{note}<p>{links}</p>"
    )


def service_probe(service: MachineService) -> Probe:
    """Probe the drivers the service would use (its driver factory: the registry's, or a
    test's), each for whether it is usable here. Call the result on a worker."""

    def probe() -> list[tuple[str, Availability]]:
        from toolbox.drivers.registry import DRIVER_NAMES, probe_all

        drivers = []
        for name in DRIVER_NAMES:
            try:
                drivers.append(service.driver(name))
            except ToolboxError:
                continue
        return probe_all(drivers=drivers)

    return probe


def any_usable(found: list[tuple[str, Availability]]) -> bool:
    return any(avail.usable for _name, avail in found)


class NoHypervisorPanel(QWidget):
    """Says what to install; checks again on focus and on request. See the module docstring."""

    checked = Signal(bool)

    def __init__(
        self,
        probe: Probe,
        tasks: TaskRunner,
        system: str | None = None,
        parent: QWidget | None = None,
    ):
        super().__init__(parent)
        self.setObjectName("noHypervisor")
        self.probe = probe
        self.tasks = tasks
        self.advice = install_advice(system)
        self.usable: bool | None = None  # None until the first check answers
        self.found: list[tuple[str, Availability]] = []
        self.checks = 0  # finished checks (tests and the status line)
        self._checking = False

        title = QLabel("No hypervisor is installed")
        title.setObjectName("noHypervisorTitle")
        font = title.font()
        font.setPointSizeF(font.pointSizeF() * 1.4)
        font.setBold(True)
        title.setFont(font)
        self.text = QLabel(advice_html(self.advice))
        self.text.setObjectName("noHypervisorText")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setOpenExternalLinks(True)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextBrowserInteraction)
        self.reasons = QLabel()
        self.reasons.setObjectName("noHypervisorReasons")
        self.reasons.setWordWrap(True)
        self.reasons.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.check_button = QPushButton("Check again")
        self.check_button.clicked.connect(self.check)
        self.status = QLabel("Toolbox checks again when you come back to this window.")
        buttons = QHBoxLayout()
        buttons.addWidget(self.check_button)
        buttons.addWidget(self.status, 1)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(24, 24, 24, 24)
        layout.addWidget(title)
        layout.addWidget(self.text)
        layout.addWidget(self.reasons)
        layout.addLayout(buttons)
        layout.addStretch(1)

        app = QGuiApplication.instance()
        if isinstance(app, QGuiApplication):
            app.applicationStateChanged.connect(self._app_state)

    def _app_state(self, state: Qt.ApplicationState) -> None:
        if state == Qt.ApplicationState.ApplicationActive and self.isVisible():
            self.check()

    def check(self) -> None:
        """Probe the drivers on a worker; ``checked`` follows. A check under way is reused."""
        if self._checking:
            return
        self._checking = True
        self.check_button.setEnabled(False)
        self.status.setText("Checking…")
        self.tasks.run(
            self.probe, self._checked, self._failed, owner=self, what="Look for a hypervisor"
        )

    def _checked(self, found: list[tuple[str, Availability]]) -> None:
        self._checking = False
        self.checks += 1
        self.found = found
        self.usable = any_usable(found)
        self.check_button.setEnabled(True)
        when = dt.datetime.now().strftime("%H:%M:%S")
        self.status.setText(
            f"Checked at {when}; Toolbox checks again when you come back to this window."
        )
        lines = [
            f"{name}: {avail.reason or 'not usable'}" + (f" — {avail.hint}" if avail.hint else "")
            for name, avail in found
            if not avail.usable
        ]
        self.reasons.setText("What was found: " + "; ".join(lines) if lines else "")
        self.checked.emit(self.usable)

    def _failed(self, error: ToolboxError) -> None:
        self._checking = False
        self.checks += 1
        self.check_button.setEnabled(True)
        self.status.setText(f"The check failed: {error.message}")
