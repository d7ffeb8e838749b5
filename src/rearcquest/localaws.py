"""The AWS pipeline's wiring, reproduced locally: S3 notification -> SQS -> report function.

Used by ``rq demo`` and the end-to-end test against moto (in-process or its server): the population
bucket notifies a queue when the population key is written, and :func:`drain_queue` plays the part
of Lambda's SQS event source, handing batches to a handler and deleting what it processed. The
batches and the partial batch responses are those of :mod:`rearcquest.events`, whose
:func:`~rearcquest.events.process_report_batch` is the report Lambda's work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rearcquest.events import failed_message_ids, sqs_batch_event

if TYPE_CHECKING:
    from rearcquest.storage import ObjectStore

log = logging.getLogger(__name__)

BatchHandler = Callable[[dict[str, Any]], dict[str, Any]]


def notify_queue_on_key(store: ObjectStore, sqs_client: Any, *, key: str, queue: str) -> str:
    """Create ``queue`` and make the store's bucket notify it when ``key`` is written.

    Returns:
        The queue URL.
    """
    url: str = sqs_client.create_queue(QueueName=queue)["QueueUrl"]
    attributes = sqs_client.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    store.notify_queue(attributes["Attributes"]["QueueArn"], key_prefix=key)
    return url


def drain_queue(
    sqs_client: Any,
    queue_url: str,
    handler: BatchHandler,
    *,
    batch_size: int = 10,
    max_batches: int = 10,
) -> list[dict[str, Any]]:
    """Feed the queue's messages to ``handler`` in Lambda's SQS event format until it is empty.

    The events are built by :func:`rearcquest.events.sqs_batch_event`; give
    :func:`rearcquest.events.process_report_batch` (settings and client bound) as ``handler`` to
    run what the report Lambda runs. Messages the handler reports in ``batchItemFailures`` stay on
    the queue (as with Lambda's partial batch responses); the others are deleted.

    Returns:
        The handler's responses, one per batch.
    """
    responses = []
    for _ in range(max_batches):
        messages = sqs_client.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=batch_size, WaitTimeSeconds=0
        ).get("Messages", [])
        if not messages:
            break
        response = handler(sqs_batch_event(messages, queue=queue_url))
        responses.append(response)
        failed = failed_message_ids(response)
        for message in messages:
            if message["MessageId"] not in failed:
                sqs_client.delete_message(
                    QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        log.info("drained %d message(s), %d failed", len(messages), len(failed))
        if failed:
            break  # they come back after the visibility timeout, as with Lambda
    return responses
