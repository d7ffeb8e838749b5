"""The AWS fan-out of a multi-survey sync: plan work messages, run one work message.

On AWS one invocation cannot sync every survey (Lambda stops at 15 minutes and one function's
share of the politeness budget is small). So the daily run is split:

- the scheduled function calls :func:`plan_work` (the root listing and one listing per survey)
  and :func:`enqueue_work` puts one :class:`WorkMessage` per survey on the SQS work queue (through
  :class:`rearcquest.queues.Queue`), plus
  one per file larger than ``big_file_bytes`` (one invocation's share), which the survey's own
  message then excludes;
- the worker function, fed by that queue, calls :func:`process_work_batch`, which runs each
  message with :func:`run_work`: :func:`rearcquest.sync.sync_bls` on the survey's directory and
  prefix, with the survey's lease and state, the same library code as ``rq sync-bls --survey``.

A survey message and the file messages of the same survey all take the survey's lease, so they
never write its state at once: they run one after the other. A worker that finds the lease held
fails that message (``LeaseHeldError``); SQS hands it out again after the visibility timeout, and
after five receives it goes to the dead-letter queue. A file message syncs its one file
(``include``) and never deletes; the survey message excludes the big files, so it never touches
them (their state entries are kept) and deletes what left the listing. A big file that left the
listing gets no file message and is deleted by the survey message, under its delete guard.
"""

from __future__ import annotations

import functools
import glob
import json
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rearcquest.config import DEFAULT_POPULATION_KEY, DEFAULT_ROOT_URL, DEFAULT_TRANSFERS
from rearcquest.errors import ConfigError, RqError
from rearcquest.surveys import (
    ALL,
    in_survey,
    list_surveys,
    mirrorable_surveys,
    parse_surveys,
    survey_prefix,
    survey_url,
)

if TYPE_CHECKING:
    from rearcquest.queues import Queue
    from rearcquest.sources._http import HttpClient
    from rearcquest.storage import ObjectStore
    from rearcquest.sync import SyncResult

log = logging.getLogger(__name__)

# One invocation's share: a file larger than this gets a message of its own. At the default
# worker rate and Lambda's network a 1 GB file takes a few minutes; several would not fit 15.
DEFAULT_BIG_FILE_BYTES = 512 * 1024 * 1024


@dataclass(frozen=True)
class WorkMessage:
    """What one worker invocation syncs: a whole survey (but ``exclude``) or one of its files.

    Attributes:
        survey: the survey (directory) name.
        file: the one file to sync (a file message), or ``None`` for the whole survey.
        exclude: files the survey message leaves alone (they have messages of their own).
        root_url: the root the survey is under.
        root_prefix: the prefix the survey's mirror is under.
    """

    survey: str
    file: str | None = None
    exclude: tuple[str, ...] = ()
    root_url: str = DEFAULT_ROOT_URL
    root_prefix: str = ""

    def to_json(self) -> str:
        """The SQS message body."""
        return json.dumps(
            {
                "survey": self.survey,
                "file": self.file,
                "exclude": list(self.exclude),
                "root_url": self.root_url,
                "root_prefix": self.root_prefix,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, body: str) -> WorkMessage:
        """Parse a message body.

        Raises:
            ValueError: it is not a work message (the message goes to the DLQ after retries).
        """
        try:
            doc = json.loads(body)
        except json.JSONDecodeError as exc:
            raise ValueError(f"the message is not JSON: {exc}") from exc
        if not isinstance(doc, dict) or not isinstance(doc.get("survey"), str):
            raise ValueError("the message is not a work message (no 'survey')")
        file, exclude = doc.get("file"), doc.get("exclude", [])
        if file is not None and (not isinstance(file, str) or not file or "/" in file):
            raise ValueError(f"the message's 'file' {file!r} is not a file name")
        if not isinstance(exclude, list) or not all(isinstance(e, str) for e in exclude):
            raise ValueError("the message's 'exclude' is not a list of file names")
        root_url = doc.get("root_url", DEFAULT_ROOT_URL)
        root_prefix = doc.get("root_prefix", "")
        if not isinstance(root_url, str) or not isinstance(root_prefix, str):
            raise ValueError("the message's 'root_url' or 'root_prefix' is not a string")
        try:
            (survey,) = parse_surveys([doc["survey"]])
        except ConfigError as exc:
            raise ValueError(str(exc)) from exc
        if survey == ALL:
            raise ValueError("a work message names one survey, not 'all'")
        return cls(survey, file, tuple(exclude), root_url, root_prefix)


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
        One message per survey (excluding its big files) and one per big file. A survey whose
        listing fails here still gets its message: its worker will retry the listing and fail
        alone.

    Raises:
        ConfigError: a bad survey name or size.
        SourceError: ``all`` was asked and the root listing failed.
    """
    from rearcquest.sources.bls import fetch_listing

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
        big = [f.name for f in files if f.size is not None and f.size > big_file_bytes]
        plan.messages.append(WorkMessage(name, None, tuple(big), root_url, root_prefix))
        plan.messages.extend(WorkMessage(name, b, (), root_url, root_prefix) for b in big)
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
    transfers: int = DEFAULT_TRANSFERS,
    wait: float = 0.0,
    vintages: bool = False,
    on_synced: Callable[[SyncResult], None] | None = None,
    tables_prefix: str | None = None,
    population_key: str = DEFAULT_POPULATION_KEY,
) -> SyncResult:
    """Sync what one work message names, with the survey's lease and state.

    Args:
        message: the work.
        store: the mirror bucket.
        http: the worker's client (its rate is the worker's share of the politeness budget).
        transfers: files moved at once.
        wait: seconds to wait for the survey's lease before failing.
        vintages: require a versioned bucket (see :func:`rearcquest.sync.sync_bls`).
        on_synced: called with the result under the survey's lease (the pipeline builds the
            survey's tables there).
        tables_prefix: where the tables go, as the planner was told.
        population_key: where the population JSON is stored, as the planner was told.

    Returns:
        The sync's result (already checked: a failed file or guard raises).

    Raises:
        LeaseHeldError: another message of the survey holds its lease; retry later.
        RqError: the sync failed (listing, files, delete guard, S3).
    """
    from rearcquest.sync import sync_bls

    prefix = survey_prefix(
        message.root_prefix,
        message.survey,
        tables_prefix=tables_prefix,
        population_key=population_key,
    )
    with in_survey(message.survey):
        if message.file is not None:
            result = sync_bls(
                store,
                source_url=survey_url(message.root_url, message.survey),
                prefix=prefix,
                include=(glob.escape(message.file),),
                delete=False,
                transfers=1,
                http=http,
                wait=wait,
                vintages=vintages,
                on_synced=on_synced,
            )
        else:
            result = sync_bls(
                store,
                source_url=survey_url(message.root_url, message.survey),
                prefix=prefix,
                exclude=tuple(glob.escape(n) for n in message.exclude),
                transfers=transfers,
                http=http,
                wait=wait,
                vintages=vintages,
                on_synced=on_synced,
            )
        result.raise_for_errors()
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
        return result


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
        event: the SQS batch event (see :func:`rearcquest.events.sqs_batch_event`).
        run: runs one message (:func:`run_work` with the store and client bound).

    Returns:
        ``{"batchItemFailures": [{"itemIdentifier": message_id}, ...]}``.
    """
    from rearcquest.events import handling_message

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
        except Exception as exc:  # one failed message must not fail the batch
            with handling_message(message_id):
                log.error("work message failed: %s", exc, exc_info=not isinstance(exc, RqError))
            failures.append({"itemIdentifier": message_id})
    return {"batchItemFailures": failures}


