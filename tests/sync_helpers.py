"""Hooks into a sync's uploads, for tests that act while a run is writing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rearcquest.storage import ObjectStore


def before_each_upload(
    monkeypatch: pytest.MonkeyPatch | None, store: ObjectStore, hook: Callable[[str], None]
) -> None:
    """Call ``hook(key)`` just before each object the sync streams up becomes visible.

    The sync writes every file through :meth:`ObjectStore.writer`; the hook runs in the writer's
    ``complete`` (the moment the object would appear), on the uploading thread. Without a
    ``monkeypatch`` the store is patched for good (a store made by the test for one run).
    """
    real_writer = store.writer

    def writer(key: str, **kw: Any) -> Any:
        made = real_writer(key, **kw)
        real_complete = made.complete

        def complete(**complete_kw: Any) -> str:
            hook(key)
            return real_complete(**complete_kw)

        made.complete = complete  # type: ignore[method-assign]
        return made

    if monkeypatch is None:
        store.writer = writer  # type: ignore[method-assign]
    else:
        monkeypatch.setattr(store, "writer", writer)
