"""The DataUSA population parser on every real answer, and every way an answer can be bad."""

from __future__ import annotations

import json
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from rearcquest.config import RetryPolicy
from rearcquest.errors import DataError, SourceError
from rearcquest.offline import OfflineServer
from rearcquest.sources._http import HttpClient
from rearcquest.sources.datausa import MAX_BODY_BYTES, fetch_body, parse_population

SOURCE = "https://api.example/population"


def real(shared_data: Path, name: str) -> bytes:
    return (shared_data / "datausa" / name).read_bytes()


# (file, shape, years, {year: population}, years absent)
REAL = [
    ("old-api-acs5-2013-2022-compact.json", "datausa-legacy", (2013, 2022), {2018: 322903030, 2013: 311536594, 2020: 326569308}, ()),
    ("old-api-acs5-2013-2022-indent4.json", "datausa-legacy", (2013, 2022), {2018: 322903030, 2022: 331097593}, ()),
    ("old-api-acs5-2013-2023-indent2.json", "datausa-legacy", (2013, 2023), {2018: 322903030, 2023: 332387540}, ()),
    ("tesseract-acs1-2013-2023-raw.json", "tesseract", (2013, 2023), {2018: 327167439, 2013: 316128839, 2023: 334914896}, (2020,)),
    ("tesseract-acs1-resaved-a.json", "tesseract", (2013, 2023), {2018: 327167439}, (2020,)),
    ("tesseract-acs1-resaved-b.json", "tesseract", (2013, 2023), {2018: 327167439}, (2020,)),
    ("tesseract-acs1-resaved-c.json", "tesseract", (2013, 2023), {2018: 327167439}, (2020,)),
    ("tesseract-acs1-resaved-d.json", "tesseract", (2013, 2023), {2018: 327167439}, (2020,)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "shape", "span", "values", "absent"), REAL, ids=[r[0] for r in REAL]
)
def test_real_answers_parse_to_the_right_years_and_values(
    shared_data: Path,
    name: str,
    shape: str,
    span: tuple[int, int],
    values: dict[int, int],
    absent: tuple[int, ...],
) -> None:
    data = parse_population(real(shared_data, name), source=name)
    assert data.shape == shape
    assert (data.years[0], data.years[-1]) == span
    assert list(data.years) == sorted(set(data.years)), "ascending, unique"
    expected_count = span[1] - span[0] + 1 - len(absent)
    assert len(data.rows) == expected_count
    table = dict(data.rows)
    for year, population in values.items():
        assert table[year] == population
    for year in absent:
        assert year not in table
    assert all(isinstance(y, int) and isinstance(p, float) for y, p in data.rows)


def test_reordered_and_reserialised_answers_share_one_canonical_hash(shared_data: Path) -> None:
    hashes = {
        name: parse_population(real(shared_data, name)).canonical_sha256
        for name, *_ in REAL
        if name.startswith("tesseract")
    }
    assert len({real(shared_data, n) for n in hashes}) == 5, "five different byte strings"
    assert len(set(hashes.values())) == 1
    old = [
        parse_population(real(shared_data, n)).canonical_sha256
        for n in ("old-api-acs5-2013-2022-compact.json", "old-api-acs5-2013-2022-indent4.json")
    ]
    assert old[0] == old[1]
    newer = parse_population(real(shared_data, "old-api-acs5-2013-2023-indent2.json"))
    assert newer.canonical_sha256 != old[0]


def test_newer_tesseract_values_are_a_different_answer(shared_data: Path) -> None:
    body = tesseract_with_2024(shared_data)
    data = parse_population(body)
    assert data.years[-1] == 2024
    assert dict(data.rows)[2024] == 340110990
    base = parse_population(real(shared_data, "tesseract-acs1-2013-2023-raw.json"))
    assert data.canonical_sha256 != base.canonical_sha256


def tesseract_with_2024(shared_data: Path) -> bytes:
    """The newer 11-row tesseract answer, rebuilt from its real values (TSV) in the real layout."""
    doc = json.loads(real(shared_data, "tesseract-acs1-2013-2023-raw.json"))
    lines = real(shared_data, "tesseract-acs1-2013-2024-values.tsv").decode().splitlines()
    header = lines[0].split("\t")
    doc["data"] = [
        {k: (int(v) if k == "Year" else float(v) if k == "Population" else v) for k, v in zip(header, line.split("\t"), strict=True)}
        for line in lines[1:]
    ]  # fmt: skip
    doc["page"]["total"] = len(doc["data"])
    return json.dumps(doc, separators=(",", ":")).encode()


# -- bad answers: each is refused with a message naming the source and the problem --

Mutation = Callable[[dict[str, Any]], Any]


def _tess(mutate: Mutation) -> Callable[[Path], bytes]:
    def build(shared_data: Path) -> bytes:
        doc = json.loads(real(shared_data, "tesseract-acs1-2013-2023-raw.json"))
        doc = mutate(doc) or doc
        return json.dumps(doc).encode()

    return build


