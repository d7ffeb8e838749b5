"""Hooks into a sync's uploads, for tests that act while a run is writing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from rearcquest.aws.storage import ObjectStore


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


_CALL_ARGS = frozenset({"http", "on_progress", "listing"})


def sync_dir(store: ObjectStore, **kw: Any) -> Any:
    """``sync_bls(store, SyncOptions(...), http=..., ...)`` with its options and the call's own
    arguments given together, as the tests name them."""
    from rearcquest.config import SyncOptions
    from rearcquest.mirror.sync import sync_bls

    call = {name: kw.pop(name) for name in list(kw) if name in _CALL_ARGS}
    return sync_bls(store, SyncOptions(**kw), **call)


def run_job(store: ObjectStore, after: Any = None, **kw: Any) -> Any:
    """One survey's job (``run_survey``), its options given as keywords like :func:`sync_dir`."""
    from rearcquest.config import SyncOptions
    from rearcquest.jobs.job import run_survey

    call = {name: kw.pop(name) for name in list(kw) if name in _CALL_ARGS}
    return run_survey(store, SyncOptions(**kw), after, **call)


_SURVEY_SET = frozenset({"root_prefix", "parallel", "population_key"})
_AFTER = frozenset({"tables", "tables_prefix", "catalog", "index"})
_SURVEYS_CALL = frozenset({"http", "on_progress", "on_survey"})


def run_jobs(store: ObjectStore, surveys: Any, root_url: str, **kw: Any) -> Any:
    """``run_surveys`` with the survey set, the options, what follows and the call's own
    arguments given together as keywords."""
    from rearcquest.config import SyncOptions
    from rearcquest.jobs.job import AfterSync, SurveySet, run_surveys

    where = {name: kw.pop(name) for name in list(kw) if name in _SURVEY_SET}
    after = {name: kw.pop(name) for name in list(kw) if name in _AFTER}
    call = {name: kw.pop(name) for name in list(kw) if name in _SURVEYS_CALL}
    return run_surveys(
        store,
        SurveySet(list(surveys), root_url, **where),
        SyncOptions(**kw),
        AfterSync(**after),
        **call,
    )
