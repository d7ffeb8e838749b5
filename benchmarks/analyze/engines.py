"""The three reports of ``rq analyze``, written with pandas and with DuckDB, for comparison.

Each engine runs as its own process (``python engines.py ENGINE BLS POPULATION SERIES PERIOD
OUT``) and writes the same normalised JSON, so the runner can time it, read its peak memory and
check that all engines agree with ``rq analyze``:

    {"population": {"years": [...], "mean": m, "std": s},
     "best_year": [[series_id, year, "value text"], ...],
     "series_population": [[series_id, year, period, "value text", population], ...]}

Both read the file as the Polars loader does: tab-separated text, every cell trimmed, year an
integer, value exact (DuckDB ``DECIMAL(18,3)``; pandas integer thousandths, since pandas has no
fast exact decimal). Best year: quarters Q01-Q04 summed per series and year, the largest sum,
ties to the earliest year. Population: ACS years 2013-2018, mean and sample std (ddof=1).
"""

from __future__ import annotations

import json
import statistics
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

QUARTERS = ("Q01", "Q02", "Q03", "Q04")
FROM_YEAR, TO_YEAR = 2013, 2018
CHUNK_ROWS = 1_000_000


def population_rows(path: Path) -> list[tuple[int, float]]:
    """(year, population) from either DataUSA shape, through the project's own parser."""
    from rearcquest.sources.datausa import parse_population

    return list(parse_population(path.read_bytes(), source=str(path)).rows)


def _population_stats(rows: list[tuple[int, float]]) -> dict[str, Any]:
    window = [(y, p) for y, p in rows if FROM_YEAR <= y <= TO_YEAR]
    values = [p for _, p in window]
    return {
        "years": [y for y, _ in window],
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values),
    }


def run_pandas(bls: Path, population: Path, series: str, period: str) -> dict[str, Any]:
    """pandas, reading the file in chunks so memory stays bounded (as the Polars stream does)."""
    import pandas as pd

    partial_sums = []
    series_rows = []
    reader = pd.read_csv(
        bls,
        sep="\t",
        dtype=str,
        keep_default_na=False,
        quoting=3,  # csv.QUOTE_NONE: BLS never quotes
        chunksize=CHUNK_ROWS,
        usecols=[0, 1, 2, 3],
        header=0,
        names=["series_id", "year", "period", "value"],
    )
    for chunk in reader:
        chunk = chunk.apply(lambda col: col.str.strip())
        chunk["year"] = chunk["year"].astype("int32")
        # Exact: values have at most three decimals, so thousandths are whole numbers.
        chunk["value"] = (pd.to_numeric(chunk["value"]) * 1000).round().astype("int64")
        quarters = chunk[chunk["period"].isin(QUARTERS)]
        partial_sums.append(quarters.groupby(["series_id", "year"])["value"].sum())
        series_rows.append(chunk[(chunk["series_id"] == series) & (chunk["period"] == period)])
    sums = pd.concat(partial_sums).groupby(level=[0, 1]).sum().reset_index()
    best = (
        sums.sort_values(["series_id", "value", "year"], ascending=[True, False, True])
        .drop_duplicates("series_id")
        .sort_values("series_id")
    )
    pop_rows = population_rows(population)
    pop = pd.DataFrame(pop_rows, columns=["year", "population"]).astype({"year": "int32"})
    joined = pd.concat(series_rows).merge(pop, on="year", how="inner").sort_values("year")
    return {
        "population": _population_stats(pop_rows),
        "best_year": [
            [s, int(y), str(Decimal(int(v)) / 1000)]
            for s, y, v in best[["series_id", "year", "value"]].itertuples(index=False)
        ],
        "series_population": [
            [s, int(y), p, str(Decimal(int(v)) / 1000), float(n)]
            for s, y, p, v, n in joined[
                ["series_id", "year", "period", "value", "population"]
            ].itertuples(index=False)
        ],
    }


def run_duckdb(bls: Path, population: Path, series: str, period: str) -> dict[str, Any]:
    """DuckDB SQL over the CSV file: a view of trimmed, typed rows and two queries on it."""
    import duckdb

    con = duckdb.connect()
    # A view cannot take parameters: the path goes in as an escaped SQL string literal.
    literal = "'" + str(bls).replace("'", "''") + "'"
    con.execute(
        f"""
        CREATE VIEW rows AS
        SELECT trim(series_id) AS series_id, CAST(trim(year) AS INTEGER) AS year,
               trim(period) AS period, CAST(trim(value) AS DECIMAL(18, 3)) AS value
        FROM read_csv({literal}, delim = '\t', header = true, all_varchar = true, quote = '',
                      escape = '', names = ['series_id', 'year', 'period', 'value',
                                            'footnote_codes'])
        """
    )
    best = con.execute(
        """
        SELECT series_id, year, value FROM (
            SELECT series_id, year, sum(value) AS value FROM rows
            WHERE period IN ('Q01', 'Q02', 'Q03', 'Q04') GROUP BY series_id, year)
        QUALIFY row_number() OVER (PARTITION BY series_id ORDER BY value DESC, year) = 1
        ORDER BY series_id
        """
    ).fetchall()
    pop_rows = population_rows(population)
    con.execute("CREATE TABLE population (year INTEGER, population DOUBLE)")
    con.executemany("INSERT INTO population VALUES (?, ?)", pop_rows)
    joined = con.execute(
        """
        SELECT r.series_id, r.year, r.period, r.value, p.population
        FROM rows r JOIN population p USING (year)
        WHERE r.series_id = ? AND r.period = ? ORDER BY r.year
        """,
        [series, period],
    ).fetchall()
    stats = con.execute(
        "SELECT list(year ORDER BY year), avg(population), stddev_samp(population) "
        "FROM population WHERE year BETWEEN ? AND ?",
        [FROM_YEAR, TO_YEAR],
    ).fetchone()
    assert stats is not None
    return {
        "population": {"years": stats[0], "mean": stats[1], "std": stats[2]},
        "best_year": [[s, y, str(v)] for s, y, v in best],
        "series_population": [[s, y, p, str(v), n] for s, y, p, v, n in joined],
    }


ENGINES = {"pandas": run_pandas, "duckdb": run_duckdb}


def main(argv: list[str]) -> int:
    engine, bls, population, series, period, out = argv
    result = ENGINES[engine](Path(bls), Path(population), series, period)
    Path(out).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
