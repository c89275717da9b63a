"""Progress reports shared by long operations (downloads, image builds, create, provision, pull).

A long operation takes an optional ``ProgressCallback`` and calls it with ``Progress`` values;
the CLI draws them as progress bars, the GUI as steps with bars. Fractions are real (bytes
done over bytes known, steps done over steps), never a timer.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Progress:
    """One report. ``fraction`` is None when the amount of work is not known yet."""

    step: str  # machine-readable step id, e.g. "download", "boot", "provision.engine"
    message: str  # one line for people
    fraction: float | None = None
    current: int | None = None  # bytes or items done, when meaningful
    total: int | None = None
    done: bool = False
    skipped: bool = False  # done, by an earlier run: nothing was done this time


ProgressCallback = Callable[[Progress], None]


def ignore(_: Progress) -> None:
    """A ProgressCallback that drops every report."""
