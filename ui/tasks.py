"""All background work in the GUI goes through ``TaskRunner``: never call the network, a VM or a
process on the GUI thread.

Usage::

    runner = TaskRunner(parent=window)
    runner.run(lambda: client.stop(cid), on_success=lambda _: ..., key=f"container:{cid}",
               owner=self, what="Stop container web")

``fn`` runs on a QThreadPool thread; ``on_success(result)`` and ``on_error(exc)`` run later on
the GUI thread. Without ``on_error`` the error is shown to the user (message, hint, details on
demand) in an ``ErrorDialog``. Tasks sharing a ``key`` run one after another in submission order,
so operations on one resource never race. ``owner`` (a QObject) drops the callbacks when it has
been deleted meanwhile. Cancellation: pass ``cancel=threading.Event()`` (and hand the same event to
the work, e.g. ``client.pull(..., cancel=ev)``) or call ``task.cancel()``; a task cancelled
before it starts never runs, and ``toolbox.errors.Cancelled`` is never shown as an error.

``on_gui(fn)`` wraps a callback so calling it from any thread runs ``fn`` on the GUI thread (for
progress reports); ``coalesce=True`` delivers only the latest call when several pile up.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import count
from typing import Any, Generic, TypeVar

import shiboken6
from PySide6.QtCore import QCoreApplication, QObject, QRunnable, QThreadPool, Signal, Slot
from PySide6.QtWidgets import QApplication, QWidget

from toolbox.errors import Cancelled, ToolboxError

T = TypeVar("T")
log = logging.getLogger(__name__)

#: Long-lived streams (log follow, events, exec consoles) hold a thread each; leave room for them.
GIL_SWITCH_INTERVAL = 0.001  # seconds; see TaskRunner.__init__
DEFAULT_MAX_THREADS = 16


def as_toolbox_error(exc: BaseException, what: str | None = None) -> ToolboxError:
    """Turn any exception into a ToolboxError that a user can read; unexpected ones keep the
    traceback in ``details``."""
    if isinstance(exc, ToolboxError):
        return exc
    import traceback  # only on the error path: it costs ~20 ms at start-up

    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    head = f"{what} failed" if what else "Something went wrong"
    text = str(exc) or type(exc).__name__
    return ToolboxError(
        f"{head}: {text}",
        hint="This looks like a bug in Toolbox; the details help to report it.",
        details=tb,
    )


@dataclass(eq=False)
class Task(Generic[T]):
    """A handle on one submitted piece of work."""

    fn: Callable[[], T]
    on_success: Callable[[T], None] | None
    on_error: Callable[[ToolboxError], None] | None
    key: str | None
    what: str
    owner: QObject | None
    cancel_event: threading.Event
    id: int = 0
    started: bool = False
    finished: bool = False
    result: Any = None
    error: ToolboxError | None = None
    _runnable: QRunnable | None = field(default=None, repr=False)

    def cancel(self) -> None:
        """Ask the work to stop; a queued task will not start at all."""
        self.cancel_event.set()

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()


class _Runnable(QRunnable):
    def __init__(self, runner: TaskRunner, task: Task[Any]):
        super().__init__()
        self.setAutoDelete(True)
        self._runner = runner
        self._task = task

    def run(self) -> None:
        task = self._task
        result: Any = None
        error: BaseException | None = None
        try:
            if task.cancelled:
                raise Cancelled(f"{task.what or 'Task'} cancelled")
            result = task.fn()
        except BaseException as exc:
            error = exc
        # Emitting across threads queues the call onto the runner's (GUI) thread.
        try:
            self._runner._finished.emit(task, result, error)
        except RuntimeError:  # the runner was deleted while the work ran (window closed)
            pass


class TaskRunner(QObject):
    """Runs callables on a thread pool and delivers their outcome on the GUI thread.

    Signals:
        task_started(Task): a task began running (GUI thread view).
        task_finished(Task): a task ended; ``task.error`` is None on success.
        busy_changed(bool): whether any task is queued or running.
    """

    task_started = Signal(object)
    task_finished = Signal(object)
    busy_changed = Signal(bool)
    _finished = Signal(object, object, object)

    def __init__(
        self,
        parent: QObject | None = None,
        max_threads: int = DEFAULT_MAX_THREADS,
        show_errors: Callable[[ToolboxError, QObject | None, str | None], None] | None = None,
    ):
        super().__init__(parent)
        # Workers share the GIL with the GUI thread. While one is busy (a log flood), the GUI
        # thread waits up to the switch interval each time it takes the GIL back, and one
        # event-loop turn takes it back dozens of times: at the default 5 ms that froze the
        # window for 100 ms and more; 1 ms keeps a turn short (benchmarks/ui_logs.py).
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL))
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(max_threads)
        self._queues: dict[str, deque[Task[Any]]] = {}
        self._active: set[Task[Any]] = set()
        self._ids = count(1)
        self._show_errors = show_errors or show_error
        self._closed = False
        self._finished.connect(self._on_finished)

    @property
    def pool(self) -> QThreadPool:
        return self._pool

    def run(
        self,
        fn: Callable[[], T],
        on_success: Callable[[T], None] | None = None,
        on_error: Callable[[ToolboxError], None] | None = None,
        *,
        key: str | None = None,
        what: str = "",
        owner: QObject | None = None,
        cancel: threading.Event | None = None,
    ) -> Task[T]:
        """Submit ``fn``; see the module docstring. Must be called on the GUI thread."""
        task: Task[T] = Task(
            fn=fn,
            on_success=on_success,
            on_error=on_error,
            key=key,
            what=what,
            owner=owner,
            cancel_event=cancel or threading.Event(),
            id=next(self._ids),
        )
        was_busy = self.busy
        if self._closed:
            task.cancel()
        if key is not None:
            queue = self._queues.setdefault(key, deque())
            queue.append(task)
            if len(queue) == 1:
                self._start(task)
        else:
            self._start(task)
        if not was_busy:
            self.busy_changed.emit(True)
        return task

    @property
    def busy(self) -> bool:
        return bool(self._active) or any(self._queues.values())

    def pending(self, key: str) -> int:
        """How many tasks for ``key`` are queued or running."""
        return len(self._queues.get(key, ()))

    def cancel_all(self) -> None:
        """Cancel everything queued or running (used when the window closes)."""
        for task in list(self._active):
            task.cancel()
        for queue in self._queues.values():
            for task in queue:
                task.cancel()

    def shutdown(self, timeout_ms: int = 2000) -> bool:
        """Cancel all work and wait (bounded) for the threads; call once at application exit."""
        self._closed = True
        self.cancel_all()
        return bool(self._pool.waitForDone(timeout_ms))

    def _start(self, task: Task[Any]) -> None:
        task.started = True
        self._active.add(task)
        runnable = _Runnable(self, task)
        self.task_started.emit(task)
        self._pool.start(runnable)

    @Slot(object, object, object)
    def _on_finished(self, task: Task[Any], result: Any, error: BaseException | None) -> None:
        self._active.discard(task)
        task.finished = True
        if error is not None:
            task.error = as_toolbox_error(error, task.what or None)
            if not isinstance(error, ToolboxError):
                log.error("%s failed", task.what or "task", exc_info=error)
        else:
            task.result = result
        try:
            self._deliver(task)
        finally:
            self._advance(task)
            self.task_finished.emit(task)
            if not self.busy:
                self.busy_changed.emit(False)

    def _deliver(self, task: Task[Any]) -> None:
        owner = task.owner
        if owner is not None and not shiboken6.isValid(owner):
            return
        if task.error is None:
            if task.on_success is not None:
                self._guard(task, task.on_success, task.result)
            return
        if task.on_error is not None:
            self._guard(task, task.on_error, task.error)
        elif not isinstance(task.error, Cancelled):
            self._show_errors(task.error, owner, task.what or None)

    def _guard(self, task: Task[Any], callback: Callable[[Any], None], value: Any) -> None:
        """A failing callback is a bug, but it must not take the event loop down with it."""
        try:
            callback(value)
        except Exception as exc:
            log.exception("callback of %s failed", task.what or "task")
            self._show_errors(
                as_toolbox_error(exc, task.what or None), task.owner, task.what or None
            )

    def _advance(self, task: Task[Any]) -> None:
        if task.key is None:
            return
        queue = self._queues.get(task.key)
        if not queue:
            return
        if queue[0] is task:
            queue.popleft()
        if queue:
            self._start(queue[0])
        else:
            del self._queues[task.key]


def show_error(error: ToolboxError, owner: QObject | None = None, what: str | None = None) -> None:
    """Show ``error`` to the user without blocking (non-modal dialog, parented to a window)."""
    from ui.widgets.error_dialog import ErrorDialog

    parent = owner if isinstance(owner, QWidget) and shiboken6.isValid(owner) else None
    if parent is None:
        app = QApplication.instance()
        parent = app.activeWindow() if isinstance(app, QApplication) else None
    dialog = ErrorDialog.from_error(error, parent.window() if parent else None, what=what)
    dialog.show()


class _GuiInvoker(QObject):
    """Lives on the GUI thread; runs callables posted from any thread."""

    call = Signal(object)

    def __init__(self) -> None:
        super().__init__()
        self.call.connect(self._run)

    @Slot(object)
    def _run(self, thunk: Callable[[], None]) -> None:
        try:
            thunk()
        except Exception:
            log.exception("GUI callback failed")


_invoker: _GuiInvoker | None = None
_invoker_lock = threading.Lock()


def _gui_invoker() -> _GuiInvoker:
    global _invoker
    with _invoker_lock:
        if _invoker is None or not shiboken6.isValid(_invoker):
            inv = _GuiInvoker()
            app = QCoreApplication.instance()
            if app is not None:
                inv.moveToThread(app.thread())
            _invoker = inv
        return _invoker


def on_gui(fn: Callable[..., None], coalesce: bool = False) -> Callable[..., None]:
    """Wrap ``fn`` so calling the wrapper from any thread runs ``fn`` on the GUI thread.

    With ``coalesce`` only the most recent pending call is delivered (progress bars, counters).
    Call this on the GUI thread (it creates the helper there).
    """
    invoker = _gui_invoker()
    if not coalesce:

        def relay(*args: Any) -> None:
            invoker.call.emit(lambda: fn(*args))

        return relay

    lock = threading.Lock()
    latest: list[tuple[Any, ...]] = []

    def flush() -> None:
        with lock:
            args = latest.pop() if latest else None
            latest.clear()
        if args is not None:
            fn(*args)

    def relay_latest(*args: Any) -> None:
        with lock:
            pending = bool(latest)
            latest[:] = [args]
        if not pending:
            invoker.call.emit(flush)

    return relay_latest
