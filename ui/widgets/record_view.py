"""The table view every list page uses over a ``RecordSortProxy``.

Sortable, multi-row selection, fixed initial column widths from the model's ``Column`` specs
(``resizeColumnsToContents()`` costs about a second per 1,000 rows), interactive resizing
with a bounded content sample, and the last column stretched.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from ui.models.table import RecordSortProxy, RecordTableModel

ROW_HEIGHT = 24


def record_table_view(
    proxy: RecordSortProxy,
    model: RecordTableModel,
    object_name: str,
    sort_column: int = 0,
    parent: QWidget | None = None,
) -> QTableView:
    view = QTableView(parent)
    view.setObjectName(object_name)
    view.setModel(proxy)
    view.setSortingEnabled(True)
    view.sortByColumn(sort_column, Qt.SortOrder.AscendingOrder)
    view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
    view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
    view.setAlternatingRowColors(True)
    view.setWordWrap(False)
    view.verticalHeader().setVisible(False)
    view.verticalHeader().setDefaultSectionSize(ROW_HEIGHT)
    header = view.horizontalHeader()
    header.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
    header.setStretchLastSection(True)
    header.setResizeContentsPrecision(50)  # a double-click on a divider samples 50 rows
    for column, spec in enumerate(model.columns):
        view.setColumnWidth(column, spec.width)
    return view
