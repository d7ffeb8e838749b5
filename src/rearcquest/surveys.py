"""Every BLS survey: mirror several ``time.series/<survey>/`` directories of one root at once.

``https://download.bls.gov/pub/time.series/`` lists about sixty surveys as directories (``pr``,
``cu``, ``ce``, ...). :func:`sync_surveys` mirrors each one with :func:`rearcquest.sync.sync_bls`
into its own prefix, ``<root prefix><survey>/``, with its own plan, delete guard, lease and state:
one survey's failed listing or tripped guard never stops or deletes anything in another. The exit
code of the whole run is the worst survey's.

All surveys share one :class:`~rearcquest.sources._http.HttpClient`, hence one rate limiter: the
politeness budget (``max_rps``) holds for the requests of every survey and transfer together,
however many surveys run at once.

:func:`survey_inventory` answers ``rq surveys``: the root's surveys with their file count, bytes
and latest date from the listings alone, and, given a bucket, which are mirrored and how fresh.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import json
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rearcquest.config import (
    DEFAULT_LEASE_TTL,
    DEFAULT_POPULATION_KEY,
    DEFAULT_ROOT_URL,
    DEFAULT_TRANSFERS,
    DeleteLimit,
    build_user_agent,
    check_http_url,
    default_rps,
    normalise_prefix,
    require_user_agent,
)
from rearcquest.errors import ConfigError, RqError
from rearcquest.layout import RESERVED_PREFIX, plain_name, shown_name, state_key

if TYPE_CHECKING:
    from rearcquest.sources._http import HttpClient, RetryPolicy
    from rearcquest.storage import ObjectStore
    from rearcquest.sync import Progress, SyncResult

log = logging.getLogger(__name__)

ALL = "all"
# Surveys synced at once.
DEFAULT_PARALLEL = 4
# A survey is one directory name of the root: letters, digits and a few safe signs.
_SURVEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TOTAL_LISTS = ("added", "updated", "deleted", "unchanged", "errors")
_TOTAL_BYTES = ("bytes_downloaded", "bytes_uploaded")
_MAX_STATE_BYTES = 64 * 1024 * 1024

_survey: contextvars.ContextVar[str | None] = contextvars.ContextVar("rq_survey", default=None)

SurveyProgress = Callable[[str, "Progress"], None]


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


def parse_surveys(values: Iterable[str]) -> list[str]:
    """Split ``--survey`` values (comma-separated and/or repeated) into survey names.

    Returns:
        The names in order, without duplicates; ``["all"]`` when ``all`` is one of them.

    Raises:
        ConfigError: a name is empty or not a plain directory name.
    """
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if not name:
                raise ConfigError(f"--survey {value!r} holds an empty survey name")
            if name.lower() == ALL:
                return [ALL]
            if not _SURVEY_NAME.fullmatch(name) or not plain_name(name):
                raise ConfigError(
                    f"--survey {shown_name(name)} is not a survey name (a directory of the root such as "
                    "'pr' or 'cu')"
                )
            if name not in names:
                names.append(name)
    if not names:
        raise ConfigError("no survey named: give --survey pr,cu (or --survey all)")
    return names


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
    from rearcquest.tables import AS_OF_TABLES, POPULATION_TABLE, default_tables_prefix

    mirror = normalise_prefix(root_prefix) + survey + "/"
    tables = (
        normalise_prefix(tables_prefix) if tables_prefix else default_tables_prefix(root_prefix)
    )
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
    from rearcquest.sources.bls import fetch_subdirectories

    return [d.name for d in fetch_subdirectories(http, root_url) if _SURVEY_NAME.fullmatch(d.name)]


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
    from rearcquest.sources._http import HttpClient

    ua = build_user_agent(contact, user_agent)
    require_user_agent(url, ua)
    rps = default_rps(url) if max_rps is None else max_rps
    return HttpClient(user_agent=ua, max_rps=rps, retry=retry, max_connections=connections)


@dataclass
class SurveyOutcome:
    """One survey of a multi-survey run: its sync result and, if it failed, why."""

    survey: str
    prefix: str
    result: SyncResult | None = None
    error: str | None = None
    exit_code: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The survey's summary: today's ``sync-bls`` document, or its error and exit code."""
        doc: dict[str, Any] = (
            self.result.to_dict()
            if self.result is not None
            else {"prefix": self.prefix, "source_url": None}
        )
        doc["error"] = self.error
        doc["exit_code"] = self.exit_code
        return doc


