"""The tables as Athena sees them: Glue tables (columns, locations, partition projection) and
the quest reports as named queries.

Pure data, no AWS call: the CDK stack in ``infra/`` declares its Glue tables and Athena named
queries from these functions, and the tests run the very same SQL with DuckDB over the Parquet
that :mod:`rearcquest.data.tables` writes, so the stack, the tables and the reports cannot drift.

The observations of a survey are partitioned by data file (``file=pr.data.0.Current``) with
Athena's ``injected`` partition projection: the data file names differ per survey and are not
known when the stack is deployed, and a query must name the partition it reads (``WHERE file =
'pr.data.0.Current'``), which it must anyway, since BLS's files overlap (``Current`` is a subset
of ``AllData``). Athena refuses a query on such a table without a literal equality on ``file``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final

from rearcquest.config import DEFAULT_SURVEYS
from rearcquest.data.tables import QUERY_NAMES, named_query
from rearcquest.errors import ConfigError
from rearcquest.layout import POPULATION_TABLE, SERIES_TABLE, TABLES_PREFIX

# The partition column of every observations table; its value is the data file's name.
PARTITION_COLUMN: Final = "file"
PARQUET_INPUT: Final = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT: Final = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
PARQUET_SERDE: Final = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"

Column = tuple[str, str]
_TABLE_NAME: Final = re.compile(r"^[a-z0-9_]+$")

# Hive types of the columns rearcquest.data.tables writes: Int8 -> tinyint, Int16 -> smallint,
# Decimal(18, 3) -> decimal(18,3), Int64 -> bigint (tests/test_athena.py compares them with the
# Parquet files).
OBSERVATIONS_COLUMNS: Final[tuple[Column, ...]] = (
    ("series_id", "string"),
    ("year", "smallint"),
    ("period", "string"),
    ("value", "decimal(18,3)"),
    ("decimals", "tinyint"),
    ("value_text", "string"),
    ("footnote_codes", "string"),
)
POPULATION_COLUMNS: Final[tuple[Column, ...]] = (
    ("year", "smallint"),
    ("population", "bigint"),
    ("source", "string"),
)
# A survey's series columns come from its own series file and mapping files, unknown before it
# is mirrored. Athena maps Parquet columns by name, so a table may declare fewer columns than
# the file holds (the rest stay invisible) or more (they read as null): every survey gets the
# columns every BLS series file has, plus the decoded title; pr, the survey the reports read,
# gets all of its columns.
COMMON_SERIES_COLUMNS: Final[tuple[Column, ...]] = (
    ("series_id", "string"),
    ("footnote_codes", "string"),
    ("begin_year", "string"),
    ("begin_period", "string"),
    ("end_year", "string"),
    ("end_period", "string"),
    ("title", "string"),
)
SERIES_COLUMNS: Final[dict[str, tuple[Column, ...]]] = {
    "pr": tuple(
        (name, "string")
        for name in (
            "series_id",
            "sector_code",
            "sector_name",
            "class_code",
            "class_text",
            "measure_code",
            "measure_text",
            "duration_code",
            "duration_text",
            "seasonal",
            "seasonal_text",
            "base_year",
            "footnote_codes",
            "begin_year",
            "begin_period",
            "end_year",
            "end_period",
            "title",
        )
    ),
}

_DESCRIPTIONS: Final = {
    "population": "US population 2013-2018: mean and sample standard deviation (rq analyze)",
    "best_year": "best year of every pr series: the largest sum of Q01-Q04 (rq analyze)",
    "series_population": "PRS30006032 Q01 values with the population of their year (rq analyze)",
}


@dataclass(frozen=True)
class GlueTable:
    """One Glue table over the Parquet of :mod:`rearcquest.data.tables`.

    Attributes:
        name: the table's name (``pr_observations``, ``pr_series``, ``population``).
        location: the ``s3://`` folder it reads, with a trailing slash; every object under it,
            subfolders included, except names starting with ``_`` or ``.`` (the manifests).
        columns: ``(name, Hive type)`` pairs.
        partition_keys: ``(name, Hive type)`` pairs (``file`` for observations).
        parameters: the table properties (classification, partition projection).
        description: what the table holds.
    """

    name: str
    location: str
    columns: tuple[Column, ...]
    description: str
    partition_keys: tuple[Column, ...] = ()
    parameters: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class NamedQuery:
    """A quest report as an Athena named query.

    Attributes:
        name: the query's name (``best_year``), as ``rq sql --named`` takes it.
        description: what it answers.
        sql: the SQL text (``rearcquest/queries/<name>.sql``), the same for Polars, DuckDB and
            Athena.
    """

    name: str
    description: str
    sql: str


def table_surveys(surveys: Iterable[str]) -> tuple[str, ...]:
    """The surveys that get Glue tables: the given ones and ``pr`` (the reports read it).

    ``all`` names no survey (the mirror's surveys are unknown before it is listed), so it adds
    none.

    Raises:
        ConfigError: a survey name cannot be part of an Athena table name (lowercase letters,
            digits and ``_`` only; BLS's survey folders are such names).
    """
    chosen = {*DEFAULT_SURVEYS, *(s for s in surveys if s != "all")}
    for survey in sorted(chosen):
        _check_table_name(survey)
    return tuple(sorted(chosen))


def observations_location(bucket: str, survey: str, tables_prefix: str = TABLES_PREFIX) -> str:
    """The ``s3://`` folder of a survey's observations partitions."""
    return f"s3://{bucket}/{_folder(tables_prefix)}{survey}/observations/"


def glue_tables(
    bucket: str, surveys: Iterable[str], *, tables_prefix: str = TABLES_PREFIX
) -> list[GlueTable]:
    """The Glue tables of the surveys' tables and the population table in ``bucket``.

    Args:
        bucket: the bucket of the mirror and its tables (may be a CDK token).
        surveys: the surveys (see :func:`table_surveys`).
        tables_prefix: where ``rq tables`` writes them.

    Returns:
        ``<survey>_observations`` and ``<survey>_series`` per survey, then ``population``.
    """
    found: list[GlueTable] = []
    for survey in table_surveys(surveys):
        found += survey_glue_tables(bucket, survey, tables_prefix=tables_prefix)
    found.append(population_glue_table(bucket, tables_prefix=tables_prefix))
    return found


def population_glue_table(bucket: str, *, tables_prefix: str = TABLES_PREFIX) -> GlueTable:
    """The Glue table of the population table (``population``)."""
    return GlueTable(
        name=POPULATION_TABLE,
        location=f"s3://{bucket}/{_folder(tables_prefix)}{POPULATION_TABLE}/",
        columns=POPULATION_COLUMNS,
        description="the US population by year, from the stored DataUSA answer",
        parameters={"classification": "parquet"},
    )


def survey_glue_tables(
    bucket: str, survey: str, *, tables_prefix: str = TABLES_PREFIX
) -> list[GlueTable]:
    """The two Glue tables of one survey: ``<survey>_observations`` and ``<survey>_series``.

    Raises:
        ConfigError: the survey cannot name an Athena table (see :func:`table_surveys`).
    """
    _check_table_name(survey)
    observations = observations_location(bucket, survey, tables_prefix)
    return [
        GlueTable(
            name=f"{survey}_observations",
            location=observations,
            columns=OBSERVATIONS_COLUMNS,
            description=(
                f"every row of every {survey}.data.* file, one partition per file: query "
                f"one, e.g. WHERE file = '{survey}.data.0.Current' (the files overlap)"
            ),
            partition_keys=((PARTITION_COLUMN, "string"),),
            parameters={
                "classification": "parquet",
                "projection.enabled": "true",
                f"projection.{PARTITION_COLUMN}.type": "injected",
                "storage.location.template": (
                    f"{observations}{PARTITION_COLUMN}=${{{PARTITION_COLUMN}}}/"
                ),
            },
        ),
        GlueTable(
            name=f"{survey}_series",
            location=f"s3://{bucket}/{_folder(tables_prefix)}{survey}/{SERIES_TABLE}/",
            columns=SERIES_COLUMNS.get(survey, COMMON_SERIES_COLUMNS),
            description=f"{survey}.series with every code decoded by its mapping files",
            parameters={"classification": "parquet"},
        ),
    ]


def table_input(table: GlueTable) -> dict[str, Any]:
    """The table as Glue's ``CreateTable`` takes it (``TableInput``): an external Parquet table.

    The CDK stack declares the same fields as a ``CfnTable``.
    """

    def columns(pairs: tuple[Column, ...]) -> list[dict[str, str]]:
        return [{"Name": name, "Type": kind} for name, kind in pairs]

    found: dict[str, Any] = {
        "Name": table.name,
        "Description": table.description,
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {"EXTERNAL": "TRUE", **table.parameters},
        "StorageDescriptor": {
            "Columns": columns(table.columns),
            "Location": table.location,
            "InputFormat": PARQUET_INPUT,
            "OutputFormat": PARQUET_OUTPUT,
            "SerdeInfo": {"SerializationLibrary": PARQUET_SERDE},
        },
    }
    if table.partition_keys:
        found["PartitionKeys"] = columns(table.partition_keys)
    return found


def named_queries() -> list[NamedQuery]:
    """The three quest reports as named queries, in :data:`~rearcquest.data.tables.QUERY_NAMES` order."""
    return [NamedQuery(name, _DESCRIPTIONS[name], named_query(name)) for name in QUERY_NAMES]


def _check_table_name(survey: str) -> None:
    if not _TABLE_NAME.match(survey):
        raise ConfigError(
            f"survey {survey!r} cannot name an Athena table ({survey}_observations): "
            "use lowercase letters, digits and _ only"
        )


def _folder(tables_prefix: str) -> str:
    prefix = tables_prefix.strip("/")
    return f"{prefix}/" if prefix else ""
