"""Peak memory and time of ``rq revisions`` and of the series decoding on large inputs.

Generates, once, into ``benchmarks/work/vintages/``:

- two releases of a BLS data file (``old.txt``, ``new.txt``), ``--mb`` MB each, with the real
  ``pr.data.0.Current`` shape (17-character padded series ids, year, ``Q01``-``Q05``, values
  right-aligned in 12 characters with 1 or 3 decimals, CRLF). The newer release revises about
  4 % of the values, drops 1 % of the observations and adds two quarters to every series, as a
  real release does;
- a survey folder (``series/``) with a ``pr.series`` of ``--mb`` MB in the real column shape
  (``series_id``, ``sector_code``, ``class_code``, ``measure_code``, ``duration_code``,
  ``seasonal``, ``base_year``, ``footnote_codes``, begin and end year and period) and the five
  mapping files it names (``pr.sector``, ``pr.class``, ``pr.measure``, ``pr.duration``,
  ``pr.seasonal``, with the real files' columns).

Then each operation runs in a fresh child process, once per source tree given with ``--src``
(``before=/elsewhere/src`` to compare code), and its wall time and peak resident memory (from
the kernel, ``wait4``) are printed as a table:

- ``revisions``: what ``rq revisions`` does once the two versions are downloaded:
  :func:`rearcquest.data.vintages.diff_files` (where the tree has it; an older tree read both files
  whole with ``collect(scan_bls(...))`` and called ``diff_observations``);
- ``series``: :func:`rearcquest.data.tables.build_local_tables` on the survey folder, which decodes
  the series file and writes the series table (what ``rq tables`` does for ``pr.series``).
- ``duplicates``: the same comparison of two small releases in which one key appears
  ``--copies`` times (5,000: the case of issue 19); the answer is the error, or the row counts.

Usage:
    python benchmarks/vintages/run.py                              # 100 MB inputs, this tree
    python benchmarks/vintages/run.py --mb 20 --repeat 3
    python benchmarks/vintages/run.py --src before=/work/main/src --src after=src

The peak RSS includes the inputs' pages that Polars maps from disk, and ~70 MB of Python and
Polars at start-up.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
WORK = REPO / "benchmarks" / "work" / "vintages"

# What each child runs: argv[1] is the operation, the rest its inputs. It prints a JSON summary
# of its answer, so that two source trees can be checked to agree.
CHILD = r"""
import json, sys, tempfile
from pathlib import Path

op, *args = sys.argv[1:]
if op in ("revisions", "duplicates"):
    from rearcquest.data import vintages
    from rearcquest.errors import DataError

    old, new = Path(args[0]), Path(args[1])
    try:
        if hasattr(vintages, "diff_files"):
            frames = vintages.diff_files(old, new)
        else:  # the code before issue 19: both files read whole, then joined
            from rearcquest.data.analytics import collect, scan_bls

            rows = [collect(scan_bls(p), bls=p)[0] for p in (old, new)]
            frames = vintages.diff_observations(rows[0], rows[1])
    except DataError as exc:
        print(json.dumps({"error": str(exc).split(": ", 1)[1][:60]}))
        raise SystemExit(0)
    revised = frames[0]
    print(json.dumps({
        "revised": revised.height, "added": frames[1].height, "removed": frames[2].height,
        "series": frames[3].height, "first": [str(v) for v in revised.row(0)[:6]],
    }))
else:
    import polars as pl

    from rearcquest.data.tables import build_local_tables

    with tempfile.TemporaryDirectory() as tmp:
        build_local_tables(Path(args[0]), "pr", Path(tmp))
        # Only the count and one title: reading the table back whole would cost more than
        # building it.
        table = pl.scan_parquet(Path(tmp) / "pr" / "series" / "series.parquet")
        first = table.head(1).collect()
        rows = table.select(pl.len()).collect().item()
        print(json.dumps({"rows": rows, "columns": first.width, "title": first["title"][0]}))
