"""The images table at model level: a row per repo:tag, <none> for dangling images, sizes that
sort by bytes past 2 GiB, diffed updates without a model reset, and the form checks of the
Pull/Push and Tag dialogs."""

from __future__ import annotations

import datetime as dt

import pytest
from PySide6.QtCore import Qt

from toolbox.engine.records import Image, LayerProgress
from toolbox.errors import ValidationError
from ui.images.model import CREATED, IMAGE_ID, REPOSITORY, SIZE, TAG, ImagesModel, row_key
from ui.images.tag_dialog import check_new_tag
from ui.images.transfer import LayersModel, Transfer, check_reference, layer_text
from ui.models.table import RecordSortProxy

GIB = 1024**3
NOW = dt.datetime(2025, 6, 1, 12, 0, tzinfo=dt.UTC)


def image(
    n: int, size: int, tags: tuple[str, ...] = (), digests: tuple[str, ...] = (), days: int = 1
) -> Image:
    return Image(
        id=f"sha256:{str(n) * 64}",
        repo_tags=tags,
        repo_digests=digests,
        created=NOW - dt.timedelta(days=days),
        size=size,
    )


BIG = image(1, 3 * GIB, ("big/app:3g",), days=3)
MEDIUM = image(2, 900 * 1000**2, ("medium:900m",), days=10)
LARGE = image(3, int(2.5 * GIB), ("large:2.5g", "alias:x"), days=1)
DANGLING = image(4, 12_345, days=40)
BY_DIGEST = image(5, 5_000_000, (), ("127.0.0.1:5000/pulled@sha256:" + "a" * 64,))


def column(proxy: RecordSortProxy, col: int) -> list[str]:
    return [proxy.index(r, col).data() for r in range(proxy.rowCount())]


@pytest.fixture
def model(qtbot) -> ImagesModel:
    m = ImagesModel()
    m.now = NOW
    m.set_images([BIG, MEDIUM, LARGE, DANGLING, BY_DIGEST])
    return m


def test_one_row_per_tag_and_none_for_dangling(model: ImagesModel) -> None:
    rows = {(r.repository, r.tag): r for r in model.records()}
    assert set(rows) == {
        ("big/app", "3g"),
        ("medium", "900m"),
        ("large", "2.5g"),
        ("alias", "x"),
        ("<none>", "<none>"),
        ("127.0.0.1:5000/pulled", "<none>"),
    }
    assert rows[("large", "2.5g")].image is rows[("alias", "x")].image
    assert row_key(rows[("<none>", "<none>")]) == DANGLING.id
    assert row_key(rows[("alias", "x")]) == "alias:x"
    assert (
        row_key(rows[("127.0.0.1:5000/pulled", "<none>")])
        == f"127.0.0.1:5000/pulled@{BY_DIGEST.id}"
    )
    dangling_row = model.row_of(DANGLING.id)
    assert model.index(dangling_row, IMAGE_ID).data() == "4" * 12
    assert model.index(dangling_row, REPOSITORY).data() == "<none>"
    assert model.index(dangling_row, TAG).data() == "<none>"
    assert model.index(dangling_row, CREATED).data() == "5 weeks ago"
    # Distinct images are counted once, whatever their number of tags.
    assert len(model.images()) == 5
    assert model.total_size() == 3 * GIB + 900 * 1000**2 + int(2.5 * GIB) + 12_345 + 5_000_000


def test_size_text_is_dockers_and_sorting_uses_bytes_past_2_gib(qtbot) -> None:
    """3 GiB vs 900 MB: as text "3.22GB" < "900MB", as 32-bit ints 3 GiB overflows."""
    model = ImagesModel()
    model.set_images([BIG, MEDIUM, LARGE])
    proxy = RecordSortProxy(model)
    proxy.sort(SIZE, Qt.SortOrder.AscendingOrder)
    assert column(proxy, SIZE) == ["900MB", "2.68GB", "2.68GB", "3.22GB"]
    assert column(proxy, REPOSITORY)[0] == "medium"
    assert column(proxy, REPOSITORY)[-1] == "big/app"
    proxy.sort(SIZE, Qt.SortOrder.DescendingOrder)
    assert column(proxy, REPOSITORY)[0] == "big/app"
    assert column(proxy, REPOSITORY)[-1] == "medium"
    big_row = model.row_of("big/app:3g")
    assert model.index(big_row, SIZE).data(Qt.ItemDataRole.ToolTipRole) == "3,221,225,472 bytes"


def test_created_sorts_by_time_not_text(model: ImagesModel) -> None:
    proxy = RecordSortProxy(model)
    proxy.sort(CREATED, Qt.SortOrder.AscendingOrder)  # oldest first
    assert column(proxy, CREATED)[0] == "5 weeks ago"
    assert column(proxy, REPOSITORY)[0] == "<none>"


