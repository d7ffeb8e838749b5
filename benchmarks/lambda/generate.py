"""BLS-like survey files of a chosen size, written as a stream (never held in memory).

A data file has the shape of BLS's ``*.data.*`` files (``pr.data.0.Current``): a header, then
rows of a 17-character padded series id, a year, a period, a value right-aligned in 12 characters
and an empty footnote, tab-separated, CRLF. Series are annual (``A01``), 20 years each, like the
``cs``/``ch`` injury surveys whose files are the largest of the inventory. The file is exactly the
size asked for: the last row's value field takes the few bytes left (a wider padding, which the
readers trim).

Rows are written a block at a time: one block of ``BLOCK_SERIES`` series is formatted once with a
placeholder in the series ids, and each block written is that template with its own block number
in place (``bytes.replace``), so a 6 GB file takes about as long as the disk needs, and every
series id stays distinct.

The survey's small files (``<survey>.series`` naming the first series, two mapping files, and
``<survey>.txt``) make the folder a survey ``rq tables`` builds.
"""

from __future__ import annotations

import random
from pathlib import Path

HEADER = b"series_id        \tyear\tperiod\t       value\tfootnote_codes\r\n"
YEARS = range(2003, 2023)
BLOCK_SERIES = 1000
_MARK = b"#######"  # seven digits of block number in every series id of the template
_VALUE_WIDTH = 12
# Series the series file names (the tables build does not join them to the data).
SERIES_ROWS = 5000


def _series_id(survey: str, block: bytes, number: int) -> bytes:
    """A 17-character padded id: the survey, ``U``, the block's seven digits, five of its own."""
    return (b"%sU%s%05d" % (survey.upper().encode(), block, number)).ljust(17)


def _row(series: bytes, year: int, value: str, width: int = _VALUE_WIDTH) -> bytes:
    return b"%s\t%d\tA01\t%s\t\r\n" % (series, year, value.encode().rjust(width))


def _template(survey: str, seed: int) -> bytes:
    """One block of rows with ``_MARK`` where the block number goes."""
    rng = random.Random(seed)
    rows = []
    for number in range(BLOCK_SERIES):
        series = _series_id(survey, _MARK, number)
        for year in YEARS:
            rows.append(_row(series, year, f"{rng.randint(0, 99_999) / 10:.1f}"))
    return b"".join(rows)


def write_data_file(path: Path, size: int, *, survey: str, seed: int = 21) -> None:
    """Write a BLS-like data file of exactly ``size`` bytes to ``path``.

    Raises:
        ValueError: ``size`` is too small for the header and one row.
    """
    template = _template(survey, seed)
    last = _row(_series_id(survey, b"9" * 7, 99_999), YEARS[-1], "0.0")
    if size < len(HEADER) + len(last):
        raise ValueError(f"a data file of {size} bytes cannot hold the header and one row")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb", buffering=1024 * 1024) as out:
        out.write(HEADER)
        left = size - len(HEADER)
        block = 0
        # Whole blocks while they leave room for the tail rows.
        while left >= len(template) + len(last):
            out.write(template.replace(_MARK, b"%07d" % block))
            left -= len(template)
            block += 1
        tail = template.replace(_MARK, b"%07d" % block).splitlines(keepends=True)
        for row in tail:
            if left < len(row) + len(last):
                break
            out.write(row)
            left -= len(row)
        # The last row: its value padded to take exactly the bytes left.
        series = _series_id(survey, b"%07d" % (block + 1), 0)
        out.write(_row(series, YEARS[-1], "0.0", _VALUE_WIDTH + left - len(last)))


def write_survey_files(folder: Path, survey: str) -> dict[str, Path]:
    """Write the survey's small files into ``folder``; return them by name."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        f"{survey}.area": b"area_code\tarea_text\r\n000\tAll U.S.\r\n",
        f"{survey}.seasonal": b"seasonal_code\tseasonal_text\r\nU\tNot Seasonally Adjusted\r\n",
        f"{survey}.txt": f"{survey}: a generated BLS-like survey (benchmarks/lambda)\r\n".encode(),
    }
    rows = [
        b"series_id        \tarea_code\tseasonal\tbegin_year\tbegin_period\tend_year\tend_period\r\n"
    ]
    for number in range(SERIES_ROWS):
        series = _series_id(survey, b"%07d" % (number // BLOCK_SERIES), number % BLOCK_SERIES)
        rows.append(b"%s\t000\tU\t%d\tA01\t%d\tA01\r\n" % (series, YEARS[0], YEARS[-1]))
    files[f"{survey}.series"] = b"".join(rows)
    paths = {}
    for name, data in files.items():
        (folder / name).write_bytes(data)
        paths[name] = folder / name
    return paths
