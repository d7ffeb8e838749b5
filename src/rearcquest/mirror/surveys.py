"""Every BLS survey: mirror several ``time.series/<survey>/`` directories of one root at once.

``https://download.bls.gov/pub/time.series/`` lists about sixty surveys as directories (``pr``,
``cu``, ``ce``, ...). Each is mirrored into its own prefix, ``<root prefix><survey>/``
(:func:`survey_prefix`), by its own job (:func:`rearcquest.jobs.job.run_surveys`). This module names
them: the root's surveys, their URLs and prefixes, the one HTTP client of a run (whose rate
limiter is the politeness budget), and the survey a log line belongs to.

:func:`survey_inventory` answers ``rq surveys``: the root's surveys with their file count, bytes
and latest date from the listings alone, and, given a bucket, which are mirrored and how fresh.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from rearcquest.config import (
    DEFAULT_POPULATION_KEY,
    DEFAULT_ROOT_URL,
    build_user_agent,
    check_http_url,
    default_rps,
    require_user_agent,
)
from rearcquest.errors import ConfigError, RqError, SourceError, SurveyNotListedError
from rearcquest.layout import (
    AS_OF_TABLES,
    POPULATION_TABLE,
    RESERVED_PREFIX,
    SURVEY_NAME,
    normalise_prefix,
    state_key,
)
from rearcquest.layout import tables_prefix as resolve_tables_prefix
from rearcquest.records.state import MAX_STATE_BYTES
from rearcquest.sources._http import HttpClient
from rearcquest.sources.bls import fetch_listing, fetch_subdirectories

if TYPE_CHECKING:
    from rearcquest.aws.storage import ObjectStore
    from rearcquest.config import RetryPolicy
    from rearcquest.sources._http import HttpClient

log = logging.getLogger(__name__)


_survey: contextvars.ContextVar[str | None] = contextvars.ContextVar("rq_survey", default=None)


def current_survey() -> str | None:
    """Return the survey being synced by this thread, or ``None`` (for log filters)."""
    return _survey.get()


@contextlib.contextmanager
def in_survey(name: str) -> Iterator[None]:
    """Within the block, :func:`current_survey` (and the log filter) give ``name``."""
    token = _survey.set(name)
    try:
        yield
    finally:
        _survey.reset(token)


def survey_url(root_url: str, survey: str) -> str:
    """The URL of a survey's directory: ``<root_url><survey>/``."""
    return (root_url if root_url.endswith("/") else root_url + "/") + survey + "/"


def survey_prefix(
    root_prefix: str,
    survey: str,
    *,
    tables_prefix: str | None = None,
    population_key: str = DEFAULT_POPULATION_KEY,
) -> str:
    """The mirror prefix of a survey: ``<root prefix><survey>/``.

    Args:
        root_prefix: the prefix the survey mirrors are under.
        survey: the survey (directory) name.
        tables_prefix: where the tables go; default ``<root prefix>tables/``.
        population_key: where the population JSON is stored.

    Raises:
        ConfigError: the root prefix is invalid or inside rq's own objects, or the survey's
            mirror or tables would land on what rq writes itself (see :func:`_own_objects_clash`).
    """
    prefix = normalise_prefix(root_prefix) + survey + "/"
    if prefix.startswith(RESERVED_PREFIX):
        raise ConfigError(f"prefix {prefix!r} is where rq keeps its own objects; choose another")
    clash = _own_objects_clash(
        root_prefix, survey, tables_prefix=tables_prefix, population_key=population_key
    )
    if clash:
        raise ConfigError(f"survey {survey!r} cannot be mirrored at {prefix!r}: {clash}")
    return prefix


