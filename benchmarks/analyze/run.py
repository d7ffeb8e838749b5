"""Time ``rq analyze`` against the same reports in pandas and DuckDB, at 1x, 100x and 1000x.

Every run is a fresh process, timed from start to exit (imports included) with its peak
resident memory read from the kernel (``wait4``); engines take turns so that background noise
falls on all of them alike. The results of every engine are checked against ``rq analyze``'s.

Usage:
    python benchmarks/analyze/run.py                      # 1x, 100x, 1000x; all engines
    python benchmarks/analyze/run.py --times 1,100 --repeat 5
    python benchmarks/analyze/run.py --engines polars,duckdb

Needs ``pip install -e '.[bench]'`` (pandas, duckdb). Generated files go to benchmarks/work/
(git-ignored): 1000x is 38 million rows, 1.6 GB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from decimal import Decimal
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))

from generate import DEFAULT_SOURCE, generate, read_source  # noqa: E402

# A real DataUSA answer (ACS 5-year, 2013-2022), from the test data.
POPULATION_SOURCE = REPO / "tests" / "data" / "datausa" / "old-api-acs5-2013-2022-compact.json.gz"
WORK = REPO / "benchmarks" / "work"
PERIOD = "Q01"


def _unpacked(source: Path, work: Path) -> Path:
    """A plain copy in ``work`` of a real file kept gzipped in the repository."""
    path = work / source.name.removesuffix(".gz")
    data = read_source(source)
    if not path.is_file() or path.read_bytes() != data:
        path.write_bytes(data)
    return path


def _bls_file(times: int, work: Path) -> tuple[Path, str]:
    """The BLS file for a scale, generated once, and the series id to report on."""
    real = _unpacked(DEFAULT_SOURCE, work)
    if times == 1:
        return real, "PRS30006032"
    path = work / f"pr.data.0.Current.x{times}"
    expected = real.stat().st_size * times
    if not path.exists() or abs(path.stat().st_size - expected) > expected * 0.01:
        print(f"generating {path.name} ...", file=sys.stderr, flush=True)
        generate(path, times)
    return path, "PRS300060320000"


def _command(engine: str, bls: Path, population: Path, series: str, out: Path) -> list[str]:
    if engine == "polars":
        return [
            sys.executable, "-m", "rearcquest", "-q", "analyze", "--bls", str(bls),
            "--population", str(population), "--series", series, "--period", PERIOD,
            "--format", "json",
        ]  # fmt: skip
    return [
        sys.executable, str(HERE / "engines.py"), engine, str(bls), str(population), series,
        PERIOD, str(out),
    ]  # fmt: skip


def _run(
    engine: str, bls: Path, population: Path, series: str, out: Path
) -> tuple[float, float, int]:
    """Run one engine in a fresh process; return (wall seconds, CPU seconds, peak RSS bytes)."""
    command = _command(engine, bls, population, series, out)
    log = out.with_suffix(".stderr")
    stdout_path = out if engine == "polars" else Path(os.devnull)
    with stdout_path.open("wb") as stdout, log.open("wb") as stderr:
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=stdout, stderr=stderr)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{engine} failed ({proc.returncode}):\n{log.read_text()[-3000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss * 1024


def _normalised(engine: str, out: Path) -> dict[str, Any]:
    """Every engine's answer in one form, values as Decimals, for comparison."""
    doc = json.loads(out.read_text(), parse_float=Decimal)
    if engine == "polars":
        doc = {
            "population": doc["population"],
            "best_year": [[r["series_id"], r["year"], r["value"]] for r in doc["best_year"]],
            "series_population": [
                [r["series_id"], r["year"], r["period"], r["value"], r["population"]]
                for r in doc["series_population"]
            ],
        }
    return {
        "years": doc["population"]["years"],
        "mean": float(doc["population"]["mean"]),
        "std": float(doc["population"]["std"]),
        "best_year": [(s, int(y), Decimal(str(v))) for s, y, v in doc["best_year"]],
        "series_population": [
            (s, int(y), p, Decimal(str(v)), float(n)) for s, y, p, v, n in doc["series_population"]
        ],
    }


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    close = all(abs(a[k] - b[k]) <= 1e-6 * abs(b[k]) for k in ("mean", "std"))
    exact = all(a[k] == b[k] for k in ("years", "best_year", "series_population"))
    return close and exact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--times", default="1,100,1000", help="scales, comma-separated")
    parser.add_argument("--engines", default="polars,duckdb,pandas")
    parser.add_argument("--repeat", type=int, default=3, help="runs per engine below 1000x")
    parser.add_argument("--big-repeat", type=int, default=1, help="runs per engine at 1000x+")
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    # Byte code compiled, as an installed rq has it (PYTHONDONTWRITEBYTECODE would have every
    # run compile the package from source).
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(REPO / "src")], check=True)
    engines = args.engines.split(",")
    args.work.mkdir(parents=True, exist_ok=True)
    population = _unpacked(POPULATION_SOURCE, args.work)
    results: list[dict[str, Any]] = []
    load_before = os.getloadavg()
    for times in (int(t) for t in args.times.split(",")):
        bls, series = _bls_file(times, args.work)
        size = bls.stat().st_size
        rows = sum(1 for _ in bls.open("rb")) - 1 if times <= 100 else None
        repeat = args.repeat if times < 1000 else args.big_repeat
        runs: dict[str, list[tuple[float, float, int]]] = {e: [] for e in engines}
        answers: dict[str, dict[str, Any]] = {}
        for _ in range(repeat):
            for engine in engines:
                out = args.work / f"out.{engine}.x{times}.json"
                runs[engine].append(_run(engine, bls, population, series, out))
                answers[engine] = _normalised(engine, out)
                wall, cpu, rss = runs[engine][-1]
                print(
                    f"x{times} {engine}: {wall:.2f} s wall, {cpu:.2f} s CPU, {rss / 1e6:,.0f} MB",
                    file=sys.stderr,
                )
        reference = answers.get("polars") or next(iter(answers.values()))
        for engine in engines:
            walls = [w for w, _, _ in runs[engine]]
            cpus = [c for _, c, _ in runs[engine]]
            results.append(
                {
                    "times": times,
                    "rows": rows if rows is not None else 38_412 * times,
                    "file_bytes": size,
                    "engine": engine,
                    "seconds_median": statistics.median(walls),
                    "seconds_min": min(walls),
                    "cpu_seconds_median": statistics.median(cpus),
                    "runs": len(walls),
                    "peak_rss_bytes": max(r for _, _, r in runs[engine]),
                    "best_year_rows": len(answers[engine]["best_year"]),
                    "agrees_with_rq": _same(answers[engine], reference),
                }
            )
    environment = {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "polars": version("polars"),
        "duckdb": version("duckdb") if "duckdb" in engines else None,
        "pandas": version("pandas") if "pandas" in engines else None,
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
    }
    print(_markdown(results, environment))
    if args.json:
        args.json.write_text(json.dumps({"environment": environment, "results": results}, indent=2))
    return 0 if all(r["agrees_with_rq"] for r in results) else 1


def _markdown(results: list[dict[str, Any]], environment: dict[str, Any]) -> str:
    lines = [
        "| scale | rows | file | engine | wall (median) | CPU (median) | peak RSS | RSS / file "
        "| best-year rows | same result |",
        "|---|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['times']}x | {r['rows']:,} | {r['file_bytes'] / 1e6:,.0f} MB | {r['engine']} "
            f"| {r['seconds_median']:.2f} s | {r['cpu_seconds_median']:.2f} s "
            f"| {r['peak_rss_bytes'] / 1e6:,.0f} MB "
            f"| {r['peak_rss_bytes'] / r['file_bytes']:.2f} | {r['best_year_rows']:,} "
            f"| {'yes' if r['agrees_with_rq'] else 'NO'} |"
        )
    env = ", ".join(f"{k} {v}" for k, v in environment.items() if v is not None)
    return "\n".join(lines) + f"\n\n{env}\n"


if __name__ == "__main__":
    raise SystemExit(main())
