"""The SQS seam: the only code that talks to SQS, as :mod:`rearcquest.aws.storage` is for S3.

A :class:`Queue` is one queue by URL. The fan-out planner sends work to it
(:func:`rearcquest.jobs.fanout.enqueue_work`), and the local pipeline (:mod:`rearcquest.localaws`,
``rq demo``, the tests) receives and deletes what Lambda's SQS event source would. Errors come back
as :class:`~rearcquest.errors.StorageError` naming the queue; no caller reads botocore's.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from rearcquest.aws import _botocore
from rearcquest.errors import StorageError

SEND_BATCH = 10  # SQS's largest SendMessageBatch

_T = TypeVar("_T")


def make_sqs_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    access_key: tuple[str, str] | None = None,
) -> Any:
    """Create an SQS client (botocore's), from the default credential chain.

    Args:
        endpoint_url: an SQS-compatible endpoint (moto); defaults to ``AWS_ENDPOINT_URL_SQS`` /
            ``AWS_ENDPOINT_URL``, then AWS itself.
        region: the AWS region; ``us-east-1`` when a custom endpoint is used without one.
        profile: a profile from the AWS config files; defaults to ``AWS_PROFILE``.
        access_key: explicit ``(key id, secret)``, for embedded test endpoints only.

    Raises:
        ConfigError: the profile does not exist.
    """
    return _botocore.client(
        "sqs",
        endpoint_url=endpoint_url,
        region=region,
        profile=profile,
        access_key=access_key,
    )


class Queue:
    """One SQS queue, by URL.

    Args:
        client: an SQS client (:func:`make_sqs_client`).
        url: the queue URL.
    """

    def __init__(self, client: Any, url: str) -> None:
        self.client = client
        self.url = url

    def __repr__(self) -> str:
        return f"Queue({self.url!r})"

    @classmethod
    def create(cls, client: Any, name: str) -> Queue:
        """Create the queue ``name`` (or find it, if it exists with the same attributes).

        Raises:
            StorageError: SQS refused.
        """
        response = _call(f"create queue {name}", lambda: client.create_queue(QueueName=name))
        return cls(client, str(response["QueueUrl"]))

    def arn(self) -> str:
        """The queue's ARN (for an S3 notification or an event source)."""
        response = self._call(
            "read the attributes of",
            lambda: self.client.get_queue_attributes(
                QueueUrl=self.url, AttributeNames=["QueueArn"]
            ),
        )
        return str(response["Attributes"]["QueueArn"])

    def send(self, bodies: Iterable[str]) -> int:
        """Send the message bodies, :data:`SEND_BATCH` at a time.

        Returns:
            The number of messages sent.

        Raises:
            StorageError: SQS refused a batch or some of its messages; the batches before it were
                sent.
        """
        sent = 0
        batch: list[str] = []
        for body in bodies:
            batch.append(body)
            if len(batch) == SEND_BATCH:
                sent += self._send_batch(batch)
                batch = []
        if batch:
            sent += self._send_batch(batch)
        return sent

    def _send_batch(self, bodies: list[str]) -> int:
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies)]
        response = self._call(
            "send messages to",
            lambda: self.client.send_message_batch(QueueUrl=self.url, Entries=entries),
        )
        failed = response.get("Failed", [])
        if failed:
            reasons = "; ".join(str(f.get("Message", f.get("Code"))) for f in failed)
            raise StorageError(f"{self.url} refused {len(failed)} message(s): {reasons}")
        return len(bodies)

    def receive(self, max_messages: int = 10, *, wait_seconds: int = 0) -> list[dict[str, Any]]:
        """Receive up to ``max_messages`` messages (SQS's shape: ``MessageId``, ``Body``, ...)."""
        response = self._call(
            "receive messages from",
            lambda: self.client.receive_message(
                QueueUrl=self.url,
                MaxNumberOfMessages=max_messages,
                WaitTimeSeconds=wait_seconds,
            ),
        )
        return list(response.get("Messages", []))

    def delete(self, receipt_handle: str) -> None:
        """Delete a received message."""
        self._call(
            "delete a message from",
            lambda: self.client.delete_message(QueueUrl=self.url, ReceiptHandle=receipt_handle),
        )

    def _call(self, what: str, call: Callable[[], _T]) -> _T:
        return _call(f"{what} {self.url}", call)


def _call(what: str, call: Callable[[], _T]) -> _T:
    import botocore.exceptions

    try:
        return call()
    except botocore.exceptions.ClientError as exc:
        raise StorageError(f"could not {what}: {exc}", code=_botocore.error_code(exc)) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise StorageError(f"could not {what}: {exc}") from exc
