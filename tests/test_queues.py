"""The SQS seam on moto: batches of ten, errors as StorageError naming the queue."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from rearcquest.aws.queues import SEND_BATCH, Queue, make_sqs_client
from rearcquest.errors import ConfigError, StorageError


@pytest.fixture
def sqs() -> Iterator[Any]:
    from moto import mock_aws

    with mock_aws():
        yield make_sqs_client(region="us-east-1")


def _bodies(queue: Queue) -> list[str]:
    seen: list[str] = []
    for _ in range(10):  # bounded: 25 messages need 3 receives of 10
        messages = queue.receive(10)
        if not messages:
            break
        for m in messages:
            seen.append(m["Body"])
            queue.delete(m["ReceiptHandle"])
    return seen


def test_send_splits_into_batches_and_every_message_arrives_once(sqs: Any) -> None:
    queue = Queue.create(sqs, "rq-work")
    calls: list[int] = []
    send_batch = sqs.send_message_batch

    def counting(**kwargs: Any) -> Any:
        calls.append(len(kwargs["Entries"]))
        return send_batch(**kwargs)

    sqs.send_message_batch = counting
    bodies = [f"message {i}" for i in range(2 * SEND_BATCH + 5)]
    assert queue.send(iter(bodies)) == len(bodies)
    assert calls == [SEND_BATCH, SEND_BATCH, 5]
    assert sorted(_bodies(queue)) == sorted(bodies)
    assert queue.receive(10) == []


def test_send_nothing_makes_no_request(sqs: Any) -> None:
    queue = Queue.create(sqs, "rq-work")
    sqs.send_message_batch = None  # any call would fail
    assert queue.send([]) == 0


def test_arn_names_the_queue(sqs: Any) -> None:
    assert Queue.create(sqs, "rq-reports").arn().endswith(":rq-reports")


def test_a_missing_queue_is_a_storage_error_naming_it(sqs: Any) -> None:
    gone = Queue.create(sqs, "rq-gone")
    sqs.delete_queue(QueueUrl=gone.url)
    for call in (lambda: gone.send(["x"]), gone.receive, gone.arn):
        with pytest.raises(StorageError, match="rq-gone") as info:
            call()
        # SQS's own code, so no caller reads botocore's response.
        assert info.value.code is not None and "NonExistentQueue" in info.value.code


def test_messages_sqs_refuses_are_an_error_not_a_silent_loss(sqs: Any) -> None:
    queue = Queue.create(sqs, "rq-work")

    def refuse_one(**kwargs: Any) -> Any:
        entries = kwargs["Entries"]
        return {
            "Successful": [{"Id": e["Id"]} for e in entries[1:]],
            "Failed": [{"Id": entries[0]["Id"], "Code": "Throttled", "Message": "slow down"}],
        }

    sqs.send_message_batch = refuse_one
    with pytest.raises(StorageError, match=r"refused 1 message\(s\): slow down"):
        queue.send(["a", "b"])


def test_unknown_profile_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="'no-such-profile'"):
        make_sqs_client(profile="no-such-profile", region="us-east-1")


def test_a_custom_endpoint_without_region_uses_us_east_1(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    client = make_sqs_client(endpoint_url="http://127.0.0.1:9")
    assert client.meta.region_name == "us-east-1"
    assert client.meta.endpoint_url == "http://127.0.0.1:9"
