"""The Networks page against the real engine: create with a subnet through the dialog, "used
by" showing an attached container, removal refused while in use (and for built-in networks),
and done once free."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from PySide6.QtWidgets import QMessageBox

from tests.ui.conftest import unique
from ui.networks.model import USED_BY
from ui.networks.page import NetworksPage

pytestmark = [pytest.mark.engine]


@pytest.fixture
def networks_page(qtbot, context) -> Iterator[NetworksPage]:
    page = NetworksPage(context)
    qtbot.addWidget(page)
    page.resize(1000, 600)
    page.show()
    page.page_shown()
    yield page
    page.shutdown()


def clicked(box: QMessageBox, text: str) -> None:
    next(b for b in box.buttons() if b.text().replace("&", "") == text).click()


def entry(page: NetworksPage, name: str):
    return next((e for e in page.model.records() if e.network.name == name), None)


def used_by(page: NetworksPage, name: str) -> str | None:
    found = entry(page, name)
    if found is None:
        return None
    row = page.model.row_of(found.network.id)
    return page.model.index(row, USED_BY).data()


def test_create_with_subnet_attach_refuse_then_remove(qtbot, networks_page, docker_client) -> None:
    dialog = networks_page.open_create_dialog()
    qtbot.addWidget(dialog)
    dialog.name_edit.setText("")
    dialog.submit_button.click()
    assert dialog.errors["name"].text() == "Give the network a name, like app-data"
    name = unique("net")
    dialog.name_edit.setText(name)
    dialog.subnet_edit.setText("10.213.7.1/24")
    assert dialog.errors["subnet"].text() == "10.213.7.1/24 has host bits set: use 10.213.7.0/24"
    dialog.subnet_edit.setText("10.213.7.0/24")
    assert not any(label.isVisibleTo(dialog) for label in dialog.errors.values())
    with qtbot.waitSignal(dialog.created, timeout=15_000):
        dialog.submit_button.click()
    qtbot.waitUntil(lambda: entry(networks_page, name) is not None, timeout=15_000)
    created = entry(networks_page, name)
    assert created.network.subnets == ("10.213.7.0/24",)
    assert [e.name for e in networks_page.selected()] == [name]
    assert used_by(networks_page, name) == "—"

    user = docker_client.containers.run(
        "busybox:latest", ["sleep", "300"], name=unique("member"), network=name, detach=True
    )
    qtbot.waitUntil(lambda: used_by(networks_page, name) == user.name, timeout=15_000)
    networks_page.select_keys([created.network.id])
    box = networks_page.confirm_remove()
    assert box.text() == f"Cannot remove {name}"
    assert f"{name} has {user.name} attached" in box.informativeText()
    clicked(box, "OK")
    assert networks_page.last_removal is None

    user.remove(force=True)
    qtbot.waitUntil(lambda: used_by(networks_page, name) == "—", timeout=15_000)
    networks_page.select_keys([created.network.id])
    box = networks_page.confirm_remove()
    assert box.text() == f"Remove {name}?"
    clicked(box, "Remove")
    qtbot.waitUntil(lambda: entry(networks_page, name) is None, timeout=15_000)
    assert networks_page.last_removal.failures == []
    assert not docker_client.api.networks(names=[name])


def test_builtin_networks_cannot_be_removed(qtbot, networks_page) -> None:
    bridge = entry(networks_page, "bridge")
    host = entry(networks_page, "host")
    assert bridge is not None and host is not None
    networks_page.select_keys([bridge.network.id, host.network.id])
    box = networks_page.confirm_remove()
    assert box.text() == "Cannot remove these networks"
    assert "bridge is one of the engine's own networks" in box.informativeText()
    clicked(box, "OK")
    assert networks_page.last_removal is None


def test_overlapping_subnet_is_caught_in_the_form(qtbot, networks_page) -> None:
    bridge = entry(networks_page, "bridge")
    subnet = bridge.network.subnets[0]
    dialog = networks_page.open_create_dialog()
    qtbot.addWidget(dialog)
    dialog.name_edit.setText(unique("clash"))
    dialog.subnet_edit.setText(subnet)
    assert f"overlaps {subnet} of network bridge" in dialog.errors["subnet"].text()
    dialog.reject()
