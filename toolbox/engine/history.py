"""An image's history: one record per layer with the instruction that made it.

``GET /images/{id}/history`` lists the newest layer first; ``created_by`` there is the shell
form the builder stored (``/bin/sh -c #(nop)  CMD ["sh"]`` for a metadata step,
``|1 V=2 /bin/sh -c echo $V`` for a ``RUN`` with build args, ``RUN /bin/sh -c ... # buildkit``
from BuildKit). ``clean_created_by`` turns those into the Dockerfile line a user wrote.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from toolbox.engine.client import EngineClient
from toolbox.engine.records import EPOCH, parse_timestamp

MISSING = "<missing>"
_NOP = re.compile(r"^/bin/sh -c #\(nop\)\s*")
_ARGS = re.compile(r"^\|\d+(?: \S+=\S*)* (?=/bin/sh -c )")
_SHELL = re.compile(r"^(?:RUN )?/bin/sh -c\s+")


def clean_created_by(text: str) -> str:
    """The instruction as written: ``CMD ["sh"]``, ``RUN echo hi``, ``COPY file:abc in /``."""
    value = text.strip()
    if value.endswith("# buildkit"):
        value = value[: -len("# buildkit")].rstrip()
    nop = _NOP.match(value)
    if nop:
        return value[nop.end() :].strip()
    value = _ARGS.sub("", value)
    shell = _SHELL.match(value)
    if shell:
        return "RUN " + value[shell.end() :].strip()
    return value


@dataclass(frozen=True)
class HistoryEntry:
    """One layer of an image (newest first, as ``docker history`` prints them).

    ``layer_id`` is the image id of that step when the engine still has it (built here), or
    ``<missing>`` (pulled, squashed or imported layers)."""

    layer_id: str
    created: dt.datetime
    created_by: str
    size: int
    comment: str
    tags: tuple[str, ...]

    @classmethod
    def from_api(cls, entry: Mapping[str, Any]) -> HistoryEntry:
        raw_id = str(entry.get("Id") or MISSING)
        return cls(
            layer_id=raw_id,
            created=parse_timestamp(entry.get("Created")) or EPOCH,
            created_by=clean_created_by(str(entry.get("CreatedBy") or "")),
            size=int(entry.get("Size") or 0),
            comment=str(entry.get("Comment") or ""),
            tags=tuple(t for t in entry.get("Tags") or () if t and t != "<none>:<none>"),
        )

    @property
    def missing(self) -> bool:
        return self.layer_id == MISSING

    @property
    def short_id(self) -> str:
        return MISSING if self.missing else self.layer_id.split(":", 1)[-1][:12]

    @property
    def instruction(self) -> str:
        """The Dockerfile keyword (``RUN``, ``COPY``, ``CMD``...), or "" for an import."""
        word = self.created_by.split(" ", 1)[0]
        return word if word.isupper() else ""


def image_history(client: EngineClient, image: str) -> list[HistoryEntry]:
    """The layers of ``image`` (id or reference), newest first."""
    raw = client._call("read the image's history", image, client.api.history, image)
    return [HistoryEntry.from_api(entry) for entry in raw or ()]
