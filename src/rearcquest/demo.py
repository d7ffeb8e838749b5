"""``rq demo``: the whole job offline, on real data, against embedded servers.

Starts the BLS-like server (real releases shipped with the package) and, unless an endpoint is
given, an embedded S3 server; syncs one release, switches to a newer one and syncs again, then
syncs once more to show that nothing is fetched when nothing changed. Steps are reported through
``on_step(title, payload)``; the caller renders them. Everything is stopped on return.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rearcquest.offline import (
    OfflineServer,
    add_datausa_routes,
    bundled_release,
    embedded_s3,
    load_release,
)
from rearcquest.population import fetch_population
from rearcquest.storage import ObjectStore, make_s3_client
from rearcquest.sync import sync_bls

log = logging.getLogger(__name__)

DEMO_CONTACT = "rq-demo@example.com"
StepCallback = Callable[[str, Any], None]


@contextmanager
def _endpoint(endpoint_url: str | None) -> Iterator[tuple[str, tuple[str, str] | None]]:
    if endpoint_url:
        yield endpoint_url, None
        return
    with embedded_s3() as url:
        yield url, ("rq-demo", "rq-demo")


def run_demo(
    *, bucket: str = "rq-demo", endpoint_url: str | None = None, on_step: StepCallback
) -> None:
    """Run the offline demo.

    Args:
        bucket: the bucket to use (created if missing).
        endpoint_url: an S3-compatible endpoint; default an embedded moto server.
        on_step: called with a title and a payload (a result object, text, or ``None``).

    Raises:
        RqError: a step failed.
    """
    old, new = (load_release(bundled_release(v)) for v in ("2024-06-06", "2026-08-06"))
    with _endpoint(endpoint_url) as (url, keys), OfflineServer(old) as bls:
        store = ObjectStore(make_s3_client(endpoint_url=url, access_key=keys), bucket)
        store.create_bucket()
        on_step(f"S3 endpoint {url}, bucket {bucket}; BLS-like server {bls.bls_url}", None)

        def sync() -> Any:
            return sync_bls(store, source_url=bls.bls_url, contact=DEMO_CONTACT)

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
        urls = add_datausa_routes(bls)
        on_step(
            "Fetch the US population from the DataUSA-like API (tesseract shape)",
            fetch_population(store, url=urls["tesseract"]),
        )
        on_step(
            "Fetch it again: the same data (canonical sha256), nothing written",
            fetch_population(store, url=urls["tesseract"]),
        )
