"""The text summaries the commands print: pure functions of the results (render.py)."""

from __future__ import annotations

import json

import pytest

from rearcquest.mirror.surveys import SurveyInfo
from rearcquest.output import render
from rearcquest.output.render import inventory_summary


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


@pytest.mark.parametrize(
    ("token", "show", "expected"),
    [
        (None, False, ["Serving s3://b/p/ at http://h/; press Ctrl-C to stop"]),
        (
            "t" * 16,
            False,
            ["Serving s3://b/p/ at http://h/ (token required); press Ctrl-C to stop"],
        ),
        (
            "t" * 16,
            True,
            [
                "Serving s3://b/p/ at http://h/ (token required); press Ctrl-C to stop",
                f"Open http://h/?token={'t' * 16}",
            ],
        ),
    ],
    ids=["open", "token-kept-secret", "generated-token-shown-once"],
)
def test_serving_banner(token: str | None, show: bool, expected: list[str]) -> None:
    assert (
        render.serving_banner("s3://b/p/", "http://h/", token, show_token=show).split("\n")
        == expected
    )


def test_demo_step_shows_text_and_json_payloads() -> None:
    assert render.demo_step("Title", None) == "\n== Title"
    assert render.demo_step("Text", "body") == "\n== Text\nbody"
    assert render.demo_step("Doc", {"a": 1}) == '\n== Doc\n{\n  "a": 1\n}'


def test_tables_as_of_summary_lists_each_table() -> None:
    from rearcquest.output.render_vintages import tables_as_of_doc, tables_as_of_summary

    written = ["s3://b/tables/as-of/r/pr/series.parquet", "s3://b/tables/as-of/r/x.parquet"]
    assert tables_as_of_summary("r", written).split("\n") == [
        "tables of release r:",
        *(f"  {url}" for url in written),
    ]
    assert tables_as_of_doc("r", tuple(written)) == {"release": "r", "written": written}


def test_json_text_writes_decimal_digits_and_quotes_every_string() -> None:
    from datetime import date
    from decimal import Decimal

    from rearcquest.output.render import json_text

    doc = {
        "values": [Decimal("138.710"), Decimal("-7.0")],
        "when": date(2026, 8, 6),
        # A source's text shaped like a number stays a string.
        "hostile": ["0.5", '"1.0"'],
    }
    text = json_text(doc)
    assert "138.710,\n" in text and "-7.0\n" in text
    assert json.loads(text) == {
        "values": [138.71, -7.0],
        "when": "2026-08-06",
        "hostile": ["0.5", '"1.0"'],
    }
    assert json_text({"a": [], "b": {}}) == json.dumps({"a": [], "b": {}}, indent=2)


@pytest.mark.parametrize(
    ("glue", "error", "last"),
    [
        (None, None, "built     s3://b/tables/pr/series/series.parquet (3 rows)"),
        (
            {"database": "bls", "created": ["pr_series"], "skipped": {"Xy": "bad name"}},
            None,
            "Glue: no tables for Xy: bad name",
        ),
        (
            {"database": "bls", "created": [], "skipped": {}},
            None,
            "Glue database bls: every table was already there",
        ),
        (
            {"database": "bls", "error": "AccessDenied"},
            "AccessDenied",
            "Glue: not registered: AccessDenied",
        ),
    ],
    ids=["no-database", "created-and-skipped", "nothing-to-create", "refused"],
)
def test_tables_run_summary_ends_with_what_glue_got(
    glue: dict[str, object] | None, error: str | None, last: str
) -> None:
    from rearcquest.data.tables import TableBuild, TablesResult
    from rearcquest.jobs.pipeline import TablesRun

    built = TableBuild("pr", "series", "tables/pr/series/series.parquet", "built", rows=3)
    run = TablesRun(TablesResult("b", "tables/", [built]), glue=glue)
    assert run.glue_error == error
    lines = render.tables_run_summary(run).splitlines()
    assert lines[0] == "built     s3://b/tables/pr/series/series.parquet (3 rows)"
    assert lines[-1] == last
    if glue and glue.get("created"):
        assert lines[1] == "Glue database bls: created pr_series"
