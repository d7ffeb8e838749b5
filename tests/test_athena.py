"""rearcquest.data.athena: the Glue tables match the Parquet that rq tables writes, and the named
queries the stack deploys give rq analyze's answers, run by DuckDB the way Athena would run them
(each Glue table a view over its location; the injected ``file`` partition read only where the
query names it) and by Polars SQL (rq sql)."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from rearcquest.aws.storage import S3Access
from rearcquest.data.athena import (
    COMMON_SERIES_COLUMNS,
    PARTITION_COLUMN,
    GlueTable,
    glue_tables,
    named_queries,
    table_surveys,
)
from rearcquest.data.tables import QUERY_NAMES, build_tables, named_query, run_sql
from test_tables import (
    POPULATION,
    VINTAGES,
    analyze_from,
    download,
    mirror_release,
    mirror_zz,
    put_population,
)

BUCKET = "test-bucket"
# The Hive type of each Polars type rq tables writes.
HIVE = {
    pl.String: "string",
    pl.Int8: "tinyint",
    pl.Int16: "smallint",
    pl.Int64: "bigint",
    pl.Decimal(18, 3): "decimal(18,3)",
}
# DuckDB's name for each Hive type the Glue tables declare.
DUCKDB = {
    "string": "VARCHAR",
    "tinyint": "TINYINT",
    "smallint": "SMALLINT",
    "bigint": "BIGINT",
    "decimal(18,3)": "DECIMAL(18,3)",
}
_INJECTED = re.compile(rf"\b{PARTITION_COLUMN}\s*=\s*'([^']*)'", re.IGNORECASE)


class ConstraintViolation(Exception):
    """What Athena answers a query that names no value of an injected partition column."""


def local(table_location: str, tables: Path) -> Path:
    """The local copy of an ``s3://test-bucket/tables/...`` location."""
    prefix = f"s3://{BUCKET}/tables/"
    assert table_location.startswith(prefix), table_location
    return tables / table_location[len(prefix) :]


def files_under(location: Path) -> list[Path]:
    """What Athena reads at a location: every object below it, subfolders included, except
    names starting with ``_`` or ``.`` (the manifests)."""
    return sorted(
        p
        for p in location.rglob("*")
        if p.is_file() and not any(part.startswith(("_", ".")) for part in p.parts[-1:])
    )


def view_sql(table: GlueTable, tables: Path, query: str) -> str:
    """A DuckDB view that reads what Athena reads for ``table`` while running ``query``."""
    columns = ", ".join(name for name, _ in table.columns)
    if not table.partition_keys:
        paths = [str(p) for p in files_under(local(table.location, tables))]
        return f"SELECT {columns} FROM read_parquet({paths!r})"
    assert table.parameters[f"projection.{PARTITION_COLUMN}.type"] == "injected"
    values = sorted(set(_INJECTED.findall(query)))
    if not values:
        raise ConstraintViolation(
            f"For the injected projected partition column {PARTITION_COLUMN}, the WHERE clause "
            "must contain only static equality conditions, and at least one such condition "
            "must be present."
        )
    template = table.parameters["storage.location.template"]
    parts = []
    for value in values:
        folder = local(template.replace(f"${{{PARTITION_COLUMN}}}", value), tables)
        paths = [str(p) for p in files_under(folder)]
        # A partition with no objects is an empty result in Athena, not an error.
        source = f"read_parquet({paths!r})" if paths else None
        if source is None:
            continue
        parts.append(f"SELECT {columns}, '{value}' AS {PARTITION_COLUMN} FROM {source}")
    assert parts, f"no partition of {table.name} holds {values}"
    return " UNION ALL ".join(parts)


def athena_like(tables: Path, query: str) -> list[tuple[Any, ...]]:
    """Run ``query`` with DuckDB over the Glue tables of ``pr``, the way Athena reads them."""
    import duckdb

    # Closed here, not by the garbage collector at some later point of another test.
    with duckdb.connect() as con:
        for table in glue_tables(BUCKET, ["pr"]):
            if re.search(rf"\b{table.name}\b", query):
                con.execute(f"CREATE VIEW {table.name} AS {view_sql(table, tables, query)}")
        return con.execute(query).fetchall()


@pytest.fixture
def pr_tables(store: Any, tmp_path: Path) -> Path:
    mirror_release(store, "2026-08-06")
    put_population(store)
    assert build_tables(store, population_object=POPULATION).failed == []
    return download(store, tmp_path)


# -- the Glue tables are the Parquet's schema -----------------------------------------------------


def test_glue_columns_are_the_types_rq_tables_writes(pr_tables: Path) -> None:
    for table in glue_tables(BUCKET, ["pr"]):
        files = files_under(local(table.location, pr_tables))
        assert files, table.name
        for path in files:
            schema = pl.read_parquet_schema(path)
            written = [(name, HIVE[dtype]) for name, dtype in schema.items()]
            assert written == list(table.columns), f"{table.name}: {path}"


def test_each_location_holds_only_its_own_table(pr_tables: Path) -> None:
    locations = {t.name: local(t.location, pr_tables) for t in glue_tables(BUCKET, ["pr"])}
    assert [p.name for p in files_under(locations["pr_series"])] == ["series.parquet"]
    assert [p.name for p in files_under(locations["population"])] == ["population.parquet"]
    partitions = {p.parent.name for p in files_under(locations["pr_observations"])}
    assert partitions == {"file=pr.data.0.Current", "file=pr.data.1.AllData"}
    # The manifests sit beside the tables and Athena skips them (a leading underscore).
    assert (pr_tables / "pr" / "_manifest.json").is_file()
    assert (pr_tables / "population" / "_manifest.json").is_file()