def test_updates_are_diffed_never_reset(model: ImagesModel) -> None:
    resets: list[int] = []
    inserted: list[int] = []
    removed: list[int] = []
    changed: list[int] = []
    model.modelReset.connect(lambda: resets.append(1))
    model.rowsInserted.connect(lambda _p, a, b: inserted.append(b - a + 1))
    model.rowsRemoved.connect(lambda _p, a, b: removed.append(b - a + 1))
    model.dataChanged.connect(lambda a, b, _r=None: changed.append(b.row() - a.row() + 1))
    alias_row = model.row_of("alias:x")
    # `docker tag big/app:3g alias:x` moves the tag: the same row now shows the other image.
    moved_large = image(3, int(2.5 * GIB), ("large:2.5g",), days=1)
    moved_big = image(1, 3 * GIB, ("big/app:3g", "alias:x"), days=3)
    model.set_images([moved_big, MEDIUM, moved_large, DANGLING, BY_DIGEST])
    assert model.row_of("alias:x") == alias_row
    assert model.record_for("alias:x").image.id == BIG.id
    # `docker rmi medium:900m` and a new pull.
    pulled = image(6, 1_000, ("new:1",))
    model.set_images([moved_big, moved_large, DANGLING, BY_DIGEST, pulled])
    assert model.record_for("medium:900m") is None
    assert model.record_for("new:1") is not None
    assert resets == []
    assert inserted == [1] and removed == [1] and sum(changed) >= 2


def test_filter_matches_repository_tag_and_id(model: ImagesModel) -> None:
    proxy = RecordSortProxy(model)
    proxy.set_filter_text("none")
    assert proxy.rowCount() == 2  # the dangling row and the digest-only row
    proxy.set_filter_text("4" * 12)
    assert column(proxy, REPOSITORY) == ["<none>"]
    proxy.set_filter_text("big 3g")
    assert column(proxy, REPOSITORY) == ["big/app"]


def test_tick_rerenders_created(model: ImagesModel) -> None:
    row = model.row_of("big/app:3g")
    assert model.index(row, CREATED).data() == "3 days ago"
    model.tick(NOW + dt.timedelta(days=11))
    assert model.index(row, CREATED).data() == "2 weeks ago"


# -- form checks -----------------------------------------------------------------------------


def test_pull_reference_check() -> None:
    assert str(check_reference("busybox", Transfer.PULL)) == "busybox:latest"
    assert str(check_reference(" 127.0.0.1:5000/team/app:v2 ", Transfer.PULL)) == (
        "127.0.0.1:5000/team/app:v2"
    )
    with pytest.raises(ValidationError, match="Type the image to pull"):
        check_reference("  ", Transfer.PULL)
    with pytest.raises(ValidationError, match="must be lowercase"):
        check_reference("BusyBox", Transfer.PULL)
    with pytest.raises(ValidationError, match="contains spaces"):
        check_reference("busy box", Transfer.PULL)


def test_push_reference_must_be_a_local_tag() -> None:
    tags = {"127.0.0.1:5000/app:v1"}
    assert str(check_reference("127.0.0.1:5000/app:v1", Transfer.PUSH, tags)) == (
        "127.0.0.1:5000/app:v1"
    )
    with pytest.raises(ValidationError, match=r"No image here is tagged 127\.0\.0\.1:5000/app:v2"):
        check_reference("127.0.0.1:5000/app:v2", Transfer.PUSH, tags)
    with pytest.raises(ValidationError, match="not a digest"):
        check_reference("app@sha256:" + "a" * 64, Transfer.PUSH, tags)


def test_new_tag_check() -> None:
    images = [BIG, MEDIUM, LARGE]
    ref, note = check_new_tag("mine", BIG, images)
    assert (str(ref), note) == ("mine:latest", "")
    ref, note = check_new_tag("medium:900m", BIG, images)
    assert note == f"medium:900m now names image {MEDIUM.short_id}; tagging moves the name here."
    with pytest.raises(ValidationError, match="already tagged big/app:3g"):
        check_new_tag("big/app:3g", BIG, images)
    with pytest.raises(ValidationError, match="Tag '-x' is not valid"):
        check_new_tag("app:-x", BIG, images)
    with pytest.raises(ValidationError, match="cannot contain a digest"):
        check_new_tag("app@sha256:" + "b" * 64, BIG, images)
    with pytest.raises(ValidationError, match="Type the new name"):
        check_new_tag("", BIG, images)


def test_layers_model_text_and_upsert(qtbot) -> None:
    layers = LayersModel()
    a = LayerProgress("aaa", "Downloading", 500_000, 2_000_000)
    layers.set_records([a, LayerProgress("bbb", "Waiting")])
    assert layers.index(0, 2).data() == "25% · 500kB / 2MB"
    assert layers.index(1, 2).data() == ""
    layers.set_records([LayerProgress("aaa", "Pull complete", 2_000_000, 2_000_000)])
    assert layers.rowCount() == 1 and layers.index(0, 1).data() == "Pull complete"
    assert layer_text(LayerProgress("c", "Extracting", 3, 2)) == "100% · 2B / 2B"
