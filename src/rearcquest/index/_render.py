"""Pure rendering of a bucket listing: entries, sorting, filtering, HTML and JSON. No I/O.

Every key is untrusted text: it is HTML-escaped wherever it appears (text and attributes) and
percent-encoded wherever it becomes a link, so a key holding ``<script>``, ``"``, ``&``, spaces,
``../`` or any unicode is shown as itself and links to itself. The page works without JavaScript
(the server sorts and filters); one small inline script, allowed by its hash in the
Content-Security-Policy, sorts and filters in place when JavaScript runs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import quote, urlencode

from rearcquest._sizes import human_size
from rearcquest.aws.storage import ObjectInfo
from rearcquest.layout import is_reserved

SortKey = Literal["name", "size", "modified"]
Order = Literal["asc", "desc"]
Mode = Literal["live", "static"]

SORT_KEYS: tuple[SortKey, ...] = ("name", "size", "modified")
MAX_FILTER_CHARS = 200
# Page tokens are S3 continuation tokens (opaque, a few hundred characters at most).
MAX_PAGE_TOKEN_CHARS = 2048

# Characters that can disguise a name: C0/C1 controls and the bidirectional overrides that can
# turn "gnp.exe" into what reads as "exe.png". They are shown as visible \uXXXX escapes.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_SUSPECT = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")

_CSS = """\
:root{color-scheme:light dark;--fg:#1b1f24;--muted:#57606a;--line:#d0d7de;--bg:#fff;--hl:#f6f8fa;--a:#0a58ca}
@media (prefers-color-scheme:dark){:root{--fg:#e6edf3;--muted:#8d96a0;--line:#30363d;--bg:#0d1117;--hl:#161b22;--a:#58a6ff}}
*{box-sizing:border-box}
body{margin:0 auto;max-width:72rem;padding:1rem 1.25rem 2rem;font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:var(--fg);background:var(--bg)}
h1{font-size:1.25rem;font-weight:600;margin:.25rem 0 1rem;overflow-wrap:anywhere}
a{color:var(--a);text-decoration:none}a:hover,a:focus{text-decoration:underline}
.crumbs a,.crumbs span{overflow-wrap:anywhere}
form.filter{display:flex;gap:.5rem;align-items:center;flex-wrap:wrap;margin:0 0 .75rem}
form.filter input[type=search]{flex:1 1 16rem;max-width:28rem;padding:.35rem .5rem;font:inherit;color:inherit;background:var(--bg);border:1px solid var(--line);border-radius:6px}
form.filter button{padding:.35rem .75rem;font:inherit;color:inherit;background:var(--hl);border:1px solid var(--line);border-radius:6px;cursor:pointer}
table{width:100%;border-collapse:collapse;table-layout:auto}
th,td{padding:.35rem .6rem;border-bottom:1px solid var(--line);text-align:left;vertical-align:top}
th{font-weight:600;white-space:nowrap;background:var(--hl);position:sticky;top:0}
th a,th button{color:inherit;font:inherit;background:none;border:0;padding:0;cursor:pointer}
th[aria-sort=ascending] .dir::after{content:" \\25B2"}th[aria-sort=descending] .dir::after{content:" \\25BC"}
td.name{overflow-wrap:anywhere;width:100%}td.size,th.size{text-align:right;white-space:nowrap}
td.modified{white-space:nowrap;color:var(--muted)}tr:hover td{background:var(--hl)}
td.name a::before,td.name span.bad::before{content:"";display:inline-block;width:1em;height:1em;margin-right:.45em;vertical-align:-.15em;background:no-repeat center/contain url("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Cpath fill='none' stroke='%238c959f' d='M3.5 1.5h6l3 3v10h-9z M9.5 1.5v3h3'/%3E%3C/svg%3E")}
tr.folder td.name a::before,tr.folder td.name span.bad::before{background-image:url("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Cpath fill='%23d4a72c' d='M1 3.5A1.5 1.5 0 0 1 2.5 2h3.6l1.5 1.5h5.9A1.5 1.5 0 0 1 15 5v7.5a1.5 1.5 0 0 1-1.5 1.5h-11A1.5 1.5 0 0 1 1 12.5z'/%3E%3C/svg%3E")}tr.up td.name a::before{background-image:url("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Cpath fill='none' stroke='%238c959f' stroke-width='1.5' d='M8 13V3M3.5 7.5 8 3l4.5 4.5'/%3E%3C/svg%3E")}
.esc{color:#cf222e;font-family:ui-monospace,monospace;font-size:.9em}.bad{color:var(--muted)}
footer{margin-top:1rem;color:var(--muted);font-size:.9rem}.empty{padding:1rem 0;color:var(--muted)}
nav.pages{display:flex;gap:1.5rem;margin:.75rem 0}
"""

_JS = """\
(function () {
  "use strict";
  var table = document.getElementById("listing");
  if (!table) { return; }
  var live = table.getAttribute("data-mode") === "live";
  var body = table.tBodies[0];
  var heads = table.tHead.rows[0].cells;
  var input = document.getElementById("q");
  var form = document.getElementById("filter");
  var shown = document.getElementById("shown");
  var empty = document.getElementById("empty");
  var sortKey = table.getAttribute("data-sort");
  var order = table.getAttribute("data-order");
  if (form) { form.hidden = false; }
  function rows(kind) { return Array.prototype.slice.call(body.querySelectorAll("tr." + kind)); }
  function value(row, key) {
    if (key === "size") { return Number(row.getAttribute("data-size")); }
    if (key === "modified") { return row.getAttribute("data-modified") || ""; }
    return row.getAttribute("data-name").toLowerCase();
  }
  function compare(a, b) {
    var x = value(a, sortKey), y = value(b, sortKey), r = x < y ? -1 : x > y ? 1 : 0;
    if (r === 0 && sortKey !== "name") {
      x = value(a, "name"); y = value(b, "name"); r = x < y ? -1 : x > y ? 1 : 0;
    }
    return order === "desc" ? -r : r;
  }
  function remember() {
    if (!live || !window.history || !window.URLSearchParams) { return; }
    var params = new URLSearchParams(window.location.search);
    params.set("sort", sortKey); params.set("order", order);
    if (input && input.value) { params.set("q", input.value); } else { params.delete("q"); }
    window.history.replaceState(null, "", "?" + params.toString());
    var json = document.getElementById("json");
    if (json) { params.set("format", "json"); json.setAttribute("href", "?" + params.toString()); }
    ["first", "next"].forEach(function (id) {
      var link = document.getElementById(id);
      if (!link) { return; }
      var own = new URLSearchParams(link.getAttribute("href").slice(1));
      own.set("sort", sortKey); own.set("order", order);
      if (input && input.value) { own.set("q", input.value); } else { own.delete("q"); }
      link.setAttribute("href", "?" + own.toString());
    });
    if (form) {
      form.elements.sort.value = sortKey; form.elements.order.value = order;
    }
  }
  function sort(key) {
    if (key === sortKey) { order = order === "asc" ? "desc" : "asc"; }
    else { sortKey = key; order = key === "name" ? "asc" : "desc"; }
    rows("file").sort(compare).forEach(function (row) { body.appendChild(row); });
    for (var i = 0; i < heads.length; i++) {
      var h = heads[i];
      if (h.getAttribute("data-key") === sortKey) {
        h.setAttribute("aria-sort", order === "asc" ? "ascending" : "descending");
      } else { h.removeAttribute("aria-sort"); }
    }
    remember();
  }
  function filter() {
    var q = input ? input.value.toLowerCase() : "", total = 0, visible = 0;
    rows("folder").concat(rows("file")).forEach(function (row) {
      var match = q === "" || row.getAttribute("data-name").toLowerCase().indexOf(q) !== -1;
      row.hidden = !match; total += 1; if (match) { visible += 1; }
    });
    if (shown) { shown.textContent = q === "" ? "" : "showing " + visible + " of " + total + " \\u00b7 "; }
    if (empty) { empty.hidden = visible !== 0 || total === 0; }
    remember();
  }
  for (var i = 0; i < heads.length; i++) {
    (function (h) {
      var control = h.querySelector("a,button");
      if (!control) { return; }
      control.addEventListener("click", function (event) {
        event.preventDefault(); sort(h.getAttribute("data-key"));
      });
    })(heads[i]);
  }
  if (input) { input.addEventListener("input", filter); }
  if (form) { form.addEventListener("submit", function (event) { event.preventDefault(); filter(); }); }
})();
"""


def _csp_hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return "'sha256-" + base64.b64encode(digest).decode() + "'"


_STYLE_HASH = _csp_hash(_CSS)
_SCRIPT_HASH = _csp_hash(_JS)

# The listing page may run only its own inline script and style (allowed by hash), load nothing
# and be framed by nobody; the filter form may only submit to this server.
PAGE_CSP = (
    f"default-src 'none'; script-src {_SCRIPT_HASH}; style-src {_STYLE_HASH}; img-src data:; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# A static page is opened from S3 or a presigned URL: the policy travels in a <meta> tag, where
# frame-ancestors is not honoured, and the filter form never submits.
STATIC_CSP = (
    f"default-src 'none'; script-src {_SCRIPT_HASH}; style-src {_STYLE_HASH}; img-src data:; "
    "form-action 'none'; base-uri 'none'"
)


@dataclass(frozen=True)
class Folder:
    """A common prefix shown as a folder.

    Attributes:
        name: the name shown, relative to the listed folder, ending with ``/``.
        path: the folder's path relative to the served prefix, ending with ``/``.
    """

    name: str
    path: str


@dataclass(frozen=True)
class File:
    """One object shown in a listing.

    Attributes:
        name: the name shown (relative to the listed folder, or to the prefix on a static page).
        path: the object's path relative to the served prefix.
        key: the full object key.
        size: the size in bytes.
        modified: S3's ``LastModified``.
        etag: the ETag without quotes.
    """

    name: str
    path: str
    key: str
    size: int
    modified: datetime | None
    etag: str


@dataclass(frozen=True)
class Listing:
    """What one page shows: the folders and files of one folder (or of a whole prefix).

    Attributes:
        bucket: the bucket name.
        root: the served prefix (``''`` or ending with ``/``).
        path: the listed folder relative to ``root`` (``''`` or ending with ``/``).
        folders: the sub-folders, in name order.
        files: the objects, in name order.
        generated: when the listing was read.
        page: the token of this page of a folder listed a page at a time (``''``: the first).
        next_page: the token of the next page, or ``None`` on the last (or only) page.
    """

    bucket: str
    root: str
    path: str
    folders: tuple[Folder, ...]
    files: tuple[File, ...]
    generated: datetime
    page: str = ""
    next_page: str | None = None

    @property
    def paged(self) -> bool:
        """Whether this is one page of a folder too big for one."""
        return bool(self.page) or self.next_page is not None

    @property
    def total_bytes(self) -> int:
        """The total size of the files."""
        return sum(f.size for f in self.files)


@dataclass(frozen=True)
class View:
    """How a listing is shown: sort column, direction, name filter, and which page.

    Sorting and filtering apply to the page shown (``page``, an S3 continuation token; ``''``
    for the first).
    """

    sort: SortKey = "name"
    order: Order = "asc"
    q: str = ""
    page: str = ""

    @classmethod
    def from_query(
        cls, sort: str | None, order: str | None, q: str | None, page: str | None = None
    ) -> View:
        """Build a view from query parameters, falling back to the defaults for bad values."""
        key: SortKey = sort if sort in SORT_KEYS else "name"
        default: Order = "asc" if key == "name" else "desc"
        direction: Order = order if order in ("asc", "desc") else default  # type: ignore[assignment]
        token = page or ""
        if len(token) > MAX_PAGE_TOKEN_CHARS or not token.isprintable():
            token = ""
        return cls(key, direction, (q or "").strip()[:MAX_FILTER_CHARS], token)

    def query(self, **changes: str) -> str:
        """The query string (with ``?``) of this view, with ``changes`` applied."""
        params = {"sort": self.sort, "order": self.order, "q": self.q, "page": self.page}
        params.update(changes)
        return "?" + urlencode({k: v for k, v in params.items() if v})


def build_listing(
    bucket: str,
    root: str,
    path: str,
    objects: Iterable[ObjectInfo],
    prefixes: Iterable[str],
    *,
    generated: datetime | None = None,
    exclude: Iterable[str] = (),
    page: str = "",
    next_page: str | None = None,
) -> Listing:
    """Turn one delimited listing of ``root + path`` into a :class:`Listing`.

    Args:
        bucket: the bucket name.
        root: the served prefix.
        path: the listed folder, relative to ``root``.
        objects: the objects ``ListObjectsV2`` returned (all pages).
        prefixes: the common prefixes it returned.
        generated: the time of the listing; default now.
        exclude: keys to leave out (e.g. the static index itself).
        page: the continuation token this page was listed with (``''``: the first page).
        next_page: the continuation token of the next page, if the folder has more.

    Returns:
        The listing with folders and files in name order; the folder's own marker object
        (a key equal to the folder) and rq's own objects (:func:`rearcquest.layout.is_reserved`:
        the ``.rearcquest/`` folder, the legacy sync state) are left out.
    """
    base = root + path
    skip = set(exclude)
    folders = sorted(
        (
            Folder(p[len(base) :], p[len(root) :])
            for p in set(prefixes)
            if p.startswith(base) and not is_reserved(p)
        ),
        key=lambda f: _name_key(f.name),
    )
    files = sorted(
        (
            File(
                name=o.key[len(base) :],
                path=o.key[len(root) :],
                key=o.key,
                size=o.size,
                modified=o.last_modified,
                etag=o.etag,
            )
            for o in objects
            if o.key.startswith(base)
            and o.key != base
            and o.key not in skip
            and not is_reserved(o.key)
        ),
        key=lambda f: _name_key(f.name),
    )
    return Listing(
        bucket=bucket,
        root=root,
        path=path,
        folders=tuple(folders),
        files=tuple(files),
        generated=generated or datetime.now(UTC),
        page=page,
        next_page=next_page,
    )


def _name_key(name: str) -> tuple[str, str]:
    return (name.casefold(), name)


def _epoch(value: datetime | None) -> float:
    return value.timestamp() if value is not None else float("-inf")


def sort_files(files: Sequence[File], view: View) -> list[File]:
    """Return ``files`` in the view's order; ties are broken by name."""
    if view.sort == "size":
        result = sorted(files, key=lambda f: (f.size, _name_key(f.name)))
    elif view.sort == "modified":
        result = sorted(files, key=lambda f: (_epoch(f.modified), _name_key(f.name)))
    else:
        result = sorted(files, key=lambda f: _name_key(f.name))
    if view.order == "desc":
        result.reverse()
    return result


def matches(name: str, q: str) -> bool:
    """Tell whether ``name`` contains ``q``, ignoring case."""
    return not q or q.casefold() in name.casefold()


def iso_time(value: datetime | None) -> str:
    """Return ``value`` as an ISO 8601 UTC time (``2026-08-06T08:30:00Z``), or ``''``."""
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def href_path(path: str) -> str:
    """Percent-encode a path relative to the served prefix into a root-relative URL path.

    Every character but ``/`` and the unreserved ones is encoded, so ``?``, ``#``, ``%``, ``"``
    and spaces stay part of the name; a leading ``/`` (a key with an empty first segment) is
    encoded as ``%2F`` so the link can never read as ``//host`` (another site).
    """
    encoded = quote(path, safe="/")
    if encoded.startswith("/"):
        encoded = "%2F" + encoded[1:]
    return "/" + encoded


def relative_href(from_dir: str, key: str) -> str:
    """Return a relative link from a page in folder ``from_dir`` to the object ``key``.

    Args:
        from_dir: the folder of the page (``''`` or ending with ``/``).
        key: the object key.

    Returns:
        ``./name``-style or ``../``-style relative URL; it always starts with ``./`` or ``../``
        so it can never read as a scheme (``javascript:``) or a host (``//host``).
    """
    here = from_dir.split("/")[:-1] if from_dir else []
    there = key.split("/")
    common = 0
    while common < len(here) and common < len(there) - 1 and here[common] == there[common]:
        common += 1
    up = len(here) - common
    rest = "/".join(quote(segment, safe="") for segment in there[common:])
    return "../" * up + rest if up else "./" + rest


def display_name(name: str) -> str:
    """Return the HTML for a name: escaped, with controls and bidi overrides made visible."""
    if _SUSPECT.search(name) is None:
        return html.escape(name)
    parts = []
    for char in name:
        if _plain(char):
            parts.append(html.escape(char))
        else:
            parts.append(f'<span class="esc">\\u{ord(char):04x}</span>')
    return "".join(parts)


def _plain(char: str) -> bool:
    return char not in _BIDI and unicodedata.category(char) != "Cc"


def _attr(value: str) -> str:
    return html.escape(value, quote=True)


def listing_document(
    listing: Listing, view: View, *, href: Callable[[str], str | None]
) -> dict[str, Any]:
    """Return the JSON listing: the folders and files that match the view, in its order.

    Args:
        listing: the listing.
        view: sort and filter.
        href: turns a path relative to the served prefix into its URL, or ``None`` for a key
            that cannot be served safely.

    Returns:
        A JSON-serialisable dict. A folder listed a page at a time has ``next`` (the URL of
        the next page's JSON, ``null`` on the last) and ``next_page`` (its token).
    """
    folders = [f for f in listing.folders if matches(f.name, view.q)]
    files = [f for f in sort_files(listing.files, view) if matches(f.name, view.q)]
    next_url = None
    if listing.next_page is not None:
        next_url = (href(listing.path) or "") + view.query(page=listing.next_page, format="json")
    return {
        "bucket": listing.bucket,
        "prefix": listing.root,
        "path": listing.path,
        "url": f"s3://{listing.bucket}/{listing.root}{listing.path}",
        "generated": iso_time(listing.generated),
        "sort": view.sort,
        "order": view.order,
        "q": view.q,
        "folders": [{"name": f.name, "path": f.path, "href": href(f.path)} for f in folders],
        "objects": [
            {
                "name": f.name,
                "path": f.path,
                "key": f.key,
                "size": f.size,
                "last_modified": iso_time(f.modified) or None,
                "etag": f.etag,
                "href": href(f.path),
            }
            for f in files
        ],
        "count": {"folders": len(folders), "objects": len(files)},
        "total_bytes": sum(f.size for f in files),
        "page": listing.page or None,
        "next_page": listing.next_page,
        "next": next_url,
    }


def _crumbs(listing: Listing, href: Callable[[str], str], mode: Mode) -> str:
    root_label = f"s3://{listing.bucket}/{listing.root}"
    if mode == "static":
        return f"<span>{display_name(root_label)}</span>"
    parts = [f'<a href="{_attr(href(""))}">{display_name(root_label)}</a>']
    so_far = ""
    segments = listing.path.split("/")[:-1] if listing.path else []
    for i, segment in enumerate(segments):
        so_far += segment + "/"
        label = display_name(segment + "/")
        if i == len(segments) - 1:
            parts.append(f'<span aria-current="page">{label}</span>')
        else:
            parts.append(f'<a href="{_attr(href(so_far))}">{label}</a>')
    return "".join(parts)


def _header(label: str, key: SortKey, view: View, mode: Mode) -> str:
    css = ' class="size"' if key == "size" else ""
    sort = ""
    if view.sort == key:
        sort = ' aria-sort="ascending"' if view.order == "asc" else ' aria-sort="descending"'
    if mode == "live":
        if view.sort == key:
            next_order = "desc" if view.order == "asc" else "asc"
        else:
            next_order = "asc" if key == "name" else "desc"
        link = _attr(view.query(sort=key, order=next_order))
        control = f'<a href="{link}">{label}<span class="dir"></span></a>'
    else:
        control = f'<button type="button">{label}<span class="dir"></span></button>'
    return f'<th scope="col" data-key="{key}"{css}{sort}>{control}</th>'


def _unlinked(name_html: str) -> str:
    return f'<span class="bad" title="this name cannot be served safely">{name_html}</span>'


def _file_row(file: File, link: str | None, hidden: bool) -> str:
    when = iso_time(file.modified)
    shown = when[:16].replace("T", " ") if when else ""
    time_html = f'<time datetime="{when}">{shown} UTC</time>' if when else ""
    name_html = display_name(file.name)
    cell = (
        f'<a href="{_attr(link)}" download>{name_html}</a>'
        if link is not None
        else _unlinked(name_html)
    )
    return (
        f'<tr class="file" data-name="{_attr(file.name)}" data-size="{file.size}" '
        f'data-modified="{when}"{" hidden" if hidden else ""}>'
        f'<td class="name">{cell}</td>'
        f'<td class="size" title="{file.size:,} bytes">{human_size(file.size)}</td>'
        f'<td class="modified">{time_html}</td></tr>'
    )


def render_page(
    listing: Listing,
    view: View,
    *,
    href: Callable[[str], str | None],
    mode: Mode = "live",
    json_href: str | None = None,
) -> str:
    """Render a listing as a complete, self-contained HTML page.

    Args:
        listing: what to show.
        view: sort column, order, filter and page; rows not matching the filter carry
            ``hidden``. A folder listed a page at a time gets links to its first and next page.
        href: turns a path relative to the served prefix into its (already encoded) URL, or
            ``None`` for a key that cannot be served safely (shown without a link).
        mode: ``live`` (served: sort links, filter form, folder navigation) or ``static``
            (written into the bucket: controls work with JavaScript, CSP in a ``<meta>``).
        json_href: link to the JSON listing, if any.

    Returns:
        The HTML document.
    """
    here = f"s3://{listing.bucket}/{listing.root}{listing.path}"
    rows: list[str] = []
    if mode == "live" and listing.path:
        parent = listing.path[:-1].rpartition("/")[0]
        parent = parent + "/" if parent else ""
        up = href(parent) or ""
        rows.append(
            f'<tr class="up"><td class="name"><a href="{_attr(up)}">../</a></td>'
            '<td class="size"></td><td class="modified">parent folder</td></tr>'
        )
    shown = 0
    for folder in listing.folders:
        link = href(folder.path)
        hidden = not matches(folder.name, view.q)
        shown += not hidden
        name_html = display_name(folder.name)
        cell = f'<a href="{_attr(link)}">{name_html}</a>' if link else _unlinked(name_html)
        rows.append(
            f'<tr class="folder" data-name="{_attr(folder.name)}"{" hidden" if hidden else ""}>'
            f'<td class="name">{cell}</td><td class="size">\u2014</td><td class="modified"></td></tr>'
        )
    for file in sort_files(listing.files, view):
        hidden = not matches(file.name, view.q)
        shown += not hidden
        rows.append(_file_row(file, href(file.path), hidden))
    total = len(listing.folders) + len(listing.files)
    meta_csp = (
        f'<meta http-equiv="Content-Security-Policy" content="{_attr(STATIC_CSP)}">\n'
        if mode == "static"
        else ""
    )
    form_hidden = " hidden" if mode == "static" else ""
    page_input = (
        f'<input type="hidden" name="page" value="{_attr(view.page)}">' if view.page else ""
    )
    pager = _pager(listing, view) if mode == "live" else ""
    showing = f"showing {shown} of {total} \u00b7 " if view.q else ""
    folders_text = f"{len(listing.folders)} folder{'s' if len(listing.folders) != 1 else ''}, "
    summary = (
        ("this page: " if listing.paged else "") + f'<span id="shown">{html.escape(showing)}</span>'
        f"{folders_text if mode == 'live' else ''}"
        f"{len(listing.files)} file{'s' if len(listing.files) != 1 else ''} "
        f'(<span title="{listing.total_bytes:,} bytes">{human_size(listing.total_bytes)}</span>)'
        f" \u00b7 listed {iso_time(listing.generated).replace('T', ' ').replace('Z', ' UTC')}"
    )
    if json_href:
        summary += f' \u00b7 <a id="json" href="{_attr(json_href)}">JSON</a>'
    q_attr = _attr(view.q)
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{meta_csp}<meta name="referrer" content="no-referrer">
<title>Index of {html.escape(here)}</title>
<link rel="icon" href="data:,">
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>Index of <span class="crumbs">{_crumbs(listing, href_or_empty(href), mode)}</span></h1>
<form id="filter" class="filter" method="get" role="search"{form_hidden}>
<input type="hidden" name="sort" value="{view.sort}"><input type="hidden" name="order" value="{view.order}">{page_input}
<label for="q">Filter</label>
<input id="q" name="q" type="search" value="{q_attr}" placeholder="part of a name" autocomplete="off" maxlength="{MAX_FILTER_CHARS}">
<button type="submit">Filter</button>
</form>
</header>
<main>
<table id="listing" data-mode="{mode}" data-sort="{view.sort}" data-order="{view.order}">
<thead><tr>{_header("Name", "name", view, mode)}{_header("Size", "size", view, mode)}{_header("Last modified", "modified", view, mode)}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody>
</table>
<p id="empty" class="empty"{"" if total and not shown else " hidden"}>No name matches the filter.</p>
{'<p class="empty">This folder is empty.</p>' if not total else ""}
{pager}</main>
<footer><p>{summary}</p></footer>
<script>{_JS}</script>
</body>
</html>
"""


def _pager(listing: Listing, view: View) -> str:
    """Links to the first and the next page of a folder listed a page at a time."""
    if not listing.paged:
        return ""
    links = []
    if listing.page:
        links.append(f'<a id="first" href="{_attr(view.query(page=""))}">\u2190 First page</a>')
    if listing.next_page is not None:
        href = _attr(view.query(page=listing.next_page))
        links.append(f'<a id="next" rel="next" href="{href}">Next page \u2192</a>')
    note = "sorting and the filter apply to this page"
    return f'<nav class="pages" aria-label="Pages">{"".join(links)}<span>{note}</span></nav>\n'


def href_or_empty(href: Callable[[str], str | None]) -> Callable[[str], str]:
    """Wrap ``href`` so that a path without a link gives ``''``."""
    return lambda path: href(path) or ""
