"""``rearcquest._text``: control characters made visible for terminals."""

from __future__ import annotations

import random

import pytest

from rearcquest._text import visible, visible_lines


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("PRS30006032", "PRS30006032"),
        ("Manufacturing, Durable Goods", "Manufacturing, Durable Goods"),
        ("é ü 日本", "é ü 日本"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("a\rb", "a\\x0db"),
        ("nul\x00bell\x07", "nul\\x00bell\\x07"),
        ("two\nlines\ttab", "two\\x0alines\\x09tab"),
        ("del\x7f c1\x9b[2J", "del\\x7f c1\\x9b[2J"),
        ("\u202eevil\u2066\u200f", "\\u202eevil\\u2066\\u200f"),
        ("a\\x1b", "a\\x1b"),
    ],
    ids=[
        "clean",
        "spaces",
        "unicode",
        "csi",
        "cr",
        "nul-bel",
        "lf-tab",
        "del-c1",
        "bidi",
        "backslash",
    ],
)
def test_visible(raw: str, shown: str) -> None:
    assert visible(raw) == shown
    assert visible(visible(raw)) == visible(raw)


def test_visible_lines_keeps_newlines_and_tabs() -> None:
    assert visible_lines("Error: a\tb\nc\x1b[2J\r") == "Error: a\tb\nc\\x1b[2J\\x0d"


def test_no_control_survives_random_text() -> None:
    rng = random.Random(19)
    alphabet = [chr(c) for c in (*range(0x00, 0xA0), 0x202E, 0x2066, 0x2028, 0xE9, 0x65E5)]
    for _ in range(2000):
        text = visible("".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30))))
        assert all(ch.isprintable() for ch in text), repr(text)
