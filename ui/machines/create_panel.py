"""The guided create: a form with the defaults filled in, then real progress per phase.

The form: name, CPUs, memory, disk, the guest image (a cached one, or Debian's download), and
the hypervisor picked automatically with the reason shown. "Create and start" is the default
button, so Enter starts it. While the service creates the machine, each phase of
``MachineService.create`` gets a row that turns from waiting to running to done, the running
one with a bar fed by the service's own ``Progress`` reports (download bytes, apt progress),
and the last lines of detail below. Cancel sets the create's cancel event. A failure names the
phase and the cause, shows the hint, and offers Retry, Delete and retry, and Show log.

Signals:
    created(str): the machine is created and running (its name).
    cancelled(): the user closed the form without creating.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from toolbox.errors import Cancelled, ToolboxError
from toolbox.machine.model import DEFAULT_NAME, validate_name
from toolbox.machine.service import CreateOptions, MachineService, console_log_path
from toolbox.progress import Progress
from ui import settings
from ui.tasks import TaskRunner, on_gui

#: The phases of ``MachineService.create``, in order (``create.KEY`` steps).
PHASES = (
    ("image", "Guest image"),
    ("keys", "SSH keys"),
    ("seed", "Cloud-init seed"),
    ("vm", "Create the VM"),
    ("boot", "Boot and wait for SSH"),
    ("provision", "Install and secure the engine"),
    ("context", "Docker CLI context"),
)
DEFAULT_IMAGE = ""  # CreateOptions.image None: Debian's published cloud image


@dataclass(frozen=True)
class Hypervisor:
    """Which driver a new machine gets here and why (or why none can be used)."""

    driver: str | None
    reason: str
    hint: str | None = None


def pick_hypervisor(preferred: str = "") -> Hypervisor:
    """The registry's verdict, with the reason a user can read (runs the probes: a worker)."""
    from toolbox.drivers.registry import nothing_usable_hint, probe_all

    found = dict(probe_all())
    if preferred and preferred in found and found[preferred].usable:
        return Hypervisor(preferred, f"{preferred}: chosen in Preferences")
    vbox, qemu = found.get("virtualbox"), found.get("qemu")
    if vbox is not None and vbox.usable:
        return Hypervisor("virtualbox", f"VirtualBox {vbox.version or ''} is installed".strip())
    if qemu is not None and qemu.usable:
        why = "VirtualBox is not installed" if vbox is None or not vbox.usable else ""
        text = f"QEMU {qemu.version or ''}".strip() + (f" ({why})" if why else "")
        return Hypervisor("qemu", text)
    reasons = "; ".join(f"{n}: {a.reason}" for n, a in found.items() if a.reason)
    return Hypervisor(None, reasons or "no hypervisor found", nothing_usable_hint())


def format_rate(report: Progress, started: float, now: float) -> str:
    """``12.3/48.0 MB, 4.1 MB/s, 9 s left`` for byte progress; "" when not bytes."""
    if report.current is None or not report.total or report.total < 1_000_000:
        return ""
    elapsed = max(now - started, 1e-3)
    rate = report.current / elapsed
    left = (report.total - report.current) / rate if rate > 0 else 0
    return (
        f"{report.current / 1e6:.1f}/{report.total / 1e6:.1f} MB, "
        f"{rate / 1e6:.1f} MB/s, {int(left)} s left"
    )


class PhaseRow(QWidget):
    """One phase: a mark, its title, and the time it took."""

    def __init__(self, key: str, title: str, parent: QWidget | None = None):
        super().__init__(parent)
        self.key = key
        self.title = title
        self.state = "waiting"
        self.label = QLabel()
        self.label.setObjectName(f"phase_{key}")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.label)
        self.set_state("waiting")

    def set_state(self, state: str, note: str = "") -> None:
        self.state = state
        mark = {"waiting": "○", "running": "▶", "done": "✓", "failed": "✗", "skipped": "✓"}[state]
        text = f"{mark}  {self.title}"
        if note:
            text += f"   {note}"
        weight = "600" if state == "running" else "normal"
        colour = {"failed": "#c62828", "waiting": "#757575"}.get(state, "palette(text)")
        self.label.setStyleSheet(f"font-weight: {weight}; color: {colour};")
        self.label.setText(text)


