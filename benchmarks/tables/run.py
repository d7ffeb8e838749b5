"""Time building the observations table, and best-year from it against the text and DuckDB.

For each scale (the real ``pr.data.0.Current`` repeated N times, see
``benchmarks/analyze/generate.py``) this measures, in one process with Polars and DuckDB already
imported, the median of ``--repeat`` runs of:

- ``build``: the observations partition from the text (``rearcquest.data.tables.observations_query``
  streamed into Parquet, every row checked): what ``rq tables`` does after the download;
- ``files``: the best-year report from the text (``scan_bls`` + ``best_year``, as
  ``rq analyze --from files``);
- ``tables``: the same report from the Parquet partition (as ``rq analyze --from tables``);
- ``duckdb``: the named query ``best_year.sql`` run by DuckDB over the same Parquet.

The three answers are checked to be equal. S3 transfers are left out: they are the same bytes
whichever engine reads them.

Usage:
    python benchmarks/tables/run.py                   # 1x and 100x
    python benchmarks/tables/run.py --times 1000 --repeat 1

Needs ``pip install -e '.[bench]'`` (duckdb). Files go to benchmarks/work/ (git-ignored).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE.parent / "analyze"))

from generate import DEFAULT_SOURCE, generate  # noqa: E402

WORK = REPO / "benchmarks" / "work"


def _bls_file(times: int) -> Path:
    if times == 1:
        return DEFAULT_SOURCE
    path = WORK / f"pr.data.0.Current.x{times}"
    expected = DEFAULT_SOURCE.stat().st_size * times
    if not path.exists() or abs(path.stat().st_size - expected) > expected * 0.01:
        print(f"generating {path.name} ...", file=sys.stderr, flush=True)
        WORK.mkdir(parents=True, exist_ok=True)
        generate(path, times)
    return path


def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def main() -> None:
    import duckdb
    import polars as pl

    from rearcquest.data.analytics import best_year, collect, scan_bls, sink_parquet
    from rearcquest.data.tables import named_query, observations_query

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", default="1,100", help="scales, comma-separated")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows_out = []
    for times in [int(t) for t in args.times.split(",")]:
        text = _bls_file(times)
        folder = WORK / f"tables.x{times}" / "pr" / "observations" / "file=pr.data.0.Current"
        folder.mkdir(parents=True, exist_ok=True)
        part = folder / "part-0.parquet"

        def build(text: Path = text, part: Path = part) -> None:
            sink_parquet(observations_query(text), part, bls=text)

        def files(text: Path = text) -> pl.DataFrame:
            return collect(best_year(scan_bls(text)), bls=text)[0]

        def tables(part: Path = part) -> pl.DataFrame:
            rows = (
                pl.scan_parquet(part)
                .filter(pl.col("value").is_not_null())
                .select(
                    "series_id",
                    pl.col("year").cast(pl.Int32),
                    "period",
                    "value",
                    "decimals",
                )
            )
            return best_year(rows).collect(engine="streaming")

        def in_duckdb(part: Path = part) -> list[tuple[Any, ...]]:
            con = duckdb.connect()
            con.execute(
                "CREATE VIEW pr_observations AS SELECT * FROM read_parquet("
                f"'{part.parents[1]}/*/*.parquet', hive_partitioning = true)"
            )
            return con.execute(named_query("best_year")).fetchall()

        build_s, _ = _timed(build, args.repeat)
        files_s, from_files = _timed(files, args.repeat)
        tables_s, from_tables = _timed(tables, args.repeat)
        duck_s, from_duck = _timed(in_duckdb, args.repeat)
        assert from_tables.equals(from_files), "tables and files disagree"
        assert from_duck == [(s, y, v) for s, y, v in from_files.rows()], "duckdb disagrees"
        size = part.stat().st_size
        rows_out.append(
            f"| {times}x | {text.stat().st_size / 1e6:,.0f} MB | {size / 1e6:,.1f} MB | "
            f"{build_s:.2f} s | {files_s:.2f} s | {tables_s:.2f} s | {duck_s:.2f} s | "
            f"{tables_s / files_s:.2f} | {from_files.height:,} |"
        )
        print(rows_out[-1], flush=True)
    print(
        "\n| scale | text | parquet | build | best-year from text | from tables | DuckDB on "
        "the Parquet | tables / text | series |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    print("\n".join(rows_out))


if __name__ == "__main__":
    main()
