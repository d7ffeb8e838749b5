"""The text summaries the commands print: pure functions of the results (render.py)."""

from __future__ import annotations

from rearcquest.render import inventory_summary
from rearcquest.surveys import SurveyInfo


def test_inventory_summary_uses_the_one_size_formatter() -> None:
    infos = [
        SurveyInfo(name="pr", url="u", files=12, bytes=999_950, latest="2026-08-06 08:30"),
        SurveyInfo(name="cu", url="u", error="HTTP 500"),
    ]
    lines = inventory_summary(infos, with_bucket=False).splitlines()
    assert lines[0].split() == ["survey", "files", "size", "latest"]
    assert lines[1].split() == ["pr", "12", "1.0", "MB", "2026-08-06", "08:30"]
    assert lines[2].split() == ["cu", "-", "-", "listing", "failed"]


def test_inventory_summary_with_a_bucket_adds_the_mirror_columns() -> None:
    infos = [SurveyInfo(name="pr", url="u", files=1, bytes=10, mirrored=1, synced="2026-08-06")]
    header, row = inventory_summary(infos, with_bucket=True).splitlines()
    assert header.split()[-2:] == ["mirrored", "synced"]
    assert row.split()[-2:] == ["1", "2026-08-06"]
