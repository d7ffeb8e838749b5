"""The AWS pipeline's wiring, reproduced locally: S3 notification -> SQS -> report function.

Used by ``rq demo`` and the end-to-end test against moto (in-process or its server): the population
bucket notifies a queue when the population key is written, and :func:`drain_queue` plays the part
of Lambda's SQS event source, handing batches to a handler and deleting what it processed. The
batches and the partial batch responses are those of :mod:`rearcquest.jobs.events`, whose
:func:`~rearcquest.jobs.events.process_report_batch` is the report Lambda's work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rearcquest.jobs.events import failed_message_ids, sqs_batch_event

if TYPE_CHECKING:
    from rearcquest.aws.queues import Queue
    from rearcquest.aws.storage import ObjectStore

log = logging.getLogger(__name__)

BatchHandler = Callable[[dict[str, Any]], dict[str, Any]]


def notify_queue_on_key(store: ObjectStore, queue: Queue, *, key: str) -> None:
    """Make the store's bucket notify ``queue`` when ``key`` is written."""
    store.notify_queue(queue.arn(), key_prefix=key)


def drain_queue(
    queue: Queue,
    handler: BatchHandler,
    *,
    batch_size: int = 10,
    max_batches: int = 10,
) -> list[dict[str, Any]]:
    """Feed the queue's messages to ``handler`` in Lambda's SQS event format until it is empty.

    The events are built by :func:`rearcquest.jobs.events.sqs_batch_event`; give
    :func:`rearcquest.jobs.events.process_report_batch` (settings and S3 access bound) as
    ``handler`` to run what the report Lambda runs. Messages the handler reports in
    ``batchItemFailures`` stay on the queue (as with Lambda's partial batch responses); the others
    are deleted.

    Returns:
        The handler's responses, one per batch.
    """
    responses = []
    for _ in range(max_batches):
        messages = queue.receive(batch_size)
        if not messages:
            break
        response = handler(sqs_batch_event(messages, queue=queue.url))
        responses.append(response)
        failed = failed_message_ids(response)
        for message in messages:
            if message["MessageId"] not in failed:
                queue.delete(message["ReceiptHandle"])
        log.info("drained %d message(s), %d failed", len(messages), len(failed))
        if failed:
            break  # they come back after the visibility timeout, as with Lambda
    return responses