def test_duckdb_views_have_the_declared_types(pr_tables: Path) -> None:
    import duckdb

    query = "SELECT * FROM pr_observations WHERE file = 'pr.data.0.Current'"
    with duckdb.connect() as con:
        for table in glue_tables(BUCKET, ["pr"]):
            con.execute(f"CREATE VIEW {table.name} AS {view_sql(table, pr_tables, query)}")
            described = con.execute(f"DESCRIBE {table.name}").fetchall()
            declared = [*table.columns, *table.partition_keys]
            assert [(row[0], row[1]) for row in described] == [
                (name, DUCKDB[type_]) for name, type_ in declared
            ]


def test_a_second_survey_gets_the_common_series_columns(store: Any, tmp_path: Path) -> None:
    mirror_zz(store)
    build_tables(store, surveys=["zz"])
    tables = download(store, tmp_path)
    (series,) = [t for t in glue_tables(BUCKET, ["zz"]) if t.name == "zz_series"]
    assert series.columns == COMMON_SERIES_COLUMNS
    (path,) = files_under(local(series.location, tables))
    written = pl.read_parquet_schema(path)
    # Athena maps Parquet columns by name: the declared ones the file has are read, typed alike.
    present = [(n, t) for n, t in series.columns if n in written]
    assert [n for n, _ in present] == ["series_id", "footnote_codes", "begin_year", "title"]
    assert all(HIVE[written[n]] == t for n, t in present)
    (observations,) = [t for t in glue_tables(BUCKET, ["zz"]) if t.name == "zz_observations"]
    rows = athena_like_table(tables, observations, "zz.data.0.Current")
    assert rows == 4


def athena_like_table(tables: Path, table: GlueTable, file: str) -> int:
    import duckdb

    query = f"SELECT COUNT(*) FROM {table.name} WHERE file = '{file}'"
    with duckdb.connect() as con:
        con.execute(f"CREATE VIEW {table.name} AS {view_sql(table, tables, query)}")
        ((count,),) = con.execute(query).fetchall()
    return int(count)


@pytest.mark.parametrize("survey", ["CU", "c-u", "c.u", ""], ids=["upper", "dash", "dot", "empty"])
def test_a_survey_that_cannot_name_an_athena_table_is_refused(survey: str) -> None:
    from rearcquest.errors import ConfigError

    with pytest.raises(ConfigError, match=f"survey '{re.escape(survey)}' cannot name an Athena"):
        glue_tables("b", ["pr", survey])


def test_the_reports_survey_always_has_tables() -> None:
    assert table_surveys(["all"]) == ("pr",)
    assert table_surveys(["cu", "pr", "ce"]) == ("ce", "cu", "pr")
    names = [t.name for t in glue_tables("b", ["cu"], tables_prefix="/t/")]
    assert names == ["cu_observations", "cu_series", "pr_observations", "pr_series", "population"]
    assert glue_tables("b", ["cu"], tables_prefix="/t/")[0].location == "s3://b/t/cu/observations/"


# -- the named queries ----------------------------------------------------------------------------


def test_named_queries_are_the_sql_files_in_order() -> None:
    queries = named_queries()
    assert [q.name for q in queries] == list(QUERY_NAMES)
    assert all(q.sql == named_query(q.name) and q.description for q in queries)


def test_a_query_that_names_no_file_is_refused_like_athena(pr_tables: Path) -> None:
    with pytest.raises(ConstraintViolation, match="injected projected partition column file"):
        athena_like(pr_tables, "SELECT COUNT(*) FROM pr_observations")
    # Naming both files reads both, as Athena would: the overlap counts twice.
    both = athena_like(
        pr_tables,
        "SELECT file, COUNT(*) FROM pr_observations "
        "WHERE file = 'pr.data.0.Current' OR file = 'pr.data.1.AllData' GROUP BY file ORDER BY 1",
    )
    assert [f for f, _ in both] == ["pr.data.0.Current", "pr.data.1.AllData"]
    assert both[0][1] < both[1][1]


@pytest.mark.parametrize("vintage", VINTAGES, ids=VINTAGES)
def test_named_queries_give_rq_analyzes_answers(store: Any, vintage: str, tmp_path: Path) -> None:
    from rearcquest.data.analytics import bls_value

    mirror_release(store, vintage)
    put_population(store)
    assert build_tables(store, population_object=POPULATION).failed == []
    tables = download(store, tmp_path)
    report = analyze_from(store, "files")
    answers = {q.name: athena_like(tables, q.sql) for q in named_queries()}

    expected_best = [
        (s, y, v) for s, y, v in report.best_year.select("series_id", "year", "value").rows()
    ]
    assert len(expected_best) > 100
    assert answers["best_year"] == expected_best
    assert answers["series_population"] == report.series_population.rows()
    assert len(answers["series_population"]) >= 5
    ((mean, std, years),) = answers["population"]
    assert years == len(report.population.years) == 6
    assert bls_value(Decimal(mean), 1) == report.population.rounded_mean
    assert bls_value(Decimal(std), 2) == report.population.rounded_std

    # rq sql (Polars SQL) runs the same text to the same answers.
    polars = {
        n: run_sql(named_query(n), location=str(tables), s3=S3Access()).rows() for n in QUERY_NAMES
    }
    assert polars["best_year"] == expected_best
    assert polars["series_population"] == answers["series_population"]
    ((p_mean, p_std, p_years),) = polars["population"]
    assert p_years == years
    assert p_mean == pytest.approx(mean, rel=1e-12)
    assert p_std == pytest.approx(std, rel=1e-12)