@dataclass
class MultiSyncResult:
    """What :func:`sync_surveys` did, survey by survey, and the totals."""

    root_url: str
    bucket: str
    surveys: dict[str, SurveyOutcome] = field(default_factory=dict)
    requests: int = 0
    # Surveys the root lists that rq will not mirror, and why (see _own_objects_clash).
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """The worst (highest) survey exit code; 0 when every survey succeeded."""
        return max((o.exit_code for o in self.surveys.values()), default=0)

    def totals(self) -> dict[str, int]:
        """Counts of the list fields and the byte sums over every survey.

        ``errors`` counts failed files plus surveys that failed as a whole (no result).
        """
        totals = dict.fromkeys(_TOTAL_LISTS + _TOTAL_BYTES, 0)
        for outcome in self.surveys.values():
            if outcome.result is None:
                totals["errors"] += 1 if outcome.error else 0
                continue
            doc = outcome.result.to_dict()
            for name in _TOTAL_LISTS:
                totals[name] += len(doc[name])
            for name in _TOTAL_BYTES:
                totals[name] += int(doc[name])
        return totals

    def to_dict(self) -> dict[str, Any]:
        """``{"surveys": {survey: summary}, "totals": {...}, ...}`` for ``--format json``."""
        return {
            "root_url": self.root_url,
            "bucket": self.bucket,
            "surveys": {name: o.to_dict() for name, o in self.surveys.items()},
            "totals": self.totals(),
            "skipped": self.skipped,
            "requests": self.requests,
            "exit_code": self.exit_code,
        }

    def raise_for_errors(self) -> None:
        """Raise one error naming every failed survey, with the worst exit code.

        Raises:
            RqError: a survey failed (its listing, its guard, its lease or some of its files).
        """
        failed = [o for o in self.surveys.values() if o.error]
        if failed:
            error = RqError(
                f"{len(failed)} of {len(self.surveys)} survey(s) failed: "
                + "; ".join(f"{o.survey}: {o.error}" for o in failed)
            )
            error.exit_code = self.exit_code
            raise error


