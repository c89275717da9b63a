"""Fixtures for the engine layer's tests: an EngineClient on the real engine."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from toolbox.engine.client import EngineClient
from toolbox.engine.connect import EngineConfig


@pytest.fixture
def client(engine, docker_client) -> Iterator[EngineClient]:
    """An EngineClient on the harness engine; containers it makes are removed afterwards
    (by ``docker_client``'s cleanup)."""
    with EngineConfig.from_url(engine.url).connect() as c:
        yield c


@pytest.fixture
def name() -> str:
    """A unique name for a container, volume, network or image repository."""
    return f"tbx-{uuid.uuid4().hex[:10]}"
