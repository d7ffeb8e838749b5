"""render.py's generic writers, exactly: Markdown tables, CSV, JSON and the format dispatch, on
small hand-made inputs (the report renderers are tested through `rq analyze`; the command
summaries in test_render_summaries.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import polars as pl

from rearcquest.mirror.surveys import SurveyInfo
from rearcquest.output import render


def frame() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "series_id": ["PRS1", "PRS|2", None],
            "year": [2020, 2021, None],
            "value": [Decimal("1.500"), None, Decimal("-7.000")],
        },
        schema={"series_id": pl.String, "year": pl.Int64, "value": pl.Decimal(18, 3)},
    )


def test_frame_cells_lays_out_any_frame() -> None:
    columns, numeric, rows = render.frame_cells(frame())
    assert columns == ["series_id", "year", "value"]
    assert numeric == [False, True, True]
    assert rows == [["PRS1", "2020", "1.500"], ["PRS|2", "2021", ""], ["", "", "-7.000"]]


def test_frame_csv_writes_digits_empty_nulls_and_quotes_what_needs_it() -> None:
    quoted = pl.DataFrame({"a": ['x,"y"', "two\nlines"], "b": [1, 2]})
    assert render.frame_csv(frame()) == (
        "series_id,year,value\nPRS1,2020,1.500\nPRS|2,2021,\n,,-7.000\n"
    )
    assert render.frame_csv(quoted) == 'a,b\n"x,""y""",1\n"two\nlines",2\n'


def test_frame_json_writes_decimals_as_numbers_and_dates_as_text() -> None:
    dated = pl.DataFrame({"day": [dt.date(2026, 8, 6)], "n": [Decimal("0.5")]})
    assert render.frame_json(frame()) == (
        "[\n"
        '  {\n    "series_id": "PRS1",\n    "year": 2020,\n    "value": 1.500\n  },\n'
        '  {\n    "series_id": "PRS|2",\n    "year": 2021,\n    "value": null\n  },\n'
        '  {\n    "series_id": null,\n    "year": null,\n    "value": -7.000\n  }\n'
        "]\n"
    )
    assert render.frame_json(dated) == '[\n  {\n    "day": "2026-08-06",\n    "n": 0.5\n  }\n]\n'


def test_frame_markdown_aligns_numbers_right_and_escapes_pipes() -> None:
    assert render.frame_markdown(frame()) == (
        "| series_id | year | value |\n"
        "|---|---:|---:|\n"
        "| PRS1 | 2020 | 1.500 |\n"
        "| PRS\\|2 | 2021 |  |\n"
        "|  |  | -7.000 |\n"
    )


def test_an_empty_frame_is_its_header_in_every_format() -> None:
    empty = frame().clear()
    assert render.frame_csv(empty) == "series_id,year,value\n"
    assert render.frame_json(empty) == "[]\n"
    assert render.frame_markdown(empty) == "| series_id | year | value |\n|---|---:|---:|\n"


def test_frame_text_picks_the_writer_of_the_format() -> None:
    data = frame()
    assert render.frame_text(data, "csv") == render.frame_csv(data)
    assert render.frame_text(data, "json") == render.frame_json(data)
    assert render.frame_text(data, "markdown") == render.frame_markdown(data)


def test_markdown_section_makes_every_text_visible() -> None:
    section = render.markdown_section(
        "best\x1b[31m year",
        ["series | id", "value"],
        [False, True],
        [["PRS\r1", "1.5"], ["a" * 60, "-2.0"]],
        notes=["summed\nquarters", "plain"],
    )
    assert section == (
        "## best\\x1b[31m year\n"
        "\n"
        "| series \\| id | value |\n"
        "|---|---:|\n"
        "| PRS\\x0d1 | 1.5 |\n"
        f"| {'a' * 60} | -2.0 |\n"
        "\n"
        "- summed\\x0aquarters\n"
        "- plain"
    )


def test_markdown_section_without_rows_or_notes_is_title_and_header() -> None:
    assert render.markdown_section("t", ["a"], [True], []) == "## t\n\n| a |\n|---:|"


def test_json_text_keeps_decimal_digits_in_nested_values() -> None:
    value = {
        "a": [Decimal("1.10"), {"b": Decimal("-0.001")}],
        "c": "1.10",
        "d": dt.date(2026, 1, 2),
    }
    assert render.json_text(value) == (
        "{\n"
        '  "a": [\n    1.10,\n    {\n      "b": -0.001\n    }\n  ],\n'
        '  "c": "1.10",\n'
        '  "d": "2026-01-02"\n'
        "}"
    )


def test_inventory_errors_lists_only_the_failed_listings() -> None:
    infos = [
        SurveyInfo(name="pr", url="u", files=1, bytes=1),
        SurveyInfo(name="cu", url="u", error="HTTP 500"),
        SurveyInfo(name="ce", url="u", error="timed out"),
    ]
    assert render.inventory_errors(infos) == "cu: HTTP 500\nce: timed out\n"
    assert render.inventory_errors([]) == ""