def sync_surveys(
    store: ObjectStore,
    *,
    surveys: Sequence[str],
    root_url: str = DEFAULT_ROOT_URL,
    root_prefix: str = "",
    contact: str | None = None,
    user_agent: str | None = None,
    dry_run: bool = False,
    delete: bool = True,
    max_delete: DeleteLimit | int | str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    transfers: int = DEFAULT_TRANSFERS,
    parallel: int = DEFAULT_PARALLEL,
    max_rps: float | None = None,
    retry: RetryPolicy | None = None,
    http: HttpClient | None = None,
    on_progress: SurveyProgress | None = None,
    on_survey: Callable[[SurveyOutcome], None] | None = None,
    on_synced: Callable[[SyncResult], None] | None = None,
    lock: bool = True,
    wait: float = 0.0,
    lease_ttl: float = DEFAULT_LEASE_TTL,
    vintages: bool = False,
    tables_prefix: str | None = None,
    population_key: str = DEFAULT_POPULATION_KEY,
) -> MultiSyncResult:
    """Mirror each survey of ``root_url`` into ``store`` under ``<root_prefix><survey>/``.

    Args:
        store: the bucket.
        surveys: survey names, or ``["all"]`` for every directory the root lists.
        root_url: the ``time.series/`` root.
        root_prefix: put each survey under this prefix (default: the bucket root).
        contact: an e-mail address for the User-Agent.
        user_agent: a complete User-Agent instead.
        dry_run: plan only, for every survey.
        delete: delete objects whose file left its survey's listing.
        max_delete: each survey's delete guard (see :func:`rearcquest.sync.sync_bls`).
        include: only file names matching one of these globs, in every survey.
        exclude: never touch file names matching one of these globs.
        transfers: files moved at once within a survey.
        parallel: surveys synced at once.
        max_rps: the highest request rate summed over every survey and transfer; default 1/s
            for bls.gov, unlimited elsewhere.
        retry: the retry policy.
        http: a client to use instead of building one (its rate limiter is the budget).
        on_progress: called with ``(survey, Progress)`` from worker threads.
        on_survey: called with each survey's outcome as it finishes.
        on_synced: called with each survey's result after a real sync that changed or could
            have changed something, under its lease (see :func:`rearcquest.sync.sync_bls`); not
            for a survey found unchanged before its lease was taken.
        lock: hold each survey's lease while syncing it.
        wait: seconds to wait for another sync's lease on a survey.
        lease_ttl: the lease's time to live.
        vintages: require a versioned bucket, so every release stays readable.
        tables_prefix: where the tables go (default ``<root_prefix>tables/``): no survey is
            mirrored onto them.
        population_key: where the population JSON is stored: no survey is mirrored onto it.

    Returns:
        Every survey's outcome; a failed survey is recorded, not raised
        (see :meth:`MultiSyncResult.raise_for_errors`).

    Raises:
        ConfigError: bad settings (nothing was fetched).
        StorageError: the bucket cannot be used (nothing was fetched).
        SourceError: ``all`` was asked and the root listing failed (nothing was changed).
    """
    from rearcquest.sync import sync_bls

    check_http_url(root_url, "root URL")
    if not root_url.endswith("/"):
        root_url += "/"
    if parallel < 1:
        raise ConfigError("--parallel must be at least 1")
    if transfers < 1:
        raise ConfigError("--transfers must be at least 1")
    names = list(surveys)
    if not names:
        raise ConfigError("no survey named: give --survey pr,cu (or --survey all)")
    prefix_of = functools.partial(
        survey_prefix, root_prefix, tables_prefix=tables_prefix, population_key=population_key
    )
    for name in names:  # "all" as a name checks the root prefix
        prefix_of(name)
    DeleteLimit.parse(max_delete)  # a bad guard is a usage error before any request
    # One check for the whole run, before the source is asked anything: a missing or forbidden
    # bucket is one error, not the same error once per survey.
    store.check_bucket()
    own_client = http is None
    if http is None:
        http = make_http(
            root_url,
            contact=contact,
            user_agent=user_agent,
            max_rps=max_rps,
            retry=retry,
            connections=max(4, transfers * min(parallel, len(names) if ALL not in names else 64)),
        )
    client = http
    try:
        result = MultiSyncResult(root_url, store.bucket)
        if names == [ALL]:
            names = list_surveys(client, root_url)
            log.info("the root lists %d survey(s)", len(names), extra={"surveys": names})
            names, result.skipped = mirrorable_surveys(names, prefix_of)
        outcomes = {name: SurveyOutcome(name, prefix_of(name)) for name in names}
        result.surveys = outcomes

        def one(name: str) -> None:
            outcome = outcomes[name]
            token = _survey.set(name)
            try:
                callback = (
                    (lambda event: on_progress(name, event)) if on_progress is not None else None
                )
                try:
                    # sync_bls plans first without the survey's lease and takes it only when
                    # there is something to write: an unchanged survey costs its listing, one
                    # ListObjectsV2 and the state GET.
                    outcome.result = sync_bls(
                        store,
                        source_url=survey_url(root_url, name),
                        prefix=outcome.prefix,
                        dry_run=dry_run,
                        delete=delete,
                        max_delete=max_delete,
                        include=include,
                        exclude=exclude,
                        transfers=transfers,
                        http=client,
                        on_progress=callback,
                        lock=lock,
                        wait=wait,
                        lease_ttl=lease_ttl,
                        vintages=vintages,
                        on_synced=on_synced,
                    )
                    outcome.result.raise_for_errors()
                except RqError as exc:
                    outcome.error, outcome.exit_code = str(exc), exc.exit_code
                    log.error("survey %s failed: %s", name, exc, extra={"survey": name})
                except OSError as exc:  # a full temporary disk fails this survey, not the run
                    outcome.error, outcome.exit_code = f"local I/O error: {exc}", 1
                    log.error("survey %s failed: %s", name, outcome.error, extra={"survey": name})
                except Exception as exc:  # a bug met in one survey must not stop the others
                    outcome.error = (
                        f"unexpected error ({type(exc).__name__}: {exc}); please report it"
                    )
                    outcome.exit_code = 1
                    log.error(
                        "survey %s failed: %s",
                        name,
                        outcome.error,
                        exc_info=True,
                        extra={"survey": name},
                    )
                else:
                    log.info("survey %s synced", name, extra={"survey": name})
                if on_survey is not None:
                    on_survey(outcome)
            finally:
                _survey.reset(token)

        with ThreadPoolExecutor(max_workers=min(parallel, len(names)) or 1) as pool:
            # Each survey runs in a copy of this context, so log filters see its name.
            futures = [pool.submit(contextvars.copy_context().run, one, n) for n in names]
            for future in futures:
                future.result()
        result.requests = client.requests
        return result
    finally:
        if own_client:
            client.close()


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
    data = store.get_bytes(key, max_bytes=_MAX_STATE_BYTES)
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
    from rearcquest.sources.bls import fetch_listing

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