"""

_DATA_HEADER = b"series_id        \tyear\tperiod\t       value\tfootnote_codes\r\n"


def _line(series: bytes, year: int, period: int, value: float, decimals: int) -> bytes:
    text = f"{value:.{decimals}f}".encode()
    return b"%s\t%d\tQ%02d\t%12s\t\r\n" % (series, year, period, text)


def data_pair(old: Path, new: Path, megabytes: int, *, seed: int = 19) -> None:
    """Write two releases of a data file, ``megabytes`` MB for the older."""
    rng = random.Random(seed)
    target = megabytes * 1_000_000
    old.parent.mkdir(parents=True, exist_ok=True)
    with old.open("wb") as before, new.open("wb") as after:
        before.write(_DATA_HEADER)
        after.write(_DATA_HEADER)
        size, number = 0, 0
        while size < target:
            series = f"PRS{number:08d}".ljust(17).encode()
            number += 1
            decimals = rng.choice((1, 3))
            for year in range(1995, 2026):
                for period in range(1, 6):
                    value = rng.randint(-99_999, 999_999) / 10**decimals
                    line = _line(series, year, period, value, decimals)
                    size += len(line)
                    before.write(line)
                    draw = rng.random()
                    if draw < 0.01:
                        continue  # no longer published
                    if draw < 0.05:
                        value += rng.randint(-50, 50) / 10**decimals  # revised
                        line = _line(series, year, period, value, decimals)
                    after.write(line)
            for period in (1, 2):  # the new quarters
                after.write(_line(series, 2026, period, rng.randint(0, 9999) / 10, 1))


_MAPPINGS = {
    "pr.class": (
        b"class_code\tclass_text\tdisplay_level\tselectable\tsort_sequence\r\n",
        [b"3\tEmployees\t0\tT\t2", b"6\tAll workers\t0\tT\t1"],
    ),
    "pr.duration": (
        b"duration_code\tduration_text\tdisplay_level\tselectable\tsort_sequence\r\n",
        [
            b"1\t% Change same quarter 1 year ago\t0\tT\t1",
            b"2\t% Change from previous quarter\t0\tT\t2",
            b"3\tIndex (2017=100)\t0\tT\t3",
        ],
    ),
    "pr.seasonal": (
        b"Seasonal_code\tSeasonal_text\r\n",
        [b"S\tSeasonal Adjusted", b"U\tNot Seasonally Adjusted"],
    ),
}


def series_folder(folder: Path, megabytes: int, *, seed: int = 19) -> None:
    """Write a ``pr.series`` of ``megabytes`` MB and its mapping files into ``folder``."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    sectors = [b"%04d" % code for code in range(1000, 10000, 7)]
    mappings = dict(_MAPPINGS)
    mappings["pr.sector"] = (
        b"sector_code\tsector_name\tdisplay_level\tselectable\tsort_sequence\r\n",
        [
            b"%s\tSector %s of the economy, goods\t1\tT\t%d" % (s, s, i)
            for i, s in enumerate(sectors)
        ],
    )
    mappings["pr.measure"] = (
        b"measure_code\tmeasure_text\tdisplay_level\tselectable\tsort_sequence\r\n",
        [b"%02d\tMeasure %d of output per hour\t0\tT\t%d" % (m, m, m) for m in range(1, 21)],
    )
    for name, (header, rows) in mappings.items():
        (folder / name).write_bytes(header + b"".join(row + b"\r\n" for row in rows))
    target = megabytes * 1_000_000
    with (folder / "pr.series").open("wb") as fh:
        fh.write(
            b"series_id        \tsector_code\tclass_code\tmeasure_code\tduration_code\tseasonal\t"
            b"base_year\tfootnote_codes\tbegin_year\tbegin_period\tend_year\tend_period\r\n"
        )
        size, number = 0, 0
        while size < target:
            line = b"%s\t%s\t%s\t%02d\t%d\t%s\t%s\t\t%d\tQ0%d\t2025\tQ01\r\n" % (
                f"PRS{number:08d}".ljust(17).encode(),
                rng.choice(sectors),
                rng.choice((b"3", b"6")),
                rng.randint(1, 20),
                rng.randint(1, 3),
                rng.choice((b"S", b"U")),
                rng.choice((b"-", b"2017")),
                rng.randint(1947, 2000),
                rng.randint(1, 4),
            )
            fh.write(line)
            size += len(line)
            number += 1