def _old(mutate: Mutation) -> Callable[[Path], bytes]:
    def build(shared_data: Path) -> bytes:
        doc = json.loads(real(shared_data, "old-api-acs5-2013-2022-compact.json"))
        doc = mutate(doc) or doc
        return json.dumps(doc).encode()

    return build


def _raw(body: bytes) -> Callable[[Path], bytes]:
    return lambda _shared: body


def _set_row(index: int, **changes: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["data"][index].update(changes)

    return mutate


def _drop_key(index: int, key: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        del doc["data"][index][key]

    return mutate


def _by_state(doc: dict[str, Any]) -> None:
    for row in doc["data"]:
        row["ID State"], row["State"] = "04000US06", "California"
        del row["ID Nation"], row["Nation"]


BAD: list[tuple[str, Callable[[Path], bytes], str]] = [
    ("empty-body", _raw(b""), "empty body"),
    ("blank-body", _raw(b" \r\n"), "empty body"),
    ("html-error-page", _raw(b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"), "an HTML page ('502 Bad Gateway'), not JSON"),
    ("html-no-title", _raw(b"  <html><body>Maintenance</body></html>"), "an HTML page, not JSON"),
    ("truncated-json", lambda s: real(s, "tesseract-acs1-2013-2023-raw.json")[:-40], "invalid JSON at line 1"),
    ("nan-population", lambda s: real(s, "tesseract-acs1-2013-2023-raw.json").replace(b"316128839.0", b"NaN"), "NaN is not valid JSON"),
    ("infinity-population", lambda s: real(s, "tesseract-acs1-2013-2023-raw.json").replace(b"316128839.0", b"-Infinity"), "-Infinity is not valid JSON"),
    ("not-utf8", _raw(b'{"data": "\xff\xfe"}'), "not UTF-8"),
    ("top-level-list", _raw(b"[1, 2]"), "unknown response shape: a JSON list"),
    ("no-data-key", _raw(b'{"rows": []}'), "no 'data' list (top-level keys: rows)"),
    ("api-error-object", _raw(b'{"error": "Invalid cube acs_yg_total_population_9"}'), "the API answered an error: Invalid cube"),
    ("unknown-row-keys", _raw(b'{"data": [{"year": 2020, "pop": 1}]}'), "unknown response shape: neither"),
    ("state-level-answer", lambda s: real(s, "tesseract-acs5-state-by-year-raw.json"), "not national population: the rows are by State (columns: State ID, State, Year, Population)"),
    ("old-api-by-state", _old(_by_state), "not national population: the rows are by State"),
    ("other-nation-row", _tess(_set_row(3, **{"Nation ID": "04000US72", "Nation": "Puerto Rico"})), "not national population: row 4 is 'Puerto Rico'"),
    ("no-population-column", _tess(lambda d: d.update(columns=["Nation ID", "Nation", "Year", "Households"])), "no 'Population' column"),
    ("tesseract-empty-data", _tess(lambda d: d.update(data=[], page={"limit": 0, "offset": 0, "total": 0})), "holds no rows"),
    ("old-api-empty-data", _old(lambda d: d.update(data=[])), "holds no rows"),
    ("one-page-of-many", _tess(lambda d: d.update(data=d["data"][:4])), "incomplete answer: 4 of 10 rows"),
    ("zero-population", _tess(_set_row(0, Population=0.0)), "row 1 (year 2013): Population 0.0 is not positive"),
    ("negative-population", _old(_set_row(2, Population=-5)), "row 3 (year 2020): Population -5 is not positive"),
    ("string-population", _tess(_set_row(1, Population="318857056")), "Population '318857056' is not a number"),
    ("null-population", _tess(_set_row(1, Population=None)), "Population None is not a number"),
    ("bool-population", _tess(_set_row(1, Population=True)), "Population True is not a number"),
    ("huge-float-population", _tess(_set_row(1, Population=1e300)), "Population 1e+300 is not a national population (at least 10,000,000,000)"),
    ("int64-overflow-population", _old(_set_row(1, Population=2**63)), f"Population {2**63} is not a national population"),
    ("huge-int-population", _old(_set_row(1, Population=10**400)), "is not a national population"),
    ("ten-billion-population", _tess(_set_row(1, Population=10_000_000_000.0)), "Population 10000000000.0 is not a national population"),
    ("infinite-population", lambda s: real(s, "tesseract-acs1-2013-2023-raw.json").replace(b"316128839.0", b"1e400"), "row 1 (year 2013): Population inf is not a finite number"),
    ("fractional-population", _tess(_set_row(1, Population=318857056.5)), "Population 318857056.5 is not a whole number"),
    ("small-fraction-population", _old(_set_row(0, Population=3.5)), "Population 3.5 is not a whole number"),
    ("negative-zero-population", _tess(_set_row(0, Population=-0.0)), "Population -0.0 is not positive"),
    ("missing-population", _tess(_drop_key(5, "Population")), "row 6 (year 2018): no Population"),
    ("string-year-tesseract", _tess(_set_row(0, Year="2013")), "row 1: Year '2013' is not a year"),
    ("old-api-years-disagree", _old(_set_row(0, Year="2021")), "'ID Year' 2022 and 'Year' disagree"),
    ("row-not-object", _tess(lambda d: d["data"].append(7)), "row 11 is a int, not an object"),
    ("duplicate-year-tesseract", _tess(lambda d: d["data"].append(dict(d["data"][0])) or d["page"].update(total=11)), "year 2013 appears twice (rows 1 and 11)"),
    ("duplicate-year-old-api", _old(_set_row(1, **{"ID Year": 2022, "Year": "2022"})), "year 2022 appears twice (rows 1 and 2)"),
]  # fmt: skip


@pytest.mark.parametrize(("build", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_answers_are_refused_with_a_clear_message(
    shared_data: Path, build: Callable[[Path], bytes], message: str
) -> None:
    with pytest.raises(DataError) as caught:
        parse_population(build(shared_data), source=SOURCE)
    assert str(caught.value).startswith(f"{SOURCE}: ")
    assert message in str(caught.value)
    assert caught.value.exit_code == 1


def test_population_fuzz_accepts_only_whole_numbers_below_ten_billion(shared_data: Path) -> None:
    """Numbers of every size and kind in one row: a DataError, or a whole number of people
    that every reader can store as a 64-bit integer."""
    rng = random.Random(19)
    real_answer = real(shared_data, "tesseract-acs1-2013-2023-raw.json")
    for _ in range(600):
        kind = rng.randrange(4)
        if kind == 0:
            number = str(rng.randint(-(10**30), 10**30) // 10 ** rng.randint(0, 30))
        elif kind == 1:
            number = repr(rng.uniform(-1e12, 1e12) / 10 ** rng.randint(0, 6))
        elif kind == 2:
            number = f"{rng.randint(1, 9)}e{rng.randint(-5, 400)}"
        else:
            number = f"{rng.randint(1, 10**10)}.{rng.choice(['0', '5', '000001'])}"
        body = real_answer.replace(b"316128839.0", number.encode(), 1)
        refused = ""
        try:
            data = parse_population(body, source=SOURCE)
        except DataError as exc:
            refused = str(exc)
        if refused:
            assert refused.startswith(f"{SOURCE}: row 1 (year 2013): Population "), number
        else:
            population = dict(data.rows)[2013]
            assert population == int(population) and 0 < population < 10**10, number


# -- the HTTP side: one polite GET, bounded --


@pytest.fixture
def api() -> Iterator[OfflineServer]:
    with OfflineServer(require_contact=False) as server:
        yield server


def client(**kw: Any) -> HttpClient:
    return HttpClient(retry=RetryPolicy(attempts=2, base=0.0), **kw)


def test_fetch_body_returns_the_bytes_as_received(api: OfflineServer, shared_data: Path) -> None:
    body = real(shared_data, "tesseract-acs1-resaved-d.json")
    api.add_route("/tesseract/data.jsonrecords", body)
    with client() as http:
        got = fetch_body(http, api.url + "/tesseract/data.jsonrecords?cube=x")
    assert got == body
    assert api.requests[-1].headers["accept"] == "application/json"


def test_fetch_body_refuses_an_announced_oversized_body_as_bad_data(
    api: OfflineServer, shared_data: Path
) -> None:
    body = real(shared_data, "tesseract-acs5-state-by-year-raw.json")
    api.add_route("/big", body)
    with client() as http, pytest.raises(DataError, match=rf"body of {len(body)} bytes exceeds"):
        fetch_body(http, api.url + "/big", max_bytes=len(body) - 1)
    assert len(api.requests) == 1, "bad content is not retried"
    assert 64 * 1024 < MAX_BODY_BYTES <= 16 * 1024 * 1024, "a sane default limit"


def test_fetch_body_refuses_an_unannounced_oversized_body() -> None:
    # A chunked body has no Content-Length: the limit is enforced while reading.
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=iter([b"x" * 600, b"x" * 600]))

    transport = httpx.MockTransport(handler)
    with client(transport=transport) as http, pytest.raises(DataError, match="more than 1000"):
        fetch_body(http, "http://api.example/data", max_bytes=1000)


@pytest.mark.parametrize(
    ("status", "message"),
    [(404, "HTTP 404"), (500, re.escape("HTTP 500 (gave up after 2 attempts)"))],
    ids=["404-final", "500-retried"],
)
def test_fetch_body_http_errors_are_source_errors(
    api: OfflineServer, status: int, message: str
) -> None:
    api.add_route("/api/data", b"{}", status=status)
    with client() as http, pytest.raises(SourceError, match=message) as caught:
        fetch_body(http, api.url + "/api/data")
    assert caught.value.exit_code == 3
    assert len(api.requests) == (2 if status >= 500 else 1), "5xx retried, 4xx final"
