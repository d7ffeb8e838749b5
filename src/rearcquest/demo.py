"""``rq demo``: the whole job offline, on real data, against embedded servers.

Starts the BLS-like server (real releases and DataUSA answers shipped with the package) and, unless
an endpoint is given, an embedded S3 and SQS server (moto). Then, as the AWS pipeline would:

1. syncs one BLS release, switches the server to a newer release and syncs again, then once more
   to show that nothing is fetched when nothing changed;
2. wires the population key to a queue (the S3 notification), fetches the population (an S3
   event) and fetches it again (unchanged: nothing written, no event);
3. drains the queue into the report function, as Lambda's SQS event source would (the same
   :func:`rearcquest.jobs.events.process_report_batch` as the report Lambda);
4. computes the three reports from the bucket.

Steps are reported through ``on_step(title, payload)``; the caller renders them. Everything is
stopped on return, unless ``keep_running`` is given: then it is called with the store and the
BLS-like server while they still run (``rq demo --serve``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from rearcquest.aws.storage import ObjectStore, S3Access, make_s3_client
from rearcquest.config import DEFAULT_POPULATION_KEY, DEMO_BUCKET, Settings
from rearcquest.offline import (
    OfflineServer,
    add_datausa_routes,
    bundled_release,
    embedded_s3,
    load_release,
)

if TYPE_CHECKING:
    from rearcquest.config import RetryPolicy

log = logging.getLogger(__name__)

DEMO_CONTACT = "rq-demo@example.com"
POPULATION_KEY = DEFAULT_POPULATION_KEY
StepCallback = Callable[[str, Any], None]


def _where_the_report_log_goes() -> str:
    """Where the report function's log lines went, and how to see them when they are off."""
    if logging.getLogger("rearcquest.lambdas").isEnabledFor(logging.INFO):
        return "the reports went to the log, on stderr"
    return "the reports went to the log: `rq -v demo 2>demo.log` saves it, one JSON object a line"


@contextmanager
def _endpoint(endpoint_url: str | None) -> Iterator[tuple[str, tuple[str, str] | None]]:
    if endpoint_url:
        yield endpoint_url, None
        return
    with embedded_s3() as url:
        yield url, ("rq-demo", "rq-demo")


def run_demo(
    *,
    bucket: str = DEMO_BUCKET,
    endpoint_url: str | None = None,
    on_step: StepCallback,
    keep_running: Callable[[ObjectStore, OfflineServer], None] | None = None,
    serve_port: int | None = None,
    retry: RetryPolicy | None = None,
) -> None:
    """Run the offline demo.

    Args:
        bucket: the bucket to use (created if missing).
        endpoint_url: an S3-compatible endpoint with SQS (moto); default an embedded one.
        on_step: called with a title and a payload (a result object, text, or ``None``).
        keep_running: called last, with everything still running (e.g. to serve the index).
        serve_port: then serve the index page of the bucket on this port (0: a free one) until
            Ctrl-C, announced as a last step.
        retry: the retry policy for the local sources.

    Raises:
        ConfigError: ``serve_port`` is taken (before the demo runs).
        RqError: a step failed.
    """
    from rearcquest.aws.queues import Queue, make_sqs_client
    from rearcquest.config import BLS_FILE, SyncOptions
    from rearcquest.data.analytics import ReportInputs, analyze
    from rearcquest.jobs.events import process_report_batch
    from rearcquest.jobs.job import run_survey
    from rearcquest.localaws import drain_queue, notify_queue_on_key
    from rearcquest.mirror.population import fetch_population

    listening = None
    if serve_port is not None:
        from rearcquest.index import listen

        # The page's port first: one that is taken is refused before the demo runs.
        listening = listen(port=serve_port)
    old, new = (load_release(bundled_release(v)) for v in ("2024-06-06", "2026-08-06"))
    with (
        closing(listening) if listening is not None else nullcontext(),
        _endpoint(endpoint_url) as (url, keys),
        OfflineServer(old) as bls,
    ):
        s3 = S3Access(client=make_s3_client(endpoint_url=url, access_key=keys))
        store = s3.store(bucket)
        store.create_bucket()
        on_step(f"S3 endpoint {url}, bucket {bucket}; BLS-like server {bls.bls_url}", None)

        def sync() -> Any:
            options = SyncOptions(source_url=bls.bls_url, contact=DEMO_CONTACT, retry=retry)
            return run_survey(store, options)

        on_step("Sync the BLS release of 2024-06-06 (first sync: every file is new)", sync())
        bls.set_files(new)
        on_step("The server now has the release of 2026-08-06: sync again", sync())
        before = len(bls.requests)
        result = sync()
        on_step(
            f"Sync once more: nothing changed, {len(bls.requests) - before} request "
            "(the listing), no file downloaded",
            result,
        )

        sqs = make_sqs_client(endpoint_url=url, region="us-east-1", access_key=keys)
        queue = Queue.create(sqs, "rq-demo-reports")
        notify_queue_on_key(store, queue, key=POPULATION_KEY)
        urls = add_datausa_routes(bls)
        on_step(
            "Fetch the US population from the DataUSA-like API (tesseract shape); "
            f"{POPULATION_KEY} notifies the report queue",
            fetch_population(store, key=POPULATION_KEY, url=urls["tesseract"], retry=retry),
        )
        on_step(
            "Fetch it again: the same data (canonical sha256), nothing written, no event",
            fetch_population(store, key=POPULATION_KEY, url=urls["tesseract"], retry=retry),
        )

        settings = Settings(bls_bucket=bucket, population_bucket=bucket)
        messages: list[dict[str, Any]] = []

        def report_function(event: dict[str, Any]) -> dict[str, Any]:
            messages.extend(event["Records"])
            return process_report_batch(event, settings=settings, s3=s3)

        failures = [f for r in drain_queue(queue, report_function) for f in r["batchItemFailures"]]
        on_step(
            "Drain the queue into the report function, as Lambda would",
            f"{len(messages)} message(s) (the first is S3's s3:TestEvent, skipped); "
            f"{len(failures)} failed; {_where_the_report_log_goes()}",
        )
        on_step(
            "The three reports, from the bucket",
            analyze(
                ReportInputs(
                    bls=f"s3://{bucket}/pr/{BLS_FILE}", population=f"s3://{bucket}/{POPULATION_KEY}"
                ),
                s3=s3,
                settings=settings,
            ),
        )
        if keep_running is not None:
            keep_running(store, bls)
        if serve_port is not None:
            from rearcquest.index import serve

            def ready(url: str) -> None:
                on_step(f"Browse the demo bucket at {url} (Ctrl-C to stop)", None)

            serve(store, on_ready=ready, listening=listening)
