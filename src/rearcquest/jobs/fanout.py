"""The AWS fan-out of a multi-survey sync: plan work messages, run one work message.

On AWS one invocation cannot sync every survey (Lambda stops at 15 minutes and one function's
share of the politeness budget is small). So the daily run is split:

- the scheduled function calls :func:`plan_work` (the root listing and one listing per survey)
  and :func:`enqueue_work` puts one :class:`WorkMessage` per survey on the SQS work queue (through
  :class:`rearcquest.aws.queues.Queue`), plus
  one per file larger than ``big_file_bytes`` (one invocation's share), which the survey's own
  message then excludes;
- the worker function, fed by that queue, calls :func:`process_work_batch`, which runs each
  message with :func:`run_work`: :func:`rearcquest.mirror.sync.sync_bls` on the survey's directory and
  prefix, with the survey's lease and state, the same library code as ``rq sync-bls --survey``.

A survey message and the file messages of the same survey all take the survey's lease, so they
never write its state at once: they run one after the other. A worker that finds the lease held
fails that message (``LeaseHeldError``); SQS hands it out again after the visibility timeout, and
after five receives it goes to the dead-letter queue. A file message syncs its one file
(``include``) and never deletes; the survey message excludes the big files, so it never touches
them (their state entries are kept) and deletes what left the listing. A big file that left the
listing gets no file message and is deleted by the survey message, under its delete guard.

A worker whose Lambda time runs out hands over (:func:`run_work`): its transfers stop at their
last whole part and are recorded in the survey's state, and the same work goes back on the queue
as a continuation (``continuation``/``stalled`` in the message), which resumes them.

With tables, each table is built by one message (:class:`~rearcquest.data.tables.TableScope`): a
file message its file's partition, the survey message every other table. A file message that
runs before its survey's first sync fails softly (``SurveyPendingError``, logged as a warning) and
is built when SQS hands it out again.
"""

from __future__ import annotations

import functools
import glob
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import TYPE_CHECKING, Any

from rearcquest.config import (
    DEFAULT_BIG_FILE_BYTES,
    DEFAULT_POPULATION_KEY,
    DEFAULT_ROOT_URL,
    MAX_STALLED_CONTINUATIONS,
)
from rearcquest.data.tables import TableScope
from rearcquest.errors import ConfigError, RqError, SurveyPendingError, TransferError
from rearcquest.jobs.events import handling_message
from rearcquest.jobs.job import run_survey
from rearcquest.layout import ALL, normalise_prefix, parse_surveys, plain_name, shown_name
from rearcquest.mirror.surveys import (
    in_survey,
    list_surveys,
    mirrorable_surveys,
    survey_prefix,
    survey_url,
)
from rearcquest.sources.bls import fetch_listing

if TYPE_CHECKING:
    from rearcquest.aws.queues import Queue
    from rearcquest.aws.storage import ObjectStore
    from rearcquest.config import SyncOptions
    from rearcquest.jobs.job import AfterSync, SurveyRun, SurveySet
    from rearcquest.mirror.sync import SyncResult
    from rearcquest.sources._http import HttpClient

log = logging.getLogger(__name__)


# The keys a work message may carry. ``root_url``/``root_prefix`` come only from planners of
# earlier versions (still in the queue during a deploy): the worker's own configuration says
# where the source and the mirror are, and a message may only repeat it.
_MESSAGE_KEYS = frozenset(
    {"survey", "file", "exclude", "root_url", "root_prefix", "continuation", "stalled"}
)
# No real run hands one message over this often (a 6 GB file at 1 MB/s takes ~8 continuations).
_MAX_CONTINUATION = 10_000


