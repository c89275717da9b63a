"""The Create network dialog: a name, a driver and, optionally, a subnet.

Usage::

    dialog = CreateNetworkDialog(session, parent=window)
    dialog.created.connect(lambda name: ...)
    dialog.open()

The subnet is checked as typed: a valid CIDR without host bits set, not overlapping another
network's subnet (the engine would refuse with "Pool overlaps").
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from PySide6.QtWidgets import QComboBox, QLineEdit, QWidget

from toolbox.engine.records import Network
from toolbox.errors import ValidationError
from ui.volumes.create_dialog import ResourceDialog, check_name

if TYPE_CHECKING:
    from ui.session import EngineSession

DRIVERS = ("bridge", "ipvlan", "macvlan")


def check_subnet(text: str, networks: Iterable[Network]) -> str | None:
    """A CIDR subnet that no other network uses (None when empty)."""
    value = text.strip()
    if not value:
        return None
    if "/" not in value:
        raise ValidationError("subnet", f"{value!r} needs a prefix length, like 172.30.0.0/16")
    try:
        subnet = ipaddress.ip_network(value, strict=True)
    except ValueError:
        try:
            loose = ipaddress.ip_network(value, strict=False)
        except ValueError:
            raise ValidationError(
                "subnet", f"{value!r} is not a subnet: use CIDR notation, like 172.30.0.0/16"
            ) from None
        raise ValidationError("subnet", f"{value} has host bits set: use {loose}") from None
    for network in networks:
        for other_text in network.subnets:
            try:
                other = ipaddress.ip_network(other_text, strict=False)
            except ValueError:
                continue
            if other.version == subnet.version and other.overlaps(subnet):
                raise ValidationError(
                    "subnet",
                    f"{subnet} overlaps {other} of network {network.name}: pick another range",
                )
    return str(subnet)


class CreateNetworkDialog(ResourceDialog):
    """Name, driver and optional subnet."""

    def __init__(self, session: EngineSession, parent: QWidget | None = None):
        super().__init__(session, "Create a network", parent)
        self.setObjectName("createNetworkDialog")
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("app-net")
        self.driver_combo = QComboBox()
        self.driver_combo.setEditable(True)
        self.driver_combo.addItems(DRIVERS)
        self.subnet_edit = QLineEdit()
        self.subnet_edit.setPlaceholderText("Optional: the engine picks a free range when empty")
        self.add_field("name", "Name", self.name_edit)
        self.add_field("driver", "Driver", self.driver_combo)
        self.add_field("subnet", "Subnet", self.subnet_edit)
        self.name_edit.textChanged.connect(self.revalidate)
        self.driver_combo.currentTextChanged.connect(self.revalidate)
        self.subnet_edit.textChanged.connect(self.revalidate)

    def parse(self) -> tuple[Any, dict[str, str]]:
        errors: dict[str, str] = {}
        networks = self.session.networks()
        name: str | None = None
        try:
            name = check_name(
                self.name_edit.text(), "network", {n.name for n in networks}, required=True
            )
        except ValidationError as exc:
            errors["name"] = exc.message
        driver = self.driver_combo.currentText().strip()
        if not driver:
            errors["driver"] = "Choose a driver; 'bridge' is the usual one"
        elif not re.fullmatch(r"[a-zA-Z0-9][a-zA-Z0-9_.:/-]*", driver):
            errors["driver"] = f"{driver!r} is not a driver name"
        subnet: str | None = None
        try:
            subnet = check_subnet(self.subnet_edit.text(), networks)
        except ValidationError as exc:
            errors["subnet"] = exc.message
        if errors or name is None:
            return None, errors
        return (name, driver, subnet), {}

    def work(self, request: Any) -> tuple[Callable[[Any], Any], str]:
        name, driver, subnet = request

        def create(client: Any) -> Any:
            return client.create_network(name, driver=driver, subnet=subnet)

        return create, f"Create network {name}"

    def name_of(self, result: Any) -> str:
        return str(result.name)