def _run_record(record: dict[str, Any], run: Callable[[WorkMessage], object]) -> None:
    """Parse and run one record's work message.

    Raises:
        ValueError: the body is not a work message.
        RqError: the work failed.
    """
    body = record.get("body")
    if not isinstance(body, str):
        raise ValueError("the message has no body")
    run(WorkMessage.from_json(body))


@dataclass(frozen=True)
class FanoutSettings:
    """Where the fan-out sends its work and what it covers (``RQ_*`` variables).

    Attributes:
        queue_url: the SQS work queue (``RQ_WORK_QUEUE_URL``); ``None``: no fan-out, the
            scheduled function syncs in-process as before.
        surveys: the surveys (``RQ_SURVEYS``, comma-separated or ``all``; default ``pr``).
        root_url: the root (``RQ_BLS_ROOT_URL``).
        root_prefix: the prefix the survey mirrors are under (``RQ_BLS_ROOT_PREFIX``).
        big_file_bytes: files larger than this get a message of their own (``RQ_BIG_FILE_BYTES``).
    """

    queue_url: str | None = None
    surveys: tuple[str, ...] = ("pr",)
    root_url: str = DEFAULT_ROOT_URL
    root_prefix: str = ""
    big_file_bytes: int = DEFAULT_BIG_FILE_BYTES

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> FanoutSettings:
        """Read the settings from ``environ`` (default ``os.environ``).

        Raises:
            ConfigError: a value is invalid (the message names the variable).
        """
        import os

        env = dict(os.environ) if environ is None else environ
        raw = env.get("RQ_BIG_FILE_BYTES", "").strip()
        try:
            big = int(raw) if raw else DEFAULT_BIG_FILE_BYTES
        except ValueError:
            raise ConfigError(f"RQ_BIG_FILE_BYTES={raw!r} is not a whole number of bytes") from None
        if big < 1:
            raise ConfigError(f"RQ_BIG_FILE_BYTES={raw!r} must be at least 1")
        surveys = parse_surveys([env.get("RQ_SURVEYS", "").strip() or "pr"])
        return cls(
            queue_url=env.get("RQ_WORK_QUEUE_URL", "").strip() or None,
            surveys=tuple(surveys),
            root_url=env.get("RQ_BLS_ROOT_URL", "").strip() or DEFAULT_ROOT_URL,
            root_prefix=env.get("RQ_BLS_ROOT_PREFIX", "").strip(),
            big_file_bytes=big,
        )
