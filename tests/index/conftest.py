"""Fixtures of the index tests: a loaded bucket on moto's server (shared per module, or one of
its own for tests that write) and the ASGI app over it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from rearcquest.aws.storage import ObjectStore
from rearcquest.index import create_app

from .helpers import load, moto_store


@pytest.fixture(scope="module")
def loaded(moto_server: str) -> ObjectStore:
    """One loaded bucket shared by the read-only tests of this module."""
    return load(moto_store(moto_server, "idx-shared-" + uuid.uuid4().hex[:8]))


@pytest.fixture
def fresh(moto_server: str) -> ObjectStore:
    """A loaded bucket of its own, for tests that write."""
    return load(moto_store(moto_server))


@pytest.fixture
def app(loaded: ObjectStore) -> Any:
    return create_app(loaded, prefix="pr/")
