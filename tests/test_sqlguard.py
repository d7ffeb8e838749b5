"""rearcquest.data.sqlguard: only one read-only query over the registered tables reaches Polars."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from rearcquest.aws.storage import S3Access
from rearcquest.data.sqlguard import check_query
from rearcquest.data.tables import QUERY_NAMES, named_query
from rearcquest.errors import ConfigError, QueryRefusedError, RqError

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("population", "pr_observations", "pr_series")

# (query, what the message names); every one runs in Polars 2.2 and reads or writes a file.
HOSTILE = [
    ("SELECT * FROM read_csv('/etc/passwd')", "table function read_csv"),
    ("select * from READ_CSV('/etc/passwd')", "table function read_csv"),
    ("SELECT * FROM \"read_csv\"('/etc/passwd')", "table function read_csv"),
    ("SELECT * FROM read_parquet('s3://b/k.parquet')", "table function read_parquet"),
    ("SELECT * FROM read_ipc('x')", "table function read_ipc"),
    ("SELECT * FROM read_json('x')", "table function read_json"),
    ("SELECT * FROM read_ndjson('x')", "table function read_ndjson"),
    ("SELECT * FROM read_csv('http://127.0.0.1:1/x')", "table function read_csv"),
    ("SELECT * FROM population, read_csv('x') AS r", "table function read_csv"),
    ("SELECT * FROM population JOIN read_csv('x') r ON true", "table function read_csv"),
    ("SELECT * FROM (SELECT * FROM read_parquet('x')) q", "table function read_parquet"),
    ("SELECT year FROM population UNION SELECT a FROM read_csv('x')", "table function read_csv"),
    ("SELECT * FROM population WHERE year IN (SELECT a FROM read_csv('x'))",
     "table function read_csv"),
    ("WITH read_csv AS (SELECT 1 AS a) SELECT * FROM read_csv('/etc/passwd')",
     "table function read_csv"),
    ("WITH q AS (SELECT * FROM read_csv('x')) SELECT * FROM q", "table function read_csv"),
    ("SELECT * FROM '/etc/passwd'", "the file name '/etc/passwd' as a table"),
    ("SELECT * FROM 'population'", "the file name 'population' as a table"),
    ("SELECT read_csv('x') AS a FROM population", "function read_csv"),
    ("COPY population TO '/tmp/x.parquet'", "COPY"),
    ("cOpY population TO '/tmp/x.parquet'", "COPY"),
    ("-- a comment\nCOPY population TO 'x'", "COPY"),
    ("/* SELECT */ COPY population TO 'x'", "COPY"),
    ("SELECT 1 /*...*/;COPY population TO 'x'", "COPY"),
    ("SELECT 1; SELECT 2", "more than one statement"),
    ("SELECT 1 AS a INTO x", "INTO"),
    ("INSERT INTO population VALUES (1, 2)", "INSERT"),
    ("CREATE TABLE x AS SELECT 1", "CREATE"),
    ("DROP TABLE population", "DROP"),
    ("TRUNCATE population", "TRUNCATE"),
    ("EXPLAIN SELECT * FROM population", "EXPLAIN"),
    ("SET x = 1", "SET"),
    ("SHOW TABLES", "SHOW"),
    ("SELECT * FROM population WHERE year = ?", "PLACEHOLDER ('?')"),
    ("SELECT * FROM main.population", "the table reference 'main.population'"),
    # Where two parsers could disagree on where a comment or string ends.
    ("SELECT 1 AS a -- c\rUNION SELECT * FROM read_csv('x')", "the comment or spacing ' -- c\\r'"),
    ("SELECT 1 /* /* */ COPY population TO 'x' */", "the comment or spacing \" /* /* */ COPY population TO 'x' */\""),
    ("SELECT E'\\'' AS a, ') UNION SELECT * FROM read_csv(''x'') --' AS b",
     "the string \"E'\\\\''\" (use plain '...' quotes)"),
    ("SELECT $$x$$ AS a", "the string '$$x$$' (use plain '...' quotes)"),
    # Unicode lookalikes and spaces outside quotes.
    ("SELECT * FROM ｒｅａｄ_csv('x')", "the character(s) 'ｒｅａｄ_csv' outside quotes"),
    ("SELECT * FROM read_csv\u00a0('x')", "the comment or spacing '\\xa0'"),
    ("SELECT * FROM read\u200b_csv('x')", "the character(s) 'read\\u200b_csv' outside quotes"),
]  # fmt: skip


@pytest.mark.parametrize(("query", "refused"), HOSTILE, ids=[q for q, _ in HOSTILE])
def test_a_hostile_query_is_refused_naming_what(query: str, refused: str) -> None:
    with pytest.raises(QueryRefusedError) as caught:
        check_query(query, TABLES)
    assert str(caught.value) == f"rq sql runs queries only: {refused} is not allowed"
    assert caught.value.refused == refused
    assert caught.value.exit_code == 2


def _documented_queries() -> list[str]:
    """Every ``rq sql "..."`` example of the docs, and the reports' queries."""
    found = [named_query(name) for name in QUERY_NAMES]
    for path in (ROOT / "docs" / "tables.md", ROOT / "docs" / "vintages.md", ROOT / "README.md"):
        for match in re.finditer(r'\$ rq sql (?:--\S+ \S+ )*"(.*?)"', path.read_text(), re.S):
            found.append(re.sub(r"\n>?\s*", " ", match.group(1)))
    return found


