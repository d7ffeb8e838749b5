"""The index in a real browser: Chromium driven by Playwright sorts, filters, navigates into a
folder and downloads a file; the live page also works with JavaScript off, and the static page
works from a presigned URL. Screenshots go to test-artifacts/ (git-ignored).

The browser is a system Chromium when there is one (Debian's ``chromium``...), else Playwright's
own, installed into its cache by ``python -m playwright install chromium`` if missing; with
neither, the tests fail with one line that says what to install. They never skip.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import BLS_RELEASES, REPO
from rearcquest.aws.storage import ObjectStore, make_s3_client
from rearcquest.index import _app, start_server, write_static_index

pytestmark = pytest.mark.integration

SYSTEM_CHROMIUMS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
NO_CHROMIUM = (
    "no Chromium for the browser tests: install one with `apt-get install chromium` "
    "or `python -m playwright install chromium`"
)
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = REPO / "test-artifacts"
CURRENT, EARLIER = "2026-08-06", "2024-06-06"


def release_files(vintage: str) -> dict[str, bytes]:
    return {
        p.name: p.read_bytes()
        for p in sorted((BLS_RELEASES / vintage).iterdir())
        if p.name != "listing.html"
    }


@pytest.fixture(scope="module")
def store(moto_server: str) -> ObjectStore:
    """A mirror of the current release under pr/, with an earlier release in a sub-folder."""
    client = make_s3_client(endpoint_url=moto_server, access_key=("testing", "testing"))
    store = ObjectStore(client, "browser-" + uuid.uuid4().hex[:12])
    store.create_bucket()
    for name, body in release_files(CURRENT).items():
        store.put_bytes("pr/" + name, body)
    for name, body in release_files(EARLIER).items():
        store.put_bytes(f"pr/releases/{EARLIER}/{name}", body)
    store.put_bytes('pr/notes <draft> & "final".txt', b"hostile but harmless")
    return store


def system_chromium() -> str | None:
    """The first Chromium (or Chrome) on PATH, or None."""
    for name in SYSTEM_CHROMIUMS:
        if found := shutil.which(name):
            return found
    return None


def install_playwright_chromium() -> bool:
    """Run ``python -m playwright install chromium`` (Playwright's cache); True when it worked."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "playwright", "install", "chromium"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=900,
        )
    except subprocess.TimeoutExpired:
        return False
    return proc.returncode == 0


def launch_chromium(
    playwright: Any, install: Callable[[], bool] = install_playwright_chromium
) -> Any:
    """Launch a system Chromium, else Playwright's own (installed first if missing).

    Fails the test with :data:`NO_CHROMIUM`, one line, when neither can be had.
    """
    from playwright.sync_api import Error

    system = system_chromium()
    if system is not None:
        return playwright.chromium.launch(executable_path=system, args=CHROMIUM_ARGS)
    for attempt in ("installed", "after install"):
        try:
            return playwright.chromium.launch(args=CHROMIUM_ARGS)
        except Error as exc:
            if "Executable doesn't exist" not in str(exc):
                raise
        if attempt == "after install" or not install():
            break
    pytest.fail(NO_CHROMIUM, pytrace=False)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def server_url(store: ObjectStore) -> Iterator[str]:
    with start_server(store, prefix="pr/") as server:
        yield server.url


def _file_names(page: Any) -> list[str]:
    rows = page.locator("tbody tr.file:not([hidden])")
    return [str(n) for n in rows.evaluate_all("rows => rows.map(r => r.dataset.name)")]


def _problems(page: Any) -> list[str]:
    """Console errors (a CSP violation is one) and page errors, collected as they happen."""
    found: list[str] = []
    page.on("console", lambda m: found.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: found.append(str(e)))
    return found


