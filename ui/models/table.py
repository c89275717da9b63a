"""A table model over a list of typed records, updated incrementally, with a sort/filter proxy.

Usage::

    columns = [
        Column("Name", lambda c: c.name),
        Column("Size", lambda i: format_size(i.size), sort_key=lambda i: i.size,
               align=RIGHT),
    ]
    model = RecordTableModel(columns, key=lambda rec: rec.id)
    proxy = RecordSortProxy(model)
    view.setModel(proxy)
    model.set_records(snapshot)      # diffed: rows inserted/changed/removed, never a reset
    model.upsert([changed])          # events: one dataChanged / beginInsertRows each
    model.remove([gone_id])
    filter_box.filter_changed.connect(proxy.set_filter_text)

Roles: ``Qt.DisplayRole`` (text), ``SORT_ROLE`` (a Python value; the proxy compares these, so
sizes past 2 GiB and datetimes sort right), ``Qt.ToolTipRole``, ``Qt.ForegroundRole``,
``RECORD_ROLE`` (the record) and ``KEY_ROLE`` (its key). Selection and scroll position survive
every update because rows are never reset. ``set_stale(since)`` greys every row with "Last seen
HH:MM:SS" (tooltip, and the ``stale_column``'s text) while the engine does not answer.
Columns have fixed initial widths: never call ``resizeColumnsToContents()`` on these views
(about a second for 1,000 rows).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from PySide6.QtCore import (
    QAbstractTableModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QSortFilterProxyModel,
    Qt,
)
from PySide6.QtGui import QBrush, QColor

R = TypeVar("R")

# Role ints, cached: comparing against Qt.ItemDataRole members costs ten times an int compare.
DISPLAY_ROLE = int(Qt.ItemDataRole.DisplayRole)
TOOLTIP_ROLE = int(Qt.ItemDataRole.ToolTipRole)
FOREGROUND_ROLE = int(Qt.ItemDataRole.ForegroundRole)
ALIGN_ROLE = int(Qt.ItemDataRole.TextAlignmentRole)
USER_ROLE = int(Qt.ItemDataRole.UserRole)
SORT_ROLE = USER_ROLE + 1
RECORD_ROLE = USER_ROLE + 2
KEY_ROLE = USER_ROLE + 3

RIGHT = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
LEFT = Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter

_FLAGS = Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsEnabled
#: Rows of an engine that stopped answering are drawn in this colour (see ``set_stale``).
STALE_COLOR = QColor("#9e9e9e")
_NO_INDEX = QModelIndex()

AnyIndex = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Column(Generic[R]):
    """How one column renders a record. ``sort_key`` defaults to the text (case-folded)."""

    title: str
    text: Callable[[R], str]
    sort_key: Callable[[R], Any] | None = None
    tooltip: Callable[[R], str | None] | None = None
    foreground: Callable[[R], QColor | None] | None = None
    width: int = 120
    align: Qt.AlignmentFlag | None = None
    searchable: bool = True


def _runs(rows: Iterable[int]) -> list[tuple[int, int]]:
    """Group row numbers into contiguous (first, last) runs, ascending."""
    out: list[tuple[int, int]] = []
    for row in sorted(set(rows)):
        if out and row == out[-1][1] + 1:
            out[-1] = (out[-1][0], row)
        else:
            out.append((row, row))
    return out


class RecordTableModel(QAbstractTableModel, Generic[R]):
    """Rows are records (frozen dataclasses); ``key(record)`` identifies a row across updates."""

    def __init__(
        self,
        columns: Sequence[Column[R]],
        key: Callable[[R], str],
        parent: QObject | None = None,
    ):
        super().__init__(parent)
        self.columns: list[Column[R]] = list(columns)
        self._key = key
        self._rows: list[R] = []
        self._keys: list[str] = []
        self._index: dict[str, int] = {}
        self._search: dict[str, str] = {}
        self._brushes: dict[str, QBrush] = {}
        self._align = [int(c.align) if c.align is not None else None for c in self.columns]
        self._stale_since: dt.datetime | None = None
        self._stale_text = ""
        self._stale_brush = QBrush(STALE_COLOR)

    #: A column whose text reads "last seen HH:MM:SS" while the rows are stale (the
    #: containers' Status, so a frozen engine's rows no longer say "Up 5 minutes").
    stale_column: int | None = None

    # -- Qt interface -------------------------------------------------------------------------

    def rowCount(self, parent: AnyIndex = _NO_INDEX) -> int:
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: AnyIndex = _NO_INDEX) -> int:
        return 0 if parent.isValid() else len(self.columns)

    def flags(self, index: AnyIndex) -> Qt.ItemFlag:
        return _FLAGS

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = DISPLAY_ROLE
    ) -> Any:
        horizontal = orientation == Qt.Orientation.Horizontal
        if role == DISPLAY_ROLE and horizontal and 0 <= section < len(self.columns):
            return self.columns[section].title
        return None

    def data(self, index: AnyIndex, role: int = DISPLAY_ROLE) -> Any:
        row = index.row()
        if row < 0 or row >= len(self._rows):
            return None
        record = self._rows[row]
        if role == DISPLAY_ROLE:
            if self._stale_since is not None and index.column() == self.stale_column:
                return self._stale_text
            return self.columns[index.column()].text(record)
        if role == SORT_ROLE:
            return self.sort_value(row, index.column())
        if role == FOREGROUND_ROLE:
            if self._stale_since is not None:
                return self._stale_brush
            fg = self.columns[index.column()].foreground
            color = fg(record) if fg is not None else None
            return self._brush(color) if color is not None else None
        if role == TOOLTIP_ROLE:
            tip = self.columns[index.column()].tooltip
            text = tip(record) if tip is not None else None
            if self._stale_since is not None:
                return self._stale_text + (f"\n{text}" if text else "")
            return text
        if role == ALIGN_ROLE:
            return self._align[index.column()]
        if role == RECORD_ROLE:
            return record
        if role == KEY_ROLE:
            return self._keys[row]
        return None

    # -- reading ------------------------------------------------------------------------------

    def records(self) -> list[R]:
        return list(self._rows)

    def record(self, row: int) -> R:
        return self._rows[row]

    def record_for(self, key: str) -> R | None:
        row = self._index.get(key)
        return None if row is None else self._rows[row]

    def key_at(self, row: int) -> str:
        return self._keys[row]

    def row_of(self, key: str) -> int | None:
        return self._index.get(key)

    def keys(self) -> list[str]:
        return list(self._keys)

    def sort_value(self, row: int, column: int) -> Any:
        col = self.columns[column]
        record = self._rows[row]
        if col.sort_key is not None:
            return col.sort_key(record)
        return col.text(record).casefold()

    def search_text(self, row: int) -> str:
        """All searchable columns of a row, case-folded (cached until the row changes)."""
        key = self._keys[row]
        text = self._search.get(key)
        if text is None:
            record = self._rows[row]
            text = "\n".join(c.text(record) for c in self.columns if c.searchable).casefold()
            self._search[key] = text
        return text

    @property
    def stale_since(self) -> dt.datetime | None:
        """When the engine last answered, while its rows are marked stale; else None."""
        return self._stale_since

    def set_stale(self, since: dt.datetime | None) -> None:
        """Mark every row stale (greyed, "Last seen HH:MM:SS" in the tooltip) because the
        engine stopped answering at ``since`` (local time shown); None marks them current."""
        if since == self._stale_since:
            return
        self._stale_since = since
        self._stale_text = (
            f"Last seen {since.astimezone().strftime('%H:%M:%S')}" if since is not None else ""
        )
        if self._rows:
            roles = [FOREGROUND_ROLE, TOOLTIP_ROLE, DISPLAY_ROLE]
            last = self.index(len(self._rows) - 1, len(self.columns) - 1)
            self.dataChanged.emit(self.index(0, 0), last, roles)

    # -- incremental updates ------------------------------------------------------------------

    def upsert(self, records: Iterable[R]) -> None:
        """Replace rows whose key exists (only when the record changed), append the rest."""
        changed: list[int] = []
        fresh: dict[str, R] = {}
        for record in records:
            key = self._key(record)
            row = self._index.get(key)
            if row is None:
                fresh[key] = record
            elif self._rows[row] != record:
                self._rows[row] = record
                self._search.pop(key, None)
                changed.append(row)
        last_col = len(self.columns) - 1
        for first, last in _runs(changed):
            self.dataChanged.emit(self.index(first, 0), self.index(last, last_col))
        if fresh:
            start = len(self._rows)
            self.beginInsertRows(_NO_INDEX, start, start + len(fresh) - 1)
            for offset, (key, record) in enumerate(fresh.items()):
                self._rows.append(record)
                self._keys.append(key)
                self._index[key] = start + offset
            self.endInsertRows()

    def remove(self, keys: Iterable[str]) -> None:
        """Remove the rows with these keys (unknown keys are ignored)."""
        rows = [self._index[k] for k in set(keys) if k in self._index]
        if not rows:
            return
        for first, last in reversed(_runs(rows)):
            self.beginRemoveRows(_NO_INDEX, first, last)
            for key in self._keys[first : last + 1]:
                del self._index[key]
                self._search.pop(key, None)
            del self._rows[first : last + 1]
            del self._keys[first : last + 1]
            self.endRemoveRows()
        self._index = {key: row for row, key in enumerate(self._keys)}

    def set_records(self, records: Iterable[R]) -> None:
        """Make the model hold exactly ``records``, diffed against what it holds (no reset)."""
        records = list(records)
        wanted = {self._key(r) for r in records}
        self.remove([k for k in self._keys if k not in wanted])
        self.upsert(records)

    def clear(self) -> None:
        self.remove(list(self._keys))

    def refresh_column(self, column: int, first: int = 0, last: int | None = None) -> None:
        """Re-render one column (e.g. relative times) over a row range without touching data."""
        if not self._rows:
            return
        last = len(self._rows) - 1 if last is None else min(last, len(self._rows) - 1)
        first = max(0, first)
        if first > last:
            return
        self.dataChanged.emit(self.index(first, column), self.index(last, column), [DISPLAY_ROLE])

    def _brush(self, color: QColor) -> QBrush:
        name = color.name(QColor.NameFormat.HexArgb)
        brush = self._brushes.get(name)
        if brush is None:
            brush = self._brushes[name] = QBrush(color)
        return brush


class RecordSortProxy(QSortFilterProxyModel):
    """Sorts by the Python values of ``RecordTableModel.sort_value`` and filters rows whose
    searchable text contains every word of the filter (case-insensitive)."""

    def __init__(self, source: RecordTableModel[Any], parent: QObject | None = None):
        super().__init__(parent)
        self._src = source
        self._words: tuple[str, ...] = ()
        self.setSourceModel(source)
        self.setSortRole(SORT_ROLE)
        self.setDynamicSortFilter(True)

    @property
    def filter_text(self) -> str:
        return " ".join(self._words)

    def set_filter_text(self, text: str) -> None:
        words = tuple(text.casefold().split())
        if words == self._words:
            return
        if hasattr(self, "endFilterChange"):  # Qt >= 6.10; invalidateFilter is deprecated there
            self.beginFilterChange()
            self._words = words
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self._words = words
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, source_row: int, source_parent: AnyIndex) -> bool:
        if not self._words:
            return True
        text = self._src.search_text(source_row)
        return all(word in text for word in self._words)

    def lessThan(self, left: AnyIndex, right: AnyIndex) -> bool:
        src = self._src
        a = src.sort_value(left.row(), left.column())
        b = src.sort_value(right.row(), right.column())
        if a is None or b is None:
            return a is None and b is not None
        try:
            return bool(a < b)
        except TypeError:
            return str(a) < str(b)

    def record_at(self, proxy_row: int) -> Any:
        return self._src.record(self.mapToSource(self.index(proxy_row, 0)).row())

    def key_at(self, proxy_row: int) -> str:
        return self._src.key_at(self.mapToSource(self.index(proxy_row, 0)).row())
