"""RecordTableModel and RecordSortProxy: incremental updates that keep the selection, Python-value
sorting, word filtering, and column refresh."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from PySide6.QtCore import QItemSelectionModel, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QAbstractItemView, QTableView

from ui.models.table import (
    FOREGROUND_ROLE,
    KEY_ROLE,
    RECORD_ROLE,
    RIGHT,
    SORT_ROLE,
    Column,
    RecordSortProxy,
    RecordTableModel,
)


@dataclass(frozen=True)
class Item:
    id: str
    name: str
    size: int
    state: str = "running"


def make_model() -> RecordTableModel[Item]:
    columns = [
        Column("Name", lambda r: r.name),
        Column("Size", lambda r: f"{r.size / 1e9:.1f}GB", sort_key=lambda r: r.size, align=RIGHT),
        Column(
            "State",
            lambda r: r.state,
            foreground=lambda r: QColor("#2e7d32") if r.state == "running" else None,
            tooltip=lambda r: f"{r.name} is {r.state}",
            searchable=False,
        ),
    ]
    return RecordTableModel(columns, key=lambda r: r.id)


class Counter:
    """Counts the model's structural signals."""

    def __init__(self, model) -> None:
        self.resets = self.inserts = self.removes = self.changes = 0
        model.modelReset.connect(lambda: self._bump("resets"))
        model.rowsInserted.connect(lambda *a: self._bump("inserts"))
        model.rowsRemoved.connect(lambda *a: self._bump("removes"))
        model.dataChanged.connect(lambda *a: self._bump("changes"))

    def _bump(self, name: str) -> None:
        setattr(self, name, getattr(self, name) + 1)


def test_roles_and_data() -> None:
    model = make_model()
    model.set_records([Item("a", "web", 3_000_000_000)])
    idx = model.index(0, 1)
    assert idx.data() == "3.0GB"
    assert idx.data(SORT_ROLE) == 3_000_000_000
    assert model.index(0, 0).data(SORT_ROLE) == "web"
    assert model.index(0, 0).data(RECORD_ROLE) == Item("a", "web", 3_000_000_000)
    assert model.index(0, 0).data(KEY_ROLE) == "a"
    assert model.index(0, 2).data(FOREGROUND_ROLE).color() == QColor("#2e7d32")
    assert model.index(0, 2).data(Qt.ItemDataRole.ToolTipRole) == "web is running"
    assert model.index(0, 1).data(Qt.ItemDataRole.TextAlignmentRole) == int(RIGHT)
    assert model.headerData(1, Qt.Orientation.Horizontal) == "Size"


def test_upsert_changes_in_place_and_appends_without_reset() -> None:
    model = make_model()
    counter = Counter(model)
    model.set_records([Item("a", "a", 1), Item("b", "b", 2)])
    assert (counter.inserts, counter.resets) == (1, 0)
    model.upsert([Item("b", "b", 2)])  # unchanged: no signal at all
    assert counter.changes == 0
    model.upsert([Item("b", "b2", 2), Item("c", "c", 3)])
    assert counter.changes == 1 and counter.inserts == 2
    assert [r.name for r in model.records()] == ["a", "b2", "c"]
    assert model.row_of("c") == 2
    assert counter.resets == 0


def test_remove_contiguous_runs_and_reindex() -> None:
    model = make_model()
    model.set_records([Item(str(i), f"n{i}", i) for i in range(10)])
    counter = Counter(model)
    model.remove(["1", "2", "3", "7", "missing"])
    assert counter.removes == 2
    assert model.keys() == ["0", "4", "5", "6", "8", "9"]
    assert model.row_of("8") == 4
    assert model.record_for("3") is None


