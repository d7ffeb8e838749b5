"""``rearcquest.index._http``: keys from paths, ranges, conditional requests, content headers
(pure)."""

from __future__ import annotations

import pytest

from rearcquest.index import _http

from .helpers import T0


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../secret",
        "a/../../other-bucket/x",
        "./a",
        "a/./b",
        "a\\..\\b",
        "nul\x00",
        "cr\r\nx",
        "x" * 1100,
    ],
    ids=[
        "dotdot",
        "dotdot-first",
        "dotdot-deep",
        "dot",
        "dot-middle",
        "backslash",
        "nul",
        "crlf",
        "too-long",
    ],
)
def test_check_path_refuses_traversal(path: str) -> None:
    with pytest.raises(_http.UnsafePath):
        _http.check_path(path, "pr/")


@pytest.mark.parametrize(
    "path",
    ["a.txt", "...", "..a", "a..", "sub/x", "", "a//b", "ünï"],
    ids=[
        "plain",
        "three-dots",
        "dotdot-prefix",
        "dotdot-suffix",
        "nested",
        "root",
        "empty-seg",
        "unicode",
    ],
)
def test_check_path_keeps_the_prefix(path: str) -> None:
    assert _http.check_path(path, "pr/") == "pr/" + path


@pytest.mark.parametrize(
    ("header", "size", "expected"),
    [
        (None, 10, None),
        ("bytes=0-0", 10, (0, 0)),
        ("bytes=2-4", 10, (2, 4)),
        ("bytes=5-", 10, (5, 9)),
        ("bytes=-3", 10, (7, 9)),
        ("bytes=-30", 10, (0, 9)),
        ("bytes=8-100", 10, (8, 9)),
        ("bytes=9-9", 10, (9, 9)),
        ("BYTES = 1 - 2", 10, (1, 2)),
        ("bytes=0-1,4-5", 10, None),
        ("items=0-1", 10, None),
        ("bytes=4-2", 10, None),
        ("bytes=-", 10, None),
        ("bytes=abc", 10, None),
        ("bytes=0-", 0, None),
        ("bytes=" + "9" * 30 + "-", 10, None),
    ],
    ids=[
        "none",
        "first-byte",
        "middle",
        "open-end",
        "suffix",
        "suffix-longer",
        "end-clamped",
        "last-byte",
        "spaces-case",
        "multi-ignored",
        "other-unit",
        "reversed",
        "empty",
        "garbage",
        "empty-object",
        "absurd-number",
    ],
)
def test_parse_range(header: str | None, size: int, expected: tuple[int, int] | None) -> None:
    result = _http.parse_range(header, size)
    assert (None if result is None else (result.start, result.end)) == expected


@pytest.mark.parametrize(
    "header",
    ["bytes=10-", "bytes=10-20", "bytes=-0", "bytes=99-"],
    ids=["at-end", "beyond", "empty-suffix", "far"],
)
def test_parse_range_unsatisfiable(header: str) -> None:
    with pytest.raises(_http.RangeNotSatisfiable):
        _http.parse_range(header, 10)


@pytest.mark.parametrize(
    ("inm", "ims", "expected"),
    [
        ('"abc"', None, True),
        ('W/"abc"', None, True),
        ('"x", "abc"', None, True),
        ("*", None, True),
        ('"other"', None, False),
        ('"other"', "Thu, 06 Aug 2026 09:00:00 GMT", False),
        (None, "Thu, 06 Aug 2026 08:30:00 GMT", True),
        (None, "Thu, 06 Aug 2026 08:29:59 GMT", False),
        (None, "not a date", False),
        (None, None, False),
    ],
    ids=[
        "etag",
        "weak",
        "list",
        "star",
        "other",
        "inm-wins",
        "ims-equal",
        "ims-older",
        "ims-bad",
        "none",
    ],
)
def test_not_modified(inm: str | None, ims: str | None, expected: bool) -> None:
    assert _http.not_modified(inm, ims, "abc", T0.replace(microsecond=500)) is expected


def test_preconditions_and_if_range() -> None:
    assert not _http.precondition_failed('"abc"', None, "abc", T0)
    assert _http.precondition_failed('"nope"', None, "abc", T0)
    assert _http.precondition_failed('W/"abc"', None, "abc", T0)  # If-Match compares strongly
    assert _http.precondition_failed(None, "Thu, 06 Aug 2026 08:00:00 GMT", "abc", T0)
    assert _http.if_range_allows('"abc"', "abc", T0)
    assert not _http.if_range_allows('"old"', "abc", T0)
    assert not _http.if_range_allows('W/"abc"', "abc", T0)
    assert _http.if_range_allows("Thu, 06 Aug 2026 08:30:00 GMT", "abc", T0)
    assert not _http.if_range_allows("Thu, 06 Aug 2026 08:00:00 GMT", "abc", T0)


@pytest.mark.parametrize(
    ("key", "fallback", "star"),
    [
        ("pr/pr.class", "pr.class", "pr.class"),
        ('pr/say "hi"\\.txt', "say _hi__.txt", "say%20%22hi%22%5C.txt"),
        ("ünï.txt", "_n_.txt", "%C3%BCn%C3%AF.txt"),
        ("x/a\r\nSet-Cookie: y", "aSet-Cookie: y", "aSet-Cookie%3A%20y"),
        # Bidi controls would make the saved name read as "invoiceexe.txt".
        ("x/invoice\u202etxt.exe", "invoicetxt.exe", "invoicetxt.exe"),
        ("x/\u2067ab\u2069\u200f\u061c.pdf", "ab.pdf", "ab.pdf"),
        ("x/t\u0085ab\tline\u2028.txt", "tabline.txt", "tabline.txt"),
        ("x/\u202e\u200e", "download", "download"),
    ],
    ids=["plain", "quotes", "unicode", "header-injection", "bidi", "isolates", "c1-sep", "only"],
)
def test_content_disposition(key: str, fallback: str, star: str) -> None:
    value = _http.content_disposition(key)
    assert value == f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{star}"
    assert "\r" not in value and "\n" not in value


def test_content_type_guesses_only_over_generic_types() -> None:
    assert _http.content_type("a/report.csv", "binary/octet-stream") == "text/csv"
    assert _http.content_type("a/pr.data.0.Current", None) == "application/octet-stream"
    assert _http.content_type("a/x.txt", "application/json") == "application/json"
