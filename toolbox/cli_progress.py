"""Progress reports drawn for a terminal: a bar per step on a TTY, plain lines otherwise.

The bar shows what the operation reports (bytes or steps done over the total), never a
timer; a step whose size is unknown shows its elapsed time instead.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable
from typing import TextIO

from toolbox.machine.model import format_duration
from toolbox.progress import Progress

BAR_WIDTH = 24
REDRAW_INTERVAL = 0.1
PLAIN_STEP = 0.25  # without a TTY, a line at every quarter


def format_amount(current: int | None, total: int | None) -> str:
    """``12.3/48.0 MB`` for byte counts, ``3/7`` for item counts, empty when unknown."""
    if current is None or total is None or total <= 0:
        return ""
    if total >= 1_000_000:
        return f"{current / 1e6:.1f}/{total / 1e6:.1f} MB"
    return f"{current}/{total}"


def render_bar(fraction: float, width: int = BAR_WIDTH) -> str:
    fraction = min(max(fraction, 0.0), 1.0)
    filled = round(fraction * width)
    return "[" + "#" * filled + "." * (width - filled) + f"] {int(fraction * 100):3d}%"


class ProgressPrinter:
    """A ``ProgressCallback`` that draws reports on ``stream`` (stderr by default)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        tty: bool | None = None,
        columns: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.columns = columns or shutil.get_terminal_size((100, 24)).columns
        self.clock = clock
        self._step: str | None = None
        self._started: dict[str, float] = {}
        self._last_draw = 0.0
        self._line_open = False
        self._plain_mark: dict[str, float] = {}
        self._finished: set[str] = set()

    def __call__(self, report: Progress) -> None:
        now = self.clock()
        new_step = report.step != self._step
        if new_step or report.step not in self._started:
            self._started.setdefault(report.step, now)
        if self.tty:
            self._tty(report, new_step, now)
        else:
            self._plain(report, new_step, now)
        self._step = report.step

    def _elapsed(self, step: str, now: float) -> str:
        return format_duration(now - self._started.get(step, now))

    def _tty(self, report: Progress, new_step: bool, now: float) -> None:
        if new_step and self._line_open:
            self.stream.write("\n")
            self._line_open = False
        if not (new_step or report.done) and now - self._last_draw < REDRAW_INTERVAL:
            return
        self._last_draw = now
        if report.done:
            text = f"{report.message}  done ({self._elapsed(report.step, now)})"
        elif report.fraction is not None:
            amount = format_amount(report.current, report.total)
            text = f"{report.message:<40.40} {render_bar(report.fraction)} {amount}"
        else:
            text = f"{report.message}  ({self._elapsed(report.step, now)})"
        text = text[: max(self.columns - 1, 20)]
        self.stream.write("\r\x1b[2K" + text)
        self._line_open = True
        if report.done:
            self.stream.write("\n")
            self._line_open = False
            self._step = None
        self.stream.flush()

    def _plain(self, report: Progress, new_step: bool, now: float) -> None:
        if report.done:
            if report.step in self._finished and not new_step:
                return
            self._finished.add(report.step)
            self.stream.write(f"{report.message}: done ({self._elapsed(report.step, now)})\n")
        elif new_step and report.step not in self._plain_mark:
            self._plain_mark[report.step] = 0.0
            self._finished.discard(report.step)
            self.stream.write(f"{report.message} ...\n")
        elif report.fraction is not None:
            mark = self._plain_mark.get(report.step, 0.0)
            if report.fraction >= mark + PLAIN_STEP:
                self._plain_mark[report.step] = report.fraction - report.fraction % PLAIN_STEP
                amount = format_amount(report.current, report.total)
                suffix = f" ({amount})" if amount else ""
                self.stream.write(f"{report.message}: {int(report.fraction * 100)}%{suffix}\n")
        self.stream.flush()

    def __enter__(self) -> ProgressPrinter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End an open bar line so what follows starts on its own line (safe to repeat)."""
        if self._line_open:
            self.stream.write("\n")
            self._line_open = False
            self.stream.flush()