class CreatePanel(QWidget):
    """The create form and its progress (see the module docstring)."""

    created = Signal(str)
    cancelled = Signal()

    def __init__(
        self,
        service: MachineService,
        tasks: TaskRunner,
        parent: QWidget | None = None,
        first_run: bool = False,
    ):
        super().__init__(parent)
        self.setObjectName("createPanel")
        self.service = service
        self.tasks = tasks
        self.hypervisor: Hypervisor | None = None
        self.cancel_event: threading.Event | None = None
        self.last_error: ToolboxError | None = None
        self.reports: list[Progress] = []
        self._phase_started: dict[str, float] = {}
        self._current = ""
        prefs = settings.Preferences.load()

        heading = QLabel("Create your Docker machine" if first_run else "Create a machine")
        heading.setStyleSheet("font-size: 15pt; font-weight: 600;")
        intro = QLabel(
            "Toolbox runs the Docker engine in a small Linux VM. The defaults suit most "
            "projects; you can change CPUs, memory and disk later."
        )
        intro.setWordWrap(True)
        self.name_edit = QLineEdit(DEFAULT_NAME if first_run else "")
        self.name_edit.setObjectName("machineName")
        self.cpus = QSpinBox()
        self.cpus.setRange(1, 64)
        self.cpus.setValue(prefs.default_cpus)
        self.memory = QSpinBox()
        self.memory.setRange(512, 262144)
        self.memory.setSingleStep(512)
        self.memory.setSuffix(" MiB")
        self.memory.setValue(prefs.default_memory_mib)
        self.disk = QSpinBox()
        self.disk.setRange(5, 4096)
        self.disk.setSuffix(" GiB")
        self.disk.setValue(prefs.default_disk_gib)
        self.image = QComboBox()
        self.image.setObjectName("machineImage")
        self.image.addItem("Debian 12 (downloaded from cloud.debian.org)", DEFAULT_IMAGE)
        self.hypervisor_label = QLabel("Looking for a hypervisor…")
        self.hypervisor_label.setObjectName("hypervisorReason")
        self.hypervisor_label.setWordWrap(True)
        self.name_error = QLabel()
        self.name_error.setStyleSheet("color: #c62828;")
        self.name_error.hide()
        form = QFormLayout()
        form.addRow("Name", self.name_edit)
        form.addRow("", self.name_error)
        form.addRow("CPUs", self.cpus)
        form.addRow("Memory", self.memory)
        form.addRow("Disk", self.disk)
        form.addRow("Guest image", self.image)
        form.addRow("Hypervisor", self.hypervisor_label)

        self.create_button = QPushButton("Create and start")
        self.create_button.setObjectName("createButton")
        self.create_button.setDefault(True)
        self.create_button.setAutoDefault(True)
        self.create_button.setEnabled(False)
        self.create_button.clicked.connect(self.start_create)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setObjectName("cancelButton")
        self.cancel_button.clicked.connect(self.cancel)
        self.retry_button = QPushButton("Retry")
        self.retry_button.clicked.connect(self.start_create)
        self.delete_retry_button = QPushButton("Delete and retry")
        self.delete_retry_button.clicked.connect(self.delete_and_retry)
        self.log_button = QPushButton("Show log")
        self.log_button.clicked.connect(self.show_log)
        buttons = QHBoxLayout()
        buttons.addStretch(1)
        for b in (
            self.log_button,
            self.delete_retry_button,
            self.retry_button,
            self.cancel_button,
            self.create_button,
        ):
            buttons.addWidget(b)

        self.rows = {key: PhaseRow(key, title) for key, title in PHASES}
        self.phase_box = QWidget()
        phase_layout = QVBoxLayout(self.phase_box)
        phase_layout.setContentsMargins(0, 0, 0, 0)
        for row in self.rows.values():
            phase_layout.addWidget(row)
        self.bar = QProgressBar()
        self.bar.setObjectName("createProgress")
        self.bar.setRange(0, 1000)
        self.detail = QLabel()
        self.detail.setObjectName("createDetail")
        self.detail.setWordWrap(True)
        self.output = QPlainTextEdit()
        self.output.setObjectName("createOutput")
        self.output.setReadOnly(True)
        self.output.setMaximumBlockCount(500)
        self.output.setMaximumHeight(140)
        self.error_label = QLabel()
        self.error_label.setObjectName("createError")
        self.error_label.setWordWrap(True)
        self.error_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error_label.setStyleSheet("color: #c62828;")

        layout = QVBoxLayout(self)
        layout.addWidget(heading)
        layout.addWidget(intro)
        self.form_box = QWidget()
        self.form_box.setLayout(form)
        layout.addWidget(self.form_box)
        layout.addWidget(self.phase_box)
        layout.addWidget(self.bar)
        layout.addWidget(self.detail)
        layout.addWidget(self.output)
        layout.addWidget(self.error_label)
        layout.addStretch(1)
        layout.addLayout(buttons)
        self.name_edit.textChanged.connect(self._validate)
        self.name_edit.returnPressed.connect(self._enter)
        self._set_mode("form")
        self._probe()
        self._load_images()

    # -- form ---------------------------------------------------------------------------

    def _probe(self) -> None:
        preferred = settings.Preferences.load().default_driver
        self.tasks.run(
            lambda: pick_hypervisor(preferred),
            self._probed,
            lambda error: self._probed(Hypervisor(None, error.message, error.hint)),
            owner=self,
            what="Look for a hypervisor",
        )

    def _probed(self, found: Hypervisor) -> None:
        self.hypervisor = found
        if found.driver is None:
            self.hypervisor_label.setText(f"None usable: {found.reason}. {found.hint or ''}")
        else:
            self.hypervisor_label.setText(found.reason)
        self._validate()

    def _load_images(self) -> None:
        self.tasks.run(
            lambda: [img.name for img in self.service.images.list()],
            self._images_loaded,
            lambda _error: None,
            owner=self,
            what="List guest images",
        )

    def _images_loaded(self, names: list[str]) -> None:
        for name in names:
            if self.image.findData(name) < 0:
                self.image.addItem(f"{name} (cached)", name)
        if names:  # a cached image needs no download (and works offline)
            self.image.setCurrentIndex(self.image.findData(names[0]))

    def _validate(self) -> bool:
        name = self.name_edit.text().strip()
        problem = ""
        if not name:
            problem = "Give the machine a name."
        else:
            try:
                validate_name(name)
            except ToolboxError as exc:
                problem = f"{exc.message}. {exc.hint or ''}"
        self.name_error.setText(problem)
        self.name_error.setVisible(bool(problem))
        ok = not problem and self.hypervisor is not None and self.hypervisor.driver is not None
        self.create_button.setEnabled(ok and self.mode == "form")
        return ok

    def _enter(self) -> None:
        if self.create_button.isEnabled():
            self.start_create()

    def options(self) -> CreateOptions:
        image = self.image.currentData() or None
        return CreateOptions(
            name=self.name_edit.text().strip(),
            driver=self.hypervisor.driver if self.hypervisor else None,
            cpus=self.cpus.value(),
            memory_mib=self.memory.value(),
            disk_gib=self.disk.value(),
            image=image,
        )

    # -- create ---------------------------------------------------------------------------

    def _set_mode(self, mode: str) -> None:
        """form, running, failed."""
        self.mode = mode
        self.form_box.setEnabled(mode != "running")
        running_or_failed = mode in ("running", "failed")
        self.phase_box.setVisible(running_or_failed)
        self.bar.setVisible(mode == "running")
        self.detail.setVisible(running_or_failed)
        self.output.setVisible(running_or_failed)
        self.error_label.setVisible(mode == "failed")
        self.create_button.setVisible(mode == "form")
        self.retry_button.setVisible(mode == "failed")
        self.delete_retry_button.setVisible(mode == "failed")
        self.log_button.setVisible(mode == "failed")
        self.cancel_button.setText("Cancel" if mode == "running" else "Close")
        if mode == "form":
            self._validate()

    def start_create(self) -> None:
        if self.mode == "running" or not self._validate():
            return
        options = self.options()
        self.cancel_event = threading.Event()
        self.reports = []
        self.last_error = None
        self._phase_started = {}
        self._current = ""
        for row in self.rows.values():
            row.set_state("waiting")
        self.output.clear()
        self.bar.setValue(0)
        self.detail.setText("Starting…")
        self._set_mode("running")
        report = on_gui(self.report)
        self.tasks.run(
            lambda: self.service.create(options, progress=report, cancel=self.cancel_event),
            lambda result: self._done(result.spec.name),
            self._failed,
            key=f"machine:{options.name}",
            owner=self,
            what=f"Create machine {options.name}",
            cancel=self.cancel_event,
        )

    def report(self, progress: Progress) -> None:
        """One ``Progress`` from the service (on the GUI thread)."""
        self.reports.append(progress)
        now = time.monotonic()
        step = progress.step
        if step.startswith(("create.", "start.")) and step.count(".") == 1:
            key = step.split(".", 1)[1]
            row = self.rows.get(key)
            if row is None:
                return
            if progress.done:
                started = self._phase_started.get(key, now)
                skipped = progress.skipped
                row.set_state(
                    "skipped" if skipped else "done",
                    "(done before)" if skipped else f"{now - started:.1f} s",
                )
                self.bar.setValue(1000)
            else:
                self._phase_started[key] = now
                self._current = key
                row.set_state("running")
                self.bar.setValue(0)
                self.detail.setText(progress.message)
            return
        # A report inside the current phase: its bar, its line, its output.
        if progress.fraction is not None:
            self.bar.setValue(int(max(0.0, min(progress.fraction, 1.0)) * 1000))
        rate = format_rate(progress, self._phase_started.get(self._current, now), now)
        self.detail.setText(progress.message + (f"   {rate}" if rate else ""))
        last = self.output.toPlainText().rsplit("\n", 1)[-1]
        if progress.message and progress.message != last:
            self.output.appendPlainText(progress.message)

    def _done(self, name: str) -> None:
        self._set_mode("form")
        self.detail.setText(f"Machine {name} is running.")
        self.created.emit(name)

    def _failed(self, error: ToolboxError) -> None:
        self.last_error = error
        phase = self.rows.get(self._current)
        if phase is not None:
            phase.set_state("failed")
        if isinstance(error, Cancelled):
            self._set_mode("form")
            self.detail.setText("Cancelled.")
            return
        where = f"{phase.title}: " if phase is not None else ""
        self.error_label.setText(
            f"{where}{error.message}" + (f"\n\nWhat to do: {error.hint}" if error.hint else "")
        )
        self._set_mode("failed")

    def cancel(self) -> None:
        if self.mode == "running" and self.cancel_event is not None:
            self.cancel_event.set()
            self.detail.setText("Cancelling…")
            return
        self._set_mode("form")
        self.cancelled.emit()

    def delete_and_retry(self) -> None:
        name = self.name_edit.text().strip()
        self.delete_retry_button.setEnabled(False)

        def removed(_result: object) -> None:
            self.delete_retry_button.setEnabled(True)
            self._set_mode("form")
            self.start_create()

        def failed(error: ToolboxError) -> None:
            self.delete_retry_button.setEnabled(True)
            self.error_label.setText(f"Deleting {name} failed: {error.message}")

        def remove() -> None:
            # A failed create removes its machine itself (unless kept): nothing may be left.
            if self.service.store.dir_for(name).exists():
                self.service.remove(name, force=True)

        self.tasks.run(
            remove,
            removed,
            failed,
            key=f"machine:{name}",
            owner=self,
            what=f"Delete machine {name}",
        )

    def show_log(self) -> None:
        from ui.machines.log_view import LogWindow

        name = self.name_edit.text().strip()
        LogWindow.open_for(console_log_path(name), f"Console log of {name}", self.window())