def test_sort_filter_navigate_and_download(browser: Any, server_url: str, tmp_path: Path) -> None:
    context = browser.new_context(accept_downloads=True, viewport={"width": 1100, "height": 760})
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems = _problems(page)
    try:
        page.goto(server_url)
        assert page.title() == f"Index of s3://{_bucket(page)}/pr/"
        names = _file_names(page)
        assert len(names) == 13 and names[0] == 'notes <draft> & "final".txt'
        assert page.locator("tbody tr.folder").count() == 1

        # Sort by size: largest first, then smallest first; the URL remembers it.
        page.click("th[data-key=size] a")
        assert _file_names(page)[0] == "pr.data.1.AllData"
        assert page.locator("th[data-key=size]").get_attribute("aria-sort") == "descending"
        assert "sort=size" in page.url and "order=desc" in page.url
        page.click("th[data-key=size] a")
        assert _file_names(page)[:2] == ['notes <draft> & "final".txt', "pr.footnote"]
        page.click("th[data-key=modified] a")
        assert page.locator("th[data-key=modified]").get_attribute("aria-sort") == "descending"

        # Filter as you type.
        page.fill("#q", "DATA")
        assert sorted(_file_names(page)) == ["pr.data.0.Current", "pr.data.1.AllData"]
        assert page.locator("tbody tr.folder:not([hidden])").count() == 0
        assert "showing 2 of 14" in page.inner_text("footer")
        json_href = str(page.get_attribute("#json", "href"))
        assert "q=DATA" in json_href and "format=json" in json_href
        page.click("th[data-key=name] a")
        ARTIFACTS.mkdir(exist_ok=True)
        page.fill("#q", "")
        page.click("th[data-key=name] a")  # name descending ...
        page.click("th[data-key=name] a")  # ... and back to ascending
        page.screenshot(path=str(ARTIFACTS / "serve-index.png"), full_page=True)

        # Into a folder, and a download whose bytes are checked.
        page.click("text=releases/")
        page.click(f"text={EARLIER}/")
        assert page.url.endswith(f"/releases/{EARLIER}/")
        assert page.locator('[aria-current="page"]').inner_text() == f"{EARLIER}/"
        assert len(_file_names(page)) == 12
        page.screenshot(path=str(ARTIFACTS / "serve-index-folder.png"), full_page=True)
        with page.expect_download() as info:
            page.click("a[href$='/pr.series']")
        download = info.value
        assert download.suggested_filename == "pr.series"
        saved = tmp_path / "pr.series"
        download.save_as(saved)
        assert saved.read_bytes() == release_files(EARLIER)["pr.series"]

        # Back up through the parent link.
        page.click("tr.up a")
        assert page.url.endswith("/releases/")
        assert problems == []
    finally:
        context.close()


def _bucket(page: Any) -> str:
    return str(page.locator("h1 .crumbs a").first.inner_text()).split("/")[2]


def test_works_without_javascript(browser: Any, server_url: str) -> None:
    context = browser.new_context(java_script_enabled=False)
    context.set_default_timeout(10_000)
    page = context.new_page()
    try:
        page.goto(server_url)
        # Each click loads a new page: wait for it to load before reading it (the URL changes
        # when the navigation commits, before the new rows are there).
        with page.expect_navigation():
            page.click("th[data-key=size] a")  # a plain link: the server sorts
        assert "sort=size&order=desc" in page.url
        assert _file_names(page)[0] == "pr.data.1.AllData"
        page.fill("#q", "series")
        with page.expect_navigation():
            page.click("form#filter button")  # a plain GET form: the server filters
        assert "q=series" in page.url
        assert _file_names(page) == ["pr.series"]
        assert page.locator("a[href='/pr.series']").count() == 1
    finally:
        context.close()


def test_static_page_from_a_presigned_url(browser: Any, store: ObjectStore) -> None:
    written = write_static_index(store, "pr/", "pr/index.html", presign_seconds=600)
    assert written.share_url is not None
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems = _problems(page)
    try:
        page.goto(written.share_url)
        assert page.locator("#filter").is_visible()  # shown by the script, which the CSP allows
        names = _file_names(page)
        assert f"releases/{EARLIER}/pr.class" in names and "index.html" not in names
        page.click("th[data-key=size] button")
        assert _file_names(page)[0] == "pr.data.1.AllData"
        page.fill("#q", f"{EARLIER}/pr.data")
        assert len(_file_names(page)) == 2
        href = page.locator(f"tr.file[data-name='releases/{EARLIER}/pr.class'] a")
        assert "X-Amz-Signature=" in str(href.get_attribute("href"))
        assert problems == []
    finally:
        context.close()


