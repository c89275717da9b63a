"""The volumes table and create form at model level: "used by" from container list records,
sorting by how many use a volume, diffed updates, and name/label checks."""

from __future__ import annotations

import datetime as dt

import pytest
from PySide6.QtCore import Qt

from toolbox.engine.client import EngineClient
from toolbox.engine.records import Container, ContainerState, MountPoint, Volume
from toolbox.errors import ValidationError
from ui.models.table import RecordSortProxy
from ui.volumes.create_dialog import check_name, parse_labels
from ui.volumes.model import NAME, USED_BY, VolumesModel, volume_entries

NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def volume(name: str) -> Volume:
    return Volume(name, "local", f"/var/lib/docker/volumes/{name}/_data", NOW, {}, "local")


def container(name: str, *volumes: str, binds: tuple[str, ...] = ()) -> Container:
    mounts = tuple(MountPoint("volume", f"/x/{v}", f"/{v}", v, False) for v in volumes) + tuple(
        MountPoint("bind", b, "/host", None, False) for b in binds
    )
    return Container(
        id=name * 8,
        name=name,
        image="busybox",
        image_id="sha256:" + "1" * 64,
        command="sh",
        created=NOW,
        state=ContainerState.EXITED,
        status="Exited (0) 1 minute ago",
        mounts=mounts,
    )


def test_used_by_comes_from_list_records(qtbot) -> None:
    containers = [
        container("web", "data", "logs"),
        container("db", "data"),
        container("tool", binds=("/home/me",)),
    ]
    users = EngineClient.volume_users(containers)
    model = VolumesModel()
    model.set_records(volume_entries([volume("data"), volume("logs"), volume("spare")], users))
    text = {model.index(r, NAME).data(): model.index(r, USED_BY).data() for r in range(3)}
    assert text == {"data": "db, web", "logs": "web", "spare": "—"}
    proxy = RecordSortProxy(model)
    proxy.sort(USED_BY, Qt.SortOrder.DescendingOrder)
    assert [proxy.index(r, NAME).data() for r in range(3)] == ["data", "logs", "spare"]
    spare = model.row_of("spare")
    assert model.index(spare, USED_BY).data(Qt.ItemDataRole.ToolTipRole) == "No container uses it"


def test_users_change_updates_one_row_without_reset(qtbot) -> None:
    model = VolumesModel()
    volumes = [volume("a"), volume("b"), volume("c")]
    model.set_records(volume_entries(volumes, {}))
    changes: list[tuple[int, int]] = []
    resets: list[int] = []
    model.dataChanged.connect(lambda a, b, _r=None: changes.append((a.row(), b.row())))
    model.modelReset.connect(lambda: resets.append(1))
    model.set_records(volume_entries(volumes, {"b": ["web"]}))
    row = model.row_of("b")
    assert changes == [(row, row)] and resets == []
    assert model.index(row, USED_BY).data() == "web"


def test_volume_name_check() -> None:
    assert check_name("app-data", "volume", set(), required=False) == "app-data"
    assert check_name("  ", "volume", set(), required=False) is None
    with pytest.raises(ValidationError, match="Give the volume a name"):
        check_name("", "volume", set(), required=True)
    with pytest.raises(ValidationError, match="'a b' is not a valid volume name"):
        check_name("a b", "volume", set(), required=False)
    with pytest.raises(ValidationError, match="not a valid volume name"):
        check_name("x", "volume", set(), required=False)
    with pytest.raises(ValidationError, match="already exists"):
        check_name("data", "volume", {"data"}, required=False)


def test_labels_check() -> None:
    assert parse_labels("a=1\n\n b = two \nc=") == {"a": "1", "b": " two", "c": ""}
    with pytest.raises(ValidationError, match="Line 2: 'oops' has no value"):
        parse_labels("a=1\noops")
