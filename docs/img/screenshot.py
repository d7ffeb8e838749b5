"""Regenerate the screenshots in docs/img/ of the live index (run from the repository root).

A BLS mirror of the real 2026-08-06 release (and DataUSA's population JSON) goes into moto's S3
server on 127.0.0.1; `start_server` serves it and Debian's chromium, driven by Playwright, takes
the pictures::

    .venv/bin/python docs/img/screenshot.py
"""

from __future__ import annotations

from pathlib import Path

from moto.server import ThreadedMotoServer
from playwright.sync_api import sync_playwright

from rearcquest.index import start_server
from rearcquest.offline import bundled_datausa, bundled_release, load_release
from rearcquest.aws.storage import ObjectStore, make_s3_client

OUT = Path(__file__).resolve().parent
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def main() -> None:
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    try:
        client = make_s3_client(endpoint_url=f"http://{host}:{port}", access_key=("docs", "docs"))
        store = ObjectStore(client, "my-bls-mirror")
        store.create_bucket()
        for name, served in sorted(load_release(bundled_release("2026-08-06")).items()):
            store.put_bytes("pr/" + name, served.data)
        store.put_bytes(
            "datausa/population.json", bundled_datausa("tesseract-acs1-2013-2023-raw.json")
        )
        with start_server(store) as server, sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS)
            page = browser.new_page(viewport={"width": 1000, "height": 640})
            page.goto(server.url + "pr/?sort=size&order=desc")
            page.screenshot(path=str(OUT / "serve-index.png"), full_page=True)
            page.fill("#q", "data")
            page.screenshot(path=str(OUT / "serve-index-filter.png"), full_page=True)
            browser.close()
    finally:
        moto.stop()


if __name__ == "__main__":
    main()