@dataclass(frozen=True)
class WorkMessage:
    """What one worker invocation syncs: a whole survey (but ``exclude``) or one of its files.

    Where the survey comes from and where its mirror goes are the worker's configuration
    (``RQ_BLS_ROOT_URL``, ``RQ_BLS_ROOT_PREFIX``), never the message's: a message names a survey
    only.

    Attributes:
        survey: the survey (directory) name.
        file: the one file to sync (a file message), or ``None`` for the whole survey.
        exclude: files the survey message leaves alone (they have messages of their own).
        root_url: the root a message of an earlier planner named (``None``: not named, the
            planner of this version never names it). The worker refuses a message whose value
            differs from its own configuration.
        root_prefix: the mirrors' prefix an earlier planner named; as ``root_url``.
        continuation: 0 for a planned message; n for the n-th continuation a worker sent on
            when its time ran out (the same work, resumed from what the state records).
        stalled: how many continuations in a row before this one moved no byte; at
            :data:`~rearcquest.config.MAX_STALLED_CONTINUATIONS` the message fails.
    """

    survey: str
    file: str | None = None
    exclude: tuple[str, ...] = ()
    root_url: str | None = None
    root_prefix: str | None = None
    continuation: int = 0
    stalled: int = 0

    def to_json(self) -> str:
        """The SQS message body (``root_url``/``root_prefix`` only when named, ``continuation``
        and ``stalled`` only on a continuation)."""
        doc: dict[str, Any] = {
            "survey": self.survey,
            "file": self.file,
            "exclude": list(self.exclude),
        }
        if self.root_url is not None:
            doc["root_url"] = self.root_url
        if self.root_prefix is not None:
            doc["root_prefix"] = self.root_prefix
        if self.continuation:
            doc["continuation"] = self.continuation
            doc["stalled"] = self.stalled
        return json.dumps(doc, sort_keys=True)

    @classmethod
    def from_json(cls, body: str) -> WorkMessage:
        """Parse a message body, strictly.

        Raises:
            ValueError: it is not a work message: not a JSON object, an unknown key, a survey
                that is not one plain survey name, a file or an excluded name that is not a
                file of that survey, a ``root_url``/``root_prefix`` that is not a string (the
                message fails alone, and goes to the DLQ after its retries).
        """
        try:
            doc = json.loads(body)
        except RecursionError:
            raise ValueError("the message is nested too deeply to be a work message") from None
        except json.JSONDecodeError as exc:
            raise ValueError(f"the message is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("survey"), str):
            raise ValueError("the message is not a work message (no 'survey')")
        unknown = sorted(set(doc) - _MESSAGE_KEYS)
        if unknown:
            raise ValueError(f"the message has unknown keys {shown_name(unknown)}")
        survey = _survey_name(doc["survey"])
        file, exclude = doc.get("file"), doc.get("exclude", [])
        if file is not None and not (isinstance(file, str) and _survey_file(survey, file)):
            raise ValueError(
                f"the message's 'file' {shown_name(file)} is not a file of survey {shown_name(survey)}"
            )
        if not isinstance(exclude, list) or not all(
            isinstance(e, str) and _survey_file(survey, e) for e in exclude
        ):
            raise ValueError(
                f"the message's 'exclude' is not a list of file names of survey {shown_name(survey)}"
            )
        root_url, root_prefix = doc.get("root_url"), doc.get("root_prefix")
        for key, value in (("root_url", root_url), ("root_prefix", root_prefix)):
            if value is not None and not isinstance(value, str):
                raise ValueError(f"the message's {key!r} is not a string")
        continuation, stalled = doc.get("continuation", 0), doc.get("stalled", 0)
        for key, value in (("continuation", continuation), ("stalled", stalled)):
            if type(value) is not int or not 0 <= value <= _MAX_CONTINUATION:
                raise ValueError(
                    f"the message's {key!r} is not an integer from 0 to {_MAX_CONTINUATION}"
                )
        if stalled > continuation:
            raise ValueError("the message's 'stalled' is more than its 'continuation'")
        return cls(survey, file, tuple(exclude), root_url, root_prefix, continuation, stalled)


def _survey_name(value: str) -> str:
    """The one survey a message names, by the rule of ``--survey`` (no list, no ``all``).

    Raises:
        ValueError: it is not exactly one plain survey name.
    """
    try:
        names = parse_surveys([value])
    except ConfigError:
        raise ValueError(
            f"the message's 'survey' {shown_name(value)} is not a survey name"
        ) from None
    if names == [ALL]:
        raise ValueError("a work message names one survey, not 'all'")
    if names != [value]:
        raise ValueError(f"the message's 'survey' {shown_name(value)} is not one survey name")
    return value


def _survey_file(survey: str, name: str) -> bool:
    """Whether ``name`` may be a file of ``survey`` in a work message: a plain name (no path,
    nothing unprintable) of the survey's own, ``<survey>.<...>`` as every BLS file is named."""
    return name.startswith(survey + ".") and name.isprintable() and plain_name(name)


def _check_message_roots(message: WorkMessage, *, root_url: str, root_prefix: str) -> None:
    """Refuse a message that names another source root or mirror prefix than the worker's own.

    A message of an earlier planner repeats the worker's configuration and passes (compared
    after the trailing slash is normalised); any other value fails the message before anything
    is fetched or written.

    Raises:
        ConfigError: the message names another ``root_url`` or ``root_prefix``.
    """
    if message.root_url is not None and _root(message.root_url) != _root(root_url):
        raise ConfigError(
            f"the work message names root_url {shown_name(message.root_url)} but this worker "
            f"mirrors {root_url!r} (RQ_BLS_ROOT_URL); refused, nothing fetched"
        )
    if message.root_prefix is not None and _prefix(message.root_prefix) != _prefix(root_prefix):
        raise ConfigError(
            f"the work message names root_prefix {shown_name(message.root_prefix)} but this worker "
            f"writes under {root_prefix!r} (RQ_BLS_ROOT_PREFIX); refused, nothing written"
        )


def _root(url: str) -> str:
    return url.strip().rstrip("/") + "/"


def _prefix(prefix: str) -> str | None:
    try:
        return normalise_prefix(prefix)
    except ConfigError:
        return None  # never equal to a configured prefix, which normalises


@dataclass
class WorkPlan:
    """The messages of one daily run and the surveys whose listing failed in the planner."""

    messages: list[WorkMessage] = field(default_factory=list)
    listing_errors: dict[str, str] = field(default_factory=dict)
    # Surveys the root lists that would land on rq's own objects, and why (not queued).
    skipped: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON summary for the scheduled function's log and result."""
        return {
            "surveys": sorted({m.survey for m in self.messages}),
            "messages": len(self.messages),
            "file_messages": [f"{m.survey}/{m.file}" for m in self.messages if m.file],
            "listing_errors": self.listing_errors,
            "skipped": self.skipped,
        }


def plan_work(
    http: HttpClient,
    *,
    surveys: Sequence[str],
    root_url: str = DEFAULT_ROOT_URL,
    root_prefix: str = "",
    big_file_bytes: int = DEFAULT_BIG_FILE_BYTES,
    tables_prefix: str | None = None,
    population_key: str = DEFAULT_POPULATION_KEY,
) -> WorkPlan:
    """Plan the work messages of a fan-out run.

    Args:
        http: the client (its rate limiter applies).
        surveys: survey names, or ``["all"]`` for every directory of the root.
        root_url: the ``time.series/`` root.
        root_prefix: the prefix the survey mirrors are under.
        big_file_bytes: files larger than this get a message of their own.
        tables_prefix: where the tables go (default ``<root_prefix>tables/``).
        population_key: where the population JSON is stored.

    Returns:
        One message per survey (excluding its big files) and one per big file (named
        ``<survey>.*``, as a worker accepts). A survey whose listing fails here still gets its
        message: its worker will retry the listing and fail alone. The messages name surveys
        and files only: the workers' own configuration, which must match the planner's, says
        where the root and the mirrors are.

    Raises:
        ConfigError: a bad survey name or size.
        SourceError: ``all`` was asked and the root listing failed.
    """

    if big_file_bytes < 1:
        raise ConfigError("the big-file threshold must be at least 1 byte")
    if not root_url.endswith("/"):
        root_url += "/"
    prefix_of = functools.partial(
        survey_prefix, root_prefix, tables_prefix=tables_prefix, population_key=population_key
    )
    plan = WorkPlan()
    names = list(surveys)
    if names == [ALL]:
        names, plan.skipped = mirrorable_surveys(list_surveys(http, root_url), prefix_of)
    for name in names:
        prefix_of(name)  # refuse a bad name before anything is queued
        try:
            files = fetch_listing(http, survey_url(root_url, name))
        except RqError as exc:
            plan.listing_errors[name] = str(exc)
            log.warning("planning %s: listing failed: %s", name, exc, extra={"survey": name})
            files = []
        # Only a file a worker accepts in a message gets one; any other stays in the survey's.
        big = [
            f.name
            for f in files
            if f.size is not None and f.size > big_file_bytes and _survey_file(name, f.name)
        ]
        plan.messages.append(WorkMessage(name, None, tuple(big)))
        plan.messages.extend(WorkMessage(name, b) for b in big)
    return plan


def enqueue_work(queue: Queue, messages: Iterable[WorkMessage]) -> int:
    """Send the messages to the work queue.

    Returns:
        The number of messages sent.

    Raises:
        StorageError: SQS refused a batch or some of its messages (the message names the queue).
    """
    return queue.send(m.to_json() for m in messages)


def run_work(
    message: WorkMessage,
    *,
    store: ObjectStore,
    http: HttpClient,
    surveys: SurveySet,
    options: SyncOptions,
    after: AfterSync | None = None,
    requeue: Callable[[WorkMessage], object] | None = None,
) -> SurveyRun:
    """Run the job (:func:`rearcquest.jobs.job.run_survey`) of what one work message names.

    When ``options.time_left`` runs out, the sync stops its transfers at their last whole part
    and records them in the survey's state (the lease is released as the job ends); this then
    sends the same work on as a continuation (``requeue``), which resumes them, and the message
    succeeds. A continuation that follows ``MAX_STALLED_CONTINUATIONS`` - 1 others that moved
    no byte fails instead, so that a source that sends nothing ends in the dead-letter queue.

    Args:
        message: the work.
        store: the mirror bucket.
        http: the worker's client (its rate is the worker's share of the politeness budget).
        surveys: the root the surveys are under and the prefix their mirrors go to: the worker's
            configuration (``RQ_BLS_ROOT_URL``, ``RQ_BLS_ROOT_PREFIX``), whatever the message
            says; its ``names`` are ignored.
        options: the worker's sync options (``transfers``, ``wait`` for the survey's lease,
            ``vintages``); the source, prefix and file selection are the message's.
        after: what follows the sync under the survey's lease (the tables, Glue).
        requeue: sends a continuation message on the work queue.

    Returns:
        The job's record (already checked: a failed file, guard or table raises).

    Raises:
        TransferError: the work was handed over too often without progress, or there is no
            queue to send its continuation on.
        ConfigError: the message names another root or prefix than the worker's (nothing was
            fetched or written), or the survey's mirror would land on rq's own objects.
        LeaseHeldError: another message of the survey holds its lease; retry later.
        RqError: the sync failed (listing, files, delete guard, S3), or its tables.
    """

    _check_message_roots(message, root_url=surveys.root_url, root_prefix=surveys.root_prefix)
    prefix = survey_prefix(
        surveys.root_prefix,
        message.survey,
        tables_prefix=after.tables_prefix if after else None,
        population_key=surveys.population_key,
    )
    own = replace(
        options,
        source_url=survey_url(surveys.root_url, message.survey),
        prefix=prefix,
        state_key=None,
        index_key=None,
        include=(glob.escape(message.file),) if message.file is not None else (),
        exclude=() if message.file is not None else tuple(glob.escape(n) for n in message.exclude),
        delete=message.file is None,
        transfers=1 if message.file is not None else options.transfers,
    )
    if after is not None:
        # Each table is built by one message: a file message its file's partition, the survey
        # message every other table (never again the big files it left to their messages).
        scope = (
            TableScope(only=message.file)
            if message.file is not None
            else TableScope(leave=frozenset(message.exclude))
        )
        after = replace(after, scope=scope)
    with in_survey(message.survey):
        run = run_survey(store, own, after, http=http)
        run.raise_for_errors()
        result = run.sync
        if result.handed_over:
            _continue(message, result, requeue)
        log.info(
            "work done",
            extra={
                "survey": message.survey,
                "file": message.file,
                "added": len(result.added),
                "updated": len(result.updated),
                "deleted": len(result.deleted),
                "bytes_uploaded": result.bytes_uploaded,
            },
        )
        return run


def _continue(
    message: WorkMessage, result: SyncResult, requeue: Callable[[WorkMessage], object] | None
) -> None:
    """Send the work of a run that handed over on as its continuation.

    Raises:
        TransferError: it made no progress for the :data:`MAX_STALLED_CONTINUATIONS`-th time
            in a row, or there is no queue to send it on.
    """
    stalled = 0 if result.progressed else message.stalled + 1
    where = ", ".join(f"{h.name} at byte {h.reached}" for h in result.handed_over)
    if stalled >= MAX_STALLED_CONTINUATIONS:
        raise TransferError(
            f"{message.survey}: {stalled} invocations in a row ran out of time without moving "
            f"a byte ({where}); the source sends too slowly for the worker's time. The "
            "transfers stay recorded: a later run resumes them"
        )
    if requeue is None:
        raise TransferError(
            f"{message.survey}: the worker's time ran out ({where}) and it has no work queue "
            "to continue on (RQ_WORK_QUEUE_URL); the transfers are recorded for the next run"
        )
    following = replace(message, continuation=message.continuation + 1, stalled=stalled)
    requeue(following)
    log.info(
        "time ran out: handed over",
        extra={
            "survey": message.survey,
            "file": message.file,
            "continuation": following.continuation,
            "stalled": stalled,
            "handed_over": [asdict(h) for h in result.handed_over],
        },
    )


def process_work_batch(
    event: Any,
    *,
    run: Callable[[WorkMessage], object],
) -> dict[str, Any]:
    """Run every work message of an SQS batch event; return the partial batch response.

    A message that fails (a held lease, a failed listing or file, a bad body) is returned in
    ``batchItemFailures``: SQS hands it out again after the visibility timeout and, after the
    queue's ``maxReceiveCount`` (5), moves it to the dead-letter queue. The others are done.

    Args:
        event: the SQS batch event (see :func:`rearcquest.jobs.events.sqs_batch_event`).
        run: runs one message (:func:`run_work` with the store and client bound).

    Returns:
        ``{"batchItemFailures": [{"itemIdentifier": message_id}, ...]}``.
    """

    records = event.get("Records") if isinstance(event, dict) else None
    if not isinstance(records, list):
        log.error("batch dropped: the event has no Records list")
        return {"batchItemFailures": []}
    failures: list[dict[str, str]] = []
    for index, record in enumerate(records):
        message_id = record.get("messageId") if isinstance(record, dict) else None
        if not isinstance(message_id, str) or not message_id:
            log.error("record %d dropped: it is not an SQS message with a messageId", index)
            continue
        try:
            with handling_message(message_id):
                _run_record(record, run)
        except _RefusedMessage as exc:
            with handling_message(message_id):
                log.error("work message refused: %s", exc)
            failures.append({"itemIdentifier": message_id})
        except SurveyPendingError as exc:
            with handling_message(message_id):
                log.warning("work message deferred (SQS hands it out again): %s", exc)
            failures.append({"itemIdentifier": message_id})
        except Exception as exc:  # one failed message must not fail the batch
            with handling_message(message_id):
                log.error("work message failed: %s", exc, exc_info=not isinstance(exc, RqError))
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


class _RefusedMessage(ValueError):
    """A record whose body is not a work message (logged without a traceback)."""


def _run_record(record: dict[str, Any], run: Callable[[WorkMessage], object]) -> None:
    """Parse and run one record's work message.

    Raises:
        ValueError: the body is not a work message.
        RqError: the work failed, or the message names another root or prefix than the
            worker's (:func:`_check_message_roots`).
    """
    body = record.get("body")
    if not isinstance(body, str):
        raise _RefusedMessage("the message has no body")
    try:
        message = WorkMessage.from_json(body)
    except ValueError as exc:
        raise _RefusedMessage(str(exc)) from exc
    run(message)