DOCUMENTED = _documented_queries()
LEGITIMATE = [
    *DOCUMENTED,
    "SELECT year, population FROM population ORDER BY year",
    "SELECT o.year, o.value FROM pr_observations AS o WHERE o.value > 1 LIMIT 5 OFFSET 1",
    "(SELECT year FROM population) EXCEPT (SELECT year FROM pr_observations)",
    "SELECT year FROM population INTERSECT SELECT year FROM pr_observations",
    "SELECT year FROM population UNION ALL SELECT 2030",
    "SELECT * EXCLUDE (population) FROM population",
    "SELECT \"year\", population::VARCHAR AS p, 'it''s \\d' AS s FROM \"population\"",
    "SELECT file, COUNT(*) FROM pr_observations GROUP BY file -- trailing comment",
    "/* leading */ SELECT 1 AS a;",
    "SELECT * FROM (VALUES (1, 2)) AS v(a, b)",
    "SELECT series_id, ROW_NUMBER() OVER (PARTITION BY series_id ORDER BY year DESC) AS r "
    "FROM pr_observations QUALIFY r = 1",
    "SELECT * FROM POPULATION WHERE EXISTS (SELECT 1 FROM pr_series)",
    "SELECT 'read_csv(''x'')' AS text, 'COPY' AS word FROM population",
]


def test_the_documented_queries_are_found() -> None:
    assert len(DOCUMENTED) >= len(QUERY_NAMES) + 3
    assert any("JOIN pr_series s" in q for q in DOCUMENTED)


@pytest.mark.parametrize("query", LEGITIMATE)
def test_a_query_of_the_tables_passes(query: str) -> None:
    check_query(query, TABLES)


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT * FROM nowhere", "the query failed: relation 'nowhere' was not found "
         "(tables: population, pr_observations, pr_series)"),
        ("SELEC 1", "the query failed: 'SELEC' is not SQL (a query starts with SELECT or WITH)"),
        ("  ;", "the query failed: it is empty"),
        ("SELECT year FROM population WHERE (", "the query failed: cannot read it: "),
    ],
    ids=["unknown-table", "not-sql", "empty", "unparsable"],
)  # fmt: skip
def test_what_is_not_a_query_is_a_config_error(query: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_query(query, TABLES)
    assert str(caught.value).startswith(message)
    assert not isinstance(caught.value, QueryRefusedError)


def _variant(rng: random.Random, hostile: str) -> str:
    """``hostile`` with its case, spacing and comments shuffled, wrapped in a query or not."""
    words = re.split(r"(\s+)", hostile)
    out = []
    for word in words:
        if word.isspace():
            out.append(rng.choice([" ", "\n", "\t", " /* x */ ", " -- y\n", "  "]))
        elif "'" not in word and '"' not in word:
            out.append("".join(c.upper() if rng.random() < 0.5 else c.lower() for c in word))
        else:
            out.append(word)
    text = "".join(out)
    wrap = rng.choice(
        [
            "{q}",
            "{q};",
            "SELECT * FROM ({q}) AS w",
            "SELECT year FROM population UNION ALL {q}",
            "WITH w AS ({q}) SELECT * FROM w",
            "SELECT * FROM population WHERE year IN ({q})",
            "/* {q} */ {q}",
            "SELECT 1 AS a; {q}",
        ]
    )
    return wrap.replace("{q}", text)


def test_shuffled_hostile_queries_are_all_refused() -> None:
    rng = random.Random(19)
    attacks = [
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM \"read_parquet\"('s3://b/k')",
        "SELECT * FROM '/etc/passwd'",
        "COPY population TO '/tmp/out.parquet'",
        "SELECT * FROM population, read_ipc('x') AS r",
        "SELECT read_json('x') AS a",
    ]
    for _ in range(600):
        query = _variant(rng, rng.choice(attacks))
        with pytest.raises(ConfigError):
            check_query(query, TABLES)


def test_random_text_gives_only_rq_errors() -> None:
    rng = random.Random(1919)
    alphabet = "SELECT FROM read_csv COPY WITH ( ) ' \" ; -- /* */ \\ $ , . * = 1 a \n\r\t\u00a0ｒ"
    pieces = [*alphabet.split(" "), " "]
    for _ in range(1500):
        query = "".join(rng.choice(pieces) for _ in range(rng.randint(0, 25)))
        try:
            check_query(query, TABLES)
        except RqError:
            continue
        # What passes must be a plain query: no file function, no COPY outside quotes.
        assert "read_csv" not in query.split("'")[0] or "(" not in query


def test_the_library_refuses_before_polars_runs(tmp_path: Path) -> None:
    from rearcquest.data.tables import run_sql

    (tmp_path / "population").mkdir()
    import polars as pl

    pl.DataFrame({"year": [2020], "population": [1]}).write_parquet(
        tmp_path / "population" / "population.parquet"
    )
    target = tmp_path / "copy.parquet"
    with pytest.raises(QueryRefusedError, match="COPY is not allowed"):
        run_sql(f"COPY population TO '{target}'", location=str(tmp_path), s3=S3Access())
    assert not target.exists()
    secret = tmp_path / "secret.csv"
    secret.write_text("a\n1\n")
    with pytest.raises(QueryRefusedError, match="table function read_csv is not allowed"):
        run_sql(f"SELECT * FROM read_csv('{secret}')", location=str(tmp_path), s3=S3Access())
    assert run_sql(
        "SELECT population FROM population", location=str(tmp_path), s3=S3Access()
    ).rows() == [(1,)]


def test_sql_as_of_refuses_before_it_reads_a_release(monkeypatch: pytest.MonkeyPatch) -> None:
    from rearcquest.data import vintages

    def build(*args: object, **kwargs: object) -> None:
        raise AssertionError("the release was built for a refused query")

    monkeypatch.setattr(vintages, "build_release_tables", build)
    with pytest.raises(QueryRefusedError, match="COPY is not allowed"):
        vintages.query("COPY pr_observations TO '/tmp/x'", as_of="2025-06-30", s3=S3Access())