def duplicates_pair(old: Path, new: Path, copies: int) -> None:
    """Two small releases whose one key appears ``copies`` times in each (issue 19: 5,000
    copies made 25 million "revised" rows)."""
    old.parent.mkdir(parents=True, exist_ok=True)
    for path, shift in ((old, 0), (new, 1)):
        with path.open("wb") as fh:
            fh.write(_DATA_HEADER)
            series = b"PRS30006032".ljust(17)
            for copy in range(copies):
                fh.write(_line(series, 2024, 1, copy / 10 + shift, 1))


def _inputs(megabytes: int, copies: int) -> dict[str, list[Path]]:
    dup_old, dup_new = WORK / f"dup{copies}" / "old.txt", WORK / f"dup{copies}" / "new.txt"
    if not dup_new.exists():
        duplicates_pair(dup_old, dup_new, copies)
    stamp = WORK / f"mb{megabytes}"
    old, new, folder = stamp / "old.txt", stamp / "new.txt", stamp / "series"
    if not (old.exists() and new.exists()):
        print(f"generating {old} and {new} ...", file=sys.stderr, flush=True)
        data_pair(old, new, megabytes)
    if not (folder / "pr.series").exists():
        print(f"generating {folder} ...", file=sys.stderr, flush=True)
        series_folder(folder, megabytes)
    return {"revisions": [old, new], "series": [folder], "duplicates": [dup_old, dup_new]}


def _run(src: Path, op: str, paths: list[Path]) -> tuple[float, int, str]:
    """Wall seconds, peak RSS in bytes, and the child's answer."""
    env = {**os.environ, "PYTHONPATH": str(src)}
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, op, *map(str, paths)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    answer = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{op} with {src} failed")
    return wall, usage.ru_maxrss * 1024, answer.strip()


def _size(paths: list[Path]) -> int:
    files = [f for p in paths for f in (p.iterdir() if p.is_dir() else [p])]
    return sum(f.stat().st_size for f in files)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=100, help="size of each generated input")
    parser.add_argument("--repeat", type=int, default=1, help="runs per operation and tree")
    parser.add_argument(
        "--src",
        action="append",
        metavar="NAME=DIR",
        help="a source tree to run (repeatable); default this repository's src",
    )
    parser.add_argument("--copies", type=int, default=5000, help="copies of the duplicated key")
    parser.add_argument("--ops", default="revisions,series,duplicates")
    args = parser.parse_args()
    trees = [tuple(s.split("=", 1)) for s in args.src or [f"this={REPO / 'src'}"]]
    inputs = _inputs(args.mb, args.copies)
    load = os.getloadavg()[0]
    rows = []
    for op in args.ops.split(","):
        size = _size(inputs[op])
        answers = {}
        for name, src in trees:
            walls, peaks = [], []
            for _ in range(args.repeat):
                wall, peak, answers[name] = _run(Path(src).resolve(), op, inputs[op])
                walls.append(wall)
                peaks.append(peak)
            peak = statistics.median(peaks)
            rows.append(
                f"| {op} | {name} | {size / 1e6:,.{0 if size > 10e6 else 1}f} MB | {statistics.median(walls):.2f} s | "
                f"{peak / 1e6:,.0f} MB | {max(peaks) / 1e6:,.0f} MB | {peak / size:.1f} |"
            )
            print(rows[-1], file=sys.stderr, flush=True)
        if op != "duplicates" and len({*answers.values()}) > 1:
            raise SystemExit(f"{op}: the trees disagree: {json.dumps(answers, indent=1)}")
        for name, answer in answers.items():
            print(f"{op}, {name}: {answer}", file=sys.stderr)
    print(f"\nload average at the start: {load:.1f}; {args.repeat} run(s) each, medians\n")
    print("| operation | code | input | wall | peak RSS | largest peak | RSS / input |")
    print("|---|---|---:|---:|---:|---:|---:|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