def test_pages_of_a_big_folder(
    browser: Any, store: ObjectStore, server_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Pages of 5 rows stand for pages of 1,000: the same links, without 1,000 uploads.
    monkeypatch.setattr(_app, "PAGE_SIZE", 5)
    context = browser.new_context()
    context.set_default_timeout(10_000)
    page = context.new_page()
    problems = _problems(page)
    try:
        page.goto(server_url)
        first = _file_names(page)
        assert len(first) == 5 and page.locator("#first").count() == 0
        assert "this page:" in page.inner_text("footer")
        # Sorting in the page carries over to the next page's link.
        page.click("th[data-key=size] a")
        assert "sort=size" in str(page.get_attribute("#next", "href"))
        page.click("#next")
        assert "page=" in page.url and "sort=size" in page.url
        second = _file_names(page)
        assert len(second) == 5 and not set(second) & set(first)
        sizes = page.locator("tbody tr.file").evaluate_all(
            "rows => rows.map(r => Number(r.dataset.size))"
        )
        assert sizes == sorted(sizes, reverse=True)  # sorted within this page
        # The filter applies to this page, and keeps it.
        page.fill("#q", "pr.")
        assert set(_file_names(page)) <= set(second)
        page.fill("#q", "")
        seen, folders = first + second, []
        for _ in range(10):
            if page.locator("#next").count() == 0:
                break
            page.click("#next")
            seen += _file_names(page)
            folders += page.locator("tbody tr.folder").evaluate_all(
                "rows => rows.map(r => r.dataset.name)"
            )
        # Every file once (the static test may have added pr/index.html to the shared bucket).
        top = [o.key.removeprefix("pr/") for o in store.list_objects("pr/")]
        assert sorted(seen) == sorted(name for name in top if "/" not in name)
        assert folders == ["releases/"]
        page.click("#first")
        assert "page=" not in page.url and "sort=size" in page.url
        assert set(_file_names(page)) == set(first)
        assert problems == []
    finally:
        context.close()


# -- finding a browser ------------------------------------------------------------------------------


class _NoBrowserInstalled:
    """Stands in for ``playwright.chromium``: nothing installed, like a fresh Playwright cache."""

    def __init__(self) -> None:
        self.launches: list[dict[str, Any]] = []

    def launch(self, **kwargs: Any) -> Any:
        from playwright.sync_api import Error

        self.launches.append(kwargs)
        raise Error(
            "BrowserType.launch: Executable doesn't exist at /nowhere/chrome-headless-shell"
        )


def _playwright_without_browsers() -> Any:
    class Playwright:
        chromium = _NoBrowserInstalled()

    return Playwright()


def test_a_system_chromium_on_path_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "chromium-browser"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert system_chromium() == str(fake)

    class Recording:
        def launch(self, **kwargs: Any) -> dict[str, Any]:
            return kwargs

    class Playwright:
        chromium = Recording()

    launched = launch_chromium(Playwright(), install=lambda: pytest.fail("must not install"))
    assert launched["executable_path"] == str(fake)


def test_no_chromium_anywhere_fails_with_one_line_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty folder: no system Chromium
    assert system_chromium() is None
    installs: list[bool] = []
    playwright = _playwright_without_browsers()
    with pytest.raises(pytest.fail.Exception) as failed:
        launch_chromium(playwright, install=lambda: installs.append(False) or False)
    assert installs == [False], "Playwright's own Chromium is tried before failing"
    message = str(failed.value)
    assert message == NO_CHROMIUM and "\n" not in message
    assert "apt-get install chromium" in message
    assert "python -m playwright install chromium" in message
    assert not failed.value.pytrace


def test_playwrights_chromium_is_launched_once_installed(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    playwright = _playwright_without_browsers()
    installed = object()

    def install() -> bool:
        playwright.chromium.launch = lambda **kwargs: installed
        return True

    assert launch_chromium(playwright, install=install) is installed