def _own_objects_clash(
    root_prefix: str,
    survey: str,
    *,
    tables_prefix: str | None = None,
    population_key: str = DEFAULT_POPULATION_KEY,
) -> str | None:
    """Say why a survey's mirror or tables would land on objects rq writes itself, or None.

    A root listing names its surveys, and a hostile or odd one could name a directory
    ``tables`` or ``datausa``: mirrored as it is, its files would go among the Parquet tables or
    beside the population JSON, and its sync would see (and guard against deleting) objects that
    are not its own on every run. The tables' own folders (``population``, ``as-of``) are refused
    as survey names too, since a survey's tables go to ``<tables prefix><survey>/``.
    """

    mirror = normalise_prefix(root_prefix) + survey + "/"
    tables = resolve_tables_prefix(tables_prefix, root_prefix)
    if tables.startswith(mirror) or mirror.startswith(tables):
        return (
            f"the tables are kept at {tables!r} (give --root-prefix to put the mirrors in a "
            "folder of their own, or --tables-prefix to move the tables)"
        )
    if population_key.startswith(mirror):
        return (
            f"the population JSON is kept at {population_key!r} (give --root-prefix to put the "
            "mirrors in a folder of their own)"
        )
    if survey in (POPULATION_TABLE, AS_OF_TABLES):
        return f"its tables would go to {tables}{survey}/, where rq keeps its {survey} tables"
    return None


def mirrorable_surveys(
    names: Iterable[str], prefix_of: Callable[[str], str]
) -> tuple[list[str], dict[str, str]]:
    """Split the surveys a root lists into those rq can mirror and those it must skip.

    Args:
        names: the surveys the root lists.
        prefix_of: the survey's mirror prefix, or a :class:`ConfigError` saying why it has none
            (:func:`survey_prefix` with the run's settings).

    Returns:
        The names to mirror, in order, and ``{name: why}`` for each skipped one (logged as a
        warning).
    """
    kept: list[str] = []
    skipped: dict[str, str] = {}
    for name in names:
        try:
            prefix_of(name)
        except ConfigError as exc:
            skipped[name] = str(exc)
            log.warning("the root lists %r, not mirrored: %s", name, exc, extra={"survey": name})
        else:
            kept.append(name)
    return kept, skipped


def list_surveys(http: HttpClient, root_url: str) -> list[str]:
    """Fetch the root listing and return its survey (directory) names, sorted.

    Raises:
        SourceError: the root could not be fetched, or lists no directory.
    """

    return [d.name for d in fetch_subdirectories(http, root_url) if SURVEY_NAME.fullmatch(d.name)]


def check_listed(http: HttpClient, root_url: str, names: Sequence[str]) -> None:
    """Refuse survey names the root's listing does not name, with the names close to each.

    A root that cannot be read or parsed refuses nothing: each survey's own listing then says
    what is wrong, as before.

    Raises:
        SurveyNotListedError: a name is not in the listing (exit 2).
    """
    import difflib

    try:
        listed = list_surveys(http, root_url)
    except SourceError as exc:
        log.info("the root listing could not be read, the surveys are not checked: %s", exc)
        return
    missing = [name for name in names if name not in listed]
    if not missing:
        return
    parts = []
    for name in missing:
        close = difflib.get_close_matches(name, listed, n=3)
        parts.append(f"{name!r}" + (f" (close: {', '.join(close)})" if close else ""))
    raise SurveyNotListedError(
        f"{root_url} lists no survey {', '.join(parts)}; rq surveys lists them", names=missing
    )


def make_http(
    url: str,
    *,
    contact: str | None,
    user_agent: str | None,
    max_rps: float | None,
    retry: RetryPolicy | None,
    connections: int,
) -> HttpClient:
    """The one client of a run: its rate limiter is the politeness budget for every request.

    Raises:
        ConfigError: no contact for bls.gov.
    """

    ua = build_user_agent(contact, user_agent)
    require_user_agent(url, ua)
    rps = default_rps(url) if max_rps is None else max_rps
    return HttpClient(user_agent=ua, max_rps=rps, retry=retry, max_connections=connections)