def test_set_records_diffs_and_keeps_selection(qtbot) -> None:
    model = make_model()
    proxy = RecordSortProxy(model)
    view = QTableView()
    qtbot.addWidget(view)
    view.setModel(proxy)
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    model.set_records([Item(str(i), f"n{i:02}", i) for i in range(20)])
    proxy.sort(0)
    sel = view.selectionModel()
    flags = QItemSelectionModel.SelectionFlag.Select | QItemSelectionModel.SelectionFlag.Rows
    for key in ("5", "12"):
        src_row = model.row_of(key)
        assert src_row is not None
        sel.select(proxy.mapFromSource(model.index(src_row, 0)), flags)
    counter = Counter(model)
    # A full snapshot that differs: one gone, one changed, one new.
    snapshot = [Item(str(i), f"n{i:02}", i) for i in range(20) if i != 3]
    snapshot[10] = Item("11", "n11-renamed", 11)
    snapshot.append(Item("new", "n99", 99))
    model.set_records(snapshot)
    assert counter.resets == 0
    selected = sorted(proxy.key_at(i.row()) for i in sel.selectedRows())
    assert selected == ["12", "5"]
    assert proxy.rowCount() == 20


def test_proxy_sorts_python_values_past_2_gib() -> None:
    model = make_model()
    sizes = [5 * 2**30, 2**31 + 1, 100, 2**40, 2**31 - 1]
    model.set_records([Item(str(i), f"n{i}", s) for i, s in enumerate(sizes)])
    proxy = RecordSortProxy(model)
    proxy.sort(1, Qt.SortOrder.AscendingOrder)
    assert [proxy.record_at(r).size for r in range(proxy.rowCount())] == sorted(sizes)
    proxy.sort(1, Qt.SortOrder.DescendingOrder)
    assert [proxy.record_at(r).size for r in range(proxy.rowCount())] == sorted(sizes)[::-1]


def test_proxy_resorts_when_a_row_changes() -> None:
    model = make_model()
    model.set_records([Item("a", "alpha", 1), Item("b", "bravo", 2)])
    proxy = RecordSortProxy(model)
    proxy.sort(0)
    model.upsert([Item("a", "zulu", 1)])
    assert [proxy.record_at(r).name for r in range(2)] == ["bravo", "zulu"]


def test_none_sort_keys_sort_first() -> None:
    columns = [Column("When", lambda r: str(r.size), sort_key=lambda r: r.size or None)]
    model = RecordTableModel(columns, key=lambda r: r.id)
    model.set_records([Item("a", "a", 5), Item("b", "b", 0), Item("c", "c", 1)])
    proxy = RecordSortProxy(model)
    proxy.sort(0)
    assert [proxy.key_at(r) for r in range(3)] == ["b", "c", "a"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("", {"a", "b", "c"}), ("WEB", {"a", "c"}), ("web api", {"c"}), ("nothing", set())],
)
def test_filter_by_words(text: str, expected: set[str]) -> None:
    model = make_model()
    model.set_records(
        [Item("a", "web-1", 1), Item("b", "db", 2), Item("c", "web-api", 3, state="exited")]
    )
    proxy = RecordSortProxy(model)
    proxy.set_filter_text(text)
    assert {proxy.key_at(r) for r in range(proxy.rowCount())} == expected


def test_filter_ignores_unsearchable_columns_and_follows_updates() -> None:
    model = make_model()
    model.set_records([Item("a", "web", 1, state="exited")])
    proxy = RecordSortProxy(model)
    proxy.set_filter_text("exited")
    assert proxy.rowCount() == 0
    proxy.set_filter_text("db")
    assert proxy.rowCount() == 0
    model.upsert([Item("a", "db", 1, state="exited")])
    assert proxy.rowCount() == 1


def test_refresh_column_emits_only_that_column() -> None:
    model = make_model()
    model.set_records([Item(str(i), str(i), i) for i in range(5)])
    seen: list[tuple[int, int, int, int]] = []
    model.dataChanged.connect(
        lambda tl, br, roles=(): seen.append((tl.row(), br.row(), tl.column(), br.column()))
    )
    model.refresh_column(2, 1, 3)
    model.refresh_column(2, 4, 99)
    assert seen == [(1, 3, 2, 2), (4, 4, 2, 2)]
