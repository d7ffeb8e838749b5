"""DataUSA population API: both response shapes -> one normalised table of (year, population).

Two real shapes answer "US population by year":

* the old API, ``https://datausa.io/api/data?drilldowns=Nation&measures=Population`` (ACS 5-year):
  ``{"data": [{"ID Nation": "01000US", "Nation": "United States", "ID Year": 2022,
  "Year": "2022", "Population": 331097593, ...}, ...], "source": [...]}``, newest year first;
* the tesseract API (ACS 1-year, the current default):
  ``{"annotations": {...}, "page": {...}, "columns": ["Nation ID", "Nation", "Year",
  "Population"], "data": [{"Nation ID": "01000US", "Nation": "United States", "Year": 2013,
  "Population": 316128839.0}, ...]}``.

:func:`parse_population` is the only parser of either: pure, strict, and it refuses anything that
is not one population per year for the United States as a whole, naming the source and what was
wrong. :func:`fetch_body` is the HTTP side: one GET through the shared polite client.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from rearcquest.errors import DataError

if TYPE_CHECKING:
    from rearcquest.sources._http import HttpClient

# A national table is a few kB (the state-by-year answer is 50 kB); anything near this limit is
# not what was asked for, and a bounded body keeps a misbehaving server from filling memory.
MAX_BODY_BYTES = 1024 * 1024
# Every reader stores a population as a 64-bit integer; no nation counts ten billion people, so
# anything that large is a broken answer (1e300, 2**63), refused before it is stored.
MAX_POPULATION = 10_000_000_000
NATION_ID = "01000US"
NATION_NAME = "United States"

Shape = Literal["datausa-legacy", "tesseract"]

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title", re.IGNORECASE | re.DOTALL)


@dataclass(frozen=True)
class PopulationData:
    """A validated national population table.

    Attributes:
        shape: which API shape the response had.
        rows: ``(year, population)`` pairs, sorted by year ascending, one per year.
        canonical_sha256: sha256 of the canonical JSON form of the whole response (parsed, keys
            sorted, compact separators), so re-serialised or key-reordered copies of the same
            answer hash alike.
    """

    shape: Shape
    rows: tuple[tuple[int, float], ...]
    canonical_sha256: str

    @property
    def years(self) -> tuple[int, ...]:
        """The years, ascending."""
        return tuple(year for year, _ in self.rows)


def canonical_json(doc: Any) -> bytes:
    """Return the canonical form of a parsed JSON document: keys sorted, no spaces, UTF-8."""
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _reject_constant(name: str) -> Any:
    # Python's json accepts NaN and Infinity; JSON does not, and neither is a population.
    raise ValueError(f"{name} is not valid JSON")


def _describe_html(body: bytes) -> str:
    title = _TITLE.search(body[:65536])
    if title:
        text = " ".join(title.group(1).decode("utf-8", "replace").split())[:80]
        return f"an HTML page ({text!r}), not JSON; the API may be down or the URL wrong"
    return "an HTML page, not JSON; the API may be down or the URL wrong"


def _load(body: bytes, source: str) -> Any:
    if not body.strip():
        raise DataError(f"{source}: empty body, expected population JSON")
    if body.lstrip()[:1] == b"<":
        raise DataError(f"{source}: {_describe_html(body)}")
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text ({exc.reason})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise DataError(f"{source}: invalid JSON: {exc}") from exc


def _detect_shape(doc: Any, source: str) -> tuple[Shape, list[Any]]:
    if not isinstance(doc, dict):
        raise DataError(
            f"{source}: unknown response shape: a JSON {type(doc).__name__}, "
            "expected an object with a 'data' list"
        )
    data = doc.get("data")
    if not isinstance(data, list):
        # Both APIs answer errors as small JSON objects; show what they said.
        said = doc.get("error") or doc.get("detail") or doc.get("message")
        if said:
            raise DataError(f"{source}: the API answered an error: {str(said)[:200]}")
        keys = ", ".join(sorted(map(str, doc))[:8]) or "none"
        raise DataError(
            f"{source}: unknown response shape: no 'data' list (top-level keys: {keys})"
        )
    if isinstance(doc.get("columns"), list):
        return "tesseract", data
    if "source" in doc or any(isinstance(r, dict) and "ID Year" in r for r in data[:1]):
        return "datausa-legacy", data
    first = data[0] if data else None
    keys = ", ".join(sorted(map(str, first))[:8]) if isinstance(first, dict) else "none"
    raise DataError(
        f"{source}: unknown response shape: neither the old DataUSA API ('source', 'ID Year') "
        f"nor tesseract ('columns'); keys of the first row: {keys}"
    )


def _levels(keys: Any, shape: Shape) -> list[str]:
    """The drill-down levels named by ID columns: ``ID Nation`` (old) or ``Nation ID`` (new)."""
    names = [str(k) for k in keys]
    if shape == "tesseract":
        found = [k[: -len(" ID")] for k in names if k.endswith(" ID")]
    else:
        found = [k[len("ID ") :] for k in names if k.startswith("ID ")]
    return [level for level in found if level != "Year"]


def _not_national(source: str, what: str) -> DataError:
    return DataError(
        f"{source}: not national population: {what}; expected one row per year for "
        f"the {NATION_NAME} ({NATION_ID}), as asked with drilldowns=Year,Nation"
    )


def _check_geography(doc: dict[str, Any], data: list[Any], shape: Shape, source: str) -> None:
    if shape == "tesseract":
        columns = doc["columns"]
        levels = _levels(columns, shape)
        if levels != ["Nation"]:
            shown = ", ".join(map(str, columns))
            by = ", ".join(levels) or "no geography"
            raise _not_national(source, f"the rows are by {by} (columns: {shown})")
        for needed in ("Year", "Population"):
            if needed not in columns:
                raise DataError(f"{source}: the response has no {needed!r} column")
        page = doc.get("page")
        total = page.get("total") if isinstance(page, dict) else None
        if isinstance(total, int) and not isinstance(total, bool) and total > len(data):
            raise DataError(
                f"{source}: incomplete answer: {len(data)} of {total} rows (one page of a "
                "paged response); ask without a limit"
            )
    elif data and isinstance(data[0], dict):
        levels = _levels(data[0], shape)
        if levels != ["Nation"]:
            raise _not_national(source, f"the rows are by {', '.join(levels) or 'no geography'}")


def _year(row: dict[str, Any], shape: Shape, where: str, source: str) -> int:
    value = row.get("Year")
    if shape == "datausa-legacy":
        # The old API gives the year twice: "ID Year" as a number, "Year" as a string.
        id_year = row.get("ID Year")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if value is None:
            value = id_year
        elif id_year is not None and id_year != value:
            raise DataError(f"{source}: {where}: 'ID Year' {id_year!r} and 'Year' disagree")
    if not isinstance(value, int) or isinstance(value, bool) or not 1000 <= value <= 9999:
        raise DataError(f"{source}: {where}: Year {value!r} is not a year")
    return value


def _population(row: dict[str, Any], where: str, source: str) -> float:
    if "Population" not in row:
        raise DataError(f"{source}: {where}: no Population")
    value = row["Population"]
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{source}: {where}: Population {value!r} is not a number")
    if isinstance(value, float) and not math.isfinite(value):
        # json reads 1e400 as inf
        raise DataError(f"{source}: {where}: Population {value!r} is not a finite number")
    # An int compares exactly here, whatever its size (float(2**1100) would raise).
    if value <= 0:
        raise DataError(f"{source}: {where}: Population {value!r} is not positive")
    if value >= MAX_POPULATION:
        raise DataError(
            f"{source}: {where}: Population {value!r} is not a national population (at least "
            f"{MAX_POPULATION:,}); the answer is not what was asked for"
        )
    if value != int(value):
        raise DataError(f"{source}: {where}: Population {value!r} is not a whole number")
    return float(value)


def _check_nation(row: dict[str, Any], shape: Shape, where: str, source: str) -> None:
    id_key = "Nation ID" if shape == "tesseract" else "ID Nation"
    ident, name = row.get(id_key), row.get("Nation")
    if ident != NATION_ID or (name is not None and name != NATION_NAME):
        raise _not_national(source, f"{where} is {name!r} ({id_key} {ident!r})")


def parse_population(body: bytes, *, source: str = "response") -> PopulationData:
    """Parse and validate a DataUSA population response of either shape.

    Args:
        body: the response body as received.
        source: names the body in error messages (the URL, a file name).

    Returns:
        The national population by year, sorted by year, with the shape and canonical hash.

    Raises:
        DataError: the body is empty, HTML, invalid JSON, of an unknown shape, not national
            population, incomplete or empty, or has a missing population or one that is not a
            whole number from 1 to :data:`MAX_POPULATION` (exclusive), a bad year or a year
            twice. The message names ``source``.
    """
    doc = _load(body, source)
    shape, data = _detect_shape(doc, source)
    _check_geography(doc, data, shape, source)
    if not data:
        raise DataError(f"{source}: the response holds no rows (empty 'data')")
    by_year: dict[int, tuple[int, float]] = {}
    for number, row in enumerate(data, 1):
        where = f"row {number}"
        if not isinstance(row, dict):
            raise DataError(f"{source}: {where} is a {type(row).__name__}, not an object")
        _check_nation(row, shape, where, source)
        year = _year(row, shape, where, source)
        where = f"row {number} (year {year})"
        population = _population(row, where, source)
        if year in by_year:
            raise DataError(
                f"{source}: year {year} appears twice (rows {by_year[year][0]} and {number})"
            )
        by_year[year] = (number, population)
    rows = tuple((year, by_year[year][1]) for year in sorted(by_year))
    return PopulationData(shape, rows, hashlib.sha256(canonical_json(doc)).hexdigest())


def fetch_body(http: HttpClient, url: str, *, max_bytes: int = MAX_BODY_BYTES) -> bytes:
    """GET ``url`` through ``http`` (retries, timeouts, User-Agent) and return the body.

    A body over ``max_bytes`` is bad content
    (:class:`DataError`, exit 1), not an unreachable source.

    Args:
        http: the shared HTTP client.
        url: the API URL.
        max_bytes: the largest body accepted.

    Returns:
        The body, exactly as received.

    Raises:
        SourceError: the source is unreachable or answered a non-2xx status (after retries for
            429, 5xx and transport errors).
        DataError: the body is larger than ``max_bytes``.
    """

    def too_large(size: str) -> DataError:
        return DataError(
            f"{url}: body of {size} bytes exceeds the {max_bytes}-byte limit; a national "
            "population table is a few kB, so this is not the answer asked for"
        )

    return http.get_bytes(
        url, max_bytes=max_bytes, headers={"Accept": "application/json"}, too_large=too_large
    )