@dataclass(frozen=True)
class SurveyInfo:
    """One survey of the root, from its listing and, with a bucket, its mirror's state.

    Attributes:
        name: the survey (directory) name.
        url: its directory URL.
        files: files listed (``None``: the listing failed, see ``error``).
        bytes: their total size (files without an exact size count 0).
        latest: the latest listing date (``YYYY-MM-DD HH:MM``, server local time).
        mirrored: files in the mirror's state (``None``: not mirrored, or no bucket asked).
        synced: when the mirror's state was last written (ISO 8601 UTC), or ``None``.
        error: why the survey's listing failed.
        skipped: why ``rq sync-bls --survey all`` does not mirror it (it would land on rq's own
            objects), or ``None``.
    """

    name: str
    url: str
    files: int | None = None
    bytes: int | None = None
    latest: str | None = None
    mirrored: int | None = None
    synced: str | None = None
    error: str | None = None
    skipped: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form for ``rq surveys --format json``."""
        return {
            "name": self.name,
            "url": self.url,
            "files": self.files,
            "bytes": self.bytes,
            "latest": self.latest,
            "mirrored": self.mirrored,
            "synced": self.synced,
            "error": self.error,
            "skipped": self.skipped,
        }


def _mirror_state(store: ObjectStore, prefix: str) -> tuple[int | None, str | None]:
    """The file count and ``updated`` time of a mirror's state object; ``(None, None)`` if none.

    Raises:
        StorageError: S3 failed.
    """
    key = state_key(prefix)
    if store.head(key) is None:
        return None, None
    data = store.get_bytes(key, max_bytes=MAX_STATE_BYTES)
    try:
        doc = json.loads(data)
        files, updated = doc["files"], doc["updated"]
        return len(files), str(updated)
    except (ValueError, KeyError, TypeError):
        return None, None  # not rq's document: the next sync rebuilds it


def survey_inventory(
    *,
    root_url: str = DEFAULT_ROOT_URL,
    store: ObjectStore | None = None,
    root_prefix: str = "",
    contact: str | None = None,
    user_agent: str | None = None,
    max_rps: float | None = None,
    retry: RetryPolicy | None = None,
    http: HttpClient | None = None,
) -> list[SurveyInfo]:
    """List the root's surveys with file count, bytes and latest date; with ``store``, freshness.

    Only the root listing and one listing per survey are fetched (no file).

    Returns:
        One :class:`SurveyInfo` per survey, sorted; a survey whose listing failed carries its
        error instead of counts.

    Raises:
        ConfigError: bad settings.
        SourceError: the root listing failed.
        StorageError: the bucket could not be read.
    """

    check_http_url(root_url, "root URL")
    if not root_url.endswith("/"):
        root_url += "/"
    own_client = http is None
    client = http or make_http(
        root_url,
        contact=contact,
        user_agent=user_agent,
        max_rps=max_rps,
        retry=retry,
        connections=4,
    )
    try:
        infos = []
        names = list_surveys(client, root_url)
        _, skipped = mirrorable_surveys(names, functools.partial(survey_prefix, root_prefix))
        for name in names:
            url = survey_url(root_url, name)
            mirrored, synced = (
                _mirror_state(store, normalise_prefix(root_prefix) + name + "/")
                if store is not None and name not in skipped
                else (None, None)
            )
            known = SurveyInfo(
                name, url, mirrored=mirrored, synced=synced, skipped=skipped.get(name)
            )
            try:
                files = fetch_listing(client, url)
            except RqError as exc:
                infos.append(replace(known, error=str(exc)))
                continue
            infos.append(
                replace(
                    known,
                    files=len(files),
                    bytes=sum(f.size or 0 for f in files),
                    latest=max((f.modified for f in files if f.modified), default=None),
                )
            )
        return infos
    finally:
        if own_client:
            client.close()


def raise_for_inventory(infos: Sequence[SurveyInfo]) -> None:
    """Raise one error naming every survey whose listing failed in :func:`survey_inventory`.

    Raises:
        RqError: some survey's listing failed (exit code 1).
    """
    failed = [i.name for i in infos if i.error is not None]
    if failed:
        raise RqError(f"the listing of {len(failed)} survey(s) failed: {', '.join(failed)}")


class SurveyLogFilter(logging.Filter):
    """Stamp each log record made while a survey is synced with ``survey`` (its name).

    Installed by the entry points (``cli``, ``lambdas``) on their handlers, so JSON log lines
    of library modules that know nothing of surveys (sync, storage, lease) carry it too.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        survey = _survey.get()
        if survey is not None and not hasattr(record, "survey"):
            record.survey = survey
        return True
