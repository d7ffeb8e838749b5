"""The one size formatter: decimal units, rounding up to the next unit."""

from __future__ import annotations

import pytest

from rearcquest._sizes import human_size
from rearcquest.index._render import human_size as index_human_size
from rearcquest.output.render import human_size as render_human_size


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 KB"),
        (999_949, "999.9 KB"),
        (999_950, "1.0 MB"),
        (1_000_000, "1.0 MB"),
        (4_900_000, "4.9 MB"),
        (10**9, "1.0 GB"),
        (3 * 10**12, "3.0 TB"),
        (5 * 10**15, "5.0 PB"),
        (1536.0, "1.5 KB"),
    ],
    ids=[
        "zero",
        "bytes",
        "kb",
        "under-a-mb",
        "rounds-up-unit",
        "mb",
        "mb-docs",
        "gb",
        "tb",
        "pb",
        "float",
    ],
)
def test_human_size(size: float, expected: str) -> None:
    assert human_size(size) == expected


def test_one_formatter_for_the_index_the_renderers_and_the_cli() -> None:
    assert index_human_size is human_size
    assert render_human_size is human_size
