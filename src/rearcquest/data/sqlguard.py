"""The guard in front of ``rq sql``: only read-only queries over the registered tables run.

Polars' SQL engine can do more than query the tables it is given: ``read_csv('/any/file')``
(or ``FROM 'file.parquet'``) reads any local file or URL, ``COPY t TO 'path'`` writes one, in S3
too, with the credentials rq reads the tables with. :func:`check_query` parses the text with
sqlglot and lets through one ``SELECT`` (``WITH``, ``UNION``/``EXCEPT``/``INTERSECT``, subqueries
and joins included) whose every table is a registered one or a CTE of the query, and nothing
else. It is an allowlist: every node of the syntax tree must be of a kind a read-only query
needs.

Two parsers read the text (sqlglot here, then sqlparser in Polars); where they could disagree on
where a string, a quoted name or a comment ends, the text could hide from one what the other
runs. So the query must also be in a plain lexical form both read alike: strings only in plain
``'...'`` quotes, names in ``"..."``, comments ``--`` (to a newline) and unnested ``/* */``,
and nothing but ASCII outside quotes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from rearcquest.errors import ConfigError, QueryRefusedError

if TYPE_CHECKING:
    from sqlglot import Token, exp

__all__ = ["check_query"]

_PREFIX: Final = "rq sql runs queries only"
# sqlglot's reading closest to Polars SQL (`::`, `~`, `//`, EXCLUDE, QUALIFY, nested comments).
_DIALECT: Final = "duckdb"
# What may stand between two tokens: plain whitespace, `--` comments that end at a newline (no
# other line break that one parser may honour and the other not), and `/* */` comments without
# a nested opening (Polars nests them, some parsers do not).
_GAP: Final = re.compile(
    r"(?:[ \t\n]|\r\n"
    r"|--[^\r\n\v\f\x1c-\x1e\x85\u2028\u2029]*(?:\r?\n|\Z)"
    r"|/\*(?:[^*/]|\*(?!/)|/(?!\*))*\*/)*"
)
# Names a function that reads or writes files, in any position (defence in depth: Polars knows
# them only as table functions, refused in FROM below).
_FILE_FUNCTION: Final = re.compile(
    r"^(?:read|scan|write|sink|copy|load|export|import)(?:_|$)", re.I
)
_STATEMENTS_START: Final = frozenset({"SELECT", "WITH", "L_PAREN", "VALUES"})
# Token kinds that begin a statement other than a query (or turn a query into one: INTO).
_STATEMENT_KEYWORDS: Final = frozenset(
    {"COMMAND", "COPY", "CREATE", "DELETE", "DROP", "INSERT", "INTO", "MERGE", "TRUNCATE", "UPDATE"}
)


def _allowed_kinds() -> tuple[type[exp.Expr], ...]:
    """The node kinds (besides functions and operators) that a read-only query is made of."""
    from sqlglot import exp

    return (
        exp.Alias, exp.All, exp.Any, exp.Between, exp.Boolean, exp.Bracket, exp.Case, exp.CTE,
        exp.Column, exp.DataType, exp.DataTypeParam, exp.Distinct, exp.Except, exp.Exists,
        exp.Fetch, exp.From, exp.Group, exp.Having, exp.Identifier, exp.If, exp.In,
        exp.Intersect, exp.Interval, exp.Join, exp.Limit, exp.LimitOptions, exp.Literal,
        exp.Null, exp.Offset, exp.Order, exp.Ordered, exp.Qualify, exp.Select, exp.Slice,
        exp.Star, exp.Subquery, exp.Table, exp.TableAlias, exp.TableSample, exp.Tuple,
        exp.Union, exp.Values, exp.Var, exp.Where, exp.Window, exp.WindowSpec, exp.With,
        exp.Binary, exp.Unary, exp.Func,
    )  # fmt: skip


def _refuse(what: str) -> QueryRefusedError:
    return QueryRefusedError(f"{_PREFIX}: {what} is not allowed", refused=what)


def _check_lexical(query: str, tokens: list[Token]) -> None:
    """Refuse what two SQL parsers could split differently (see the module's docstring)."""
    from sqlglot import TokenType

    position = 0
    for token in [*tokens, None]:
        start = len(query) if token is None else token.start
        gap = query[position:start]
        if not _GAP.fullmatch(gap):
            raise _refuse(f"the comment or spacing {_excerpt(gap)}")
        if token is None:
            break
        raw = query[token.start : token.end + 1]
        position = token.end + 1
        if token.token_type is TokenType.STRING:
            if len(raw) < 2 or raw[0] != "'" or raw[-1] != "'":
                raise _refuse(f"the string {_excerpt(raw)} (use plain '...' quotes)")
        elif token.token_type is TokenType.IDENTIFIER:
            if len(raw) < 2 or raw[0] != '"' or raw[-1] != '"':
                raise _refuse(f'the quoted name {_excerpt(raw)} (use "..." quotes)')
        elif not raw.isascii() or not raw.isprintable():
            raise _refuse(f"the character(s) {_excerpt(raw)} outside quotes")
        elif "STRING" in token.token_type.name:
            raise _refuse(f"the string {_excerpt(raw)} (use plain '...' quotes)")


def _excerpt(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:37] + "...")


def _function_name(node: exp.Func) -> str:
    from sqlglot import exp

    return node.name if isinstance(node, exp.Anonymous) else node.sql_name()


def _check_tree(query: str, root: exp.Expr, tables: Iterable[str] | None, known_text: str) -> None:
    """Refuse every node a read-only query over ``tables`` does not need."""
    from sqlglot import exp

    if not isinstance(root, exp.Query):
        raise _refuse(type(root).__name__.upper())
    allowed = _allowed_kinds()
    ctes = {cte.alias_or_name.lower() for cte in root.find_all(exp.CTE)}
    known = None if tables is None else {name.lower() for name in tables} | ctes
    for node in root.walk():
        if isinstance(node, exp.Func):
            name = _function_name(node)
            if node.arg_key == "this" and isinstance(node.parent, exp.Table | exp.From | exp.Join):
                raise _refuse(f"table function {name.lower()}")
            if _FILE_FUNCTION.match(name):
                raise _refuse(f"function {name.lower()}")
        if not isinstance(node, allowed) or isinstance(node, exp.Lateral):
            raise _refuse(f"{node.key.upper()} ({_excerpt(node.sql(dialect=_DIALECT))})")
        if isinstance(node, exp.From | exp.Join) and isinstance(node.this, exp.Func):
            raise _refuse(f"table function {_function_name(node.this).lower()}")
        if isinstance(node, exp.From | exp.Join) and not isinstance(
            node.this, exp.Table | exp.Subquery | exp.Values
        ):
            raise _refuse(f"{_excerpt(node.this.sql(dialect=_DIALECT))} as a table")
        if isinstance(node, exp.Table):
            _check_table(query, node, known, known_text)


def _check_table(query: str, node: exp.Table, known: set[str] | None, known_text: str) -> None:
    from sqlglot import exp

    if isinstance(node.this, exp.Func):
        raise _refuse(f"table function {_function_name(node.this).lower()}")
    extra = sorted(k for k, v in node.args.items() if v and k not in {"this", "alias", "sample"})
    if extra or not isinstance(node.this, exp.Identifier):
        raise _refuse(f"the table reference {_excerpt(node.sql(dialect=_DIALECT))}")
    start = node.this.meta.get("start")
    if start is None or query[start] == "'":
        # Polars reads FROM 'name' as a file when no table has that name.
        raise _refuse(f"the file name {node.name!r} as a table")
    if known is not None and node.name.lower() not in known:
        raise ConfigError(
            f"the query failed: relation {node.name!r} was not found (tables: {known_text})"
        )


def check_query(query: str, tables: Iterable[str] | None = None) -> None:
    """Refuse a query that is not one read-only query over ``tables``.

    Args:
        query: the SQL text.
        tables: the names of the registered tables; ``None`` checks everything else (before the
            tables are known).

    Raises:
        QueryRefusedError: the query does something else than read the tables (a statement other
            than a query, a table function, a file as a table, more than one statement, a
            lexical form the two parsers could read differently); the message names it.
        ConfigError: the query cannot be parsed, or reads an unknown table (the message names
            the known ones).
    """
    from sqlglot import TokenType
    from sqlglot.dialects.dialect import Dialect
    from sqlglot.errors import SqlglotError

    names = sorted(tables) if tables is not None else []
    known_text = ", ".join(names)
    dialect = Dialect.get_or_raise(_DIALECT)
    try:
        tokens = dialect.tokenize(query)
    except (SqlglotError, RecursionError, ValueError) as exc:
        raise ConfigError(f"the query failed: cannot read it: {_reason(exc)}") from exc
    if tokens and tokens[0].token_type.name not in _STATEMENTS_START | {"VAR", "SEMICOLON"}:
        raise _refuse(tokens[0].text.upper())
    for token in tokens:
        # Statements sqlglot would read as a bare command (and log that it did): refused early.
        if token.token_type.name in _STATEMENT_KEYWORDS:
            raise _refuse(token.text.upper())
    _check_lexical(query, tokens)
    while tokens and tokens[-1].token_type is TokenType.SEMICOLON:
        tokens.pop()
    if not tokens:
        raise ConfigError("the query failed: it is empty")
    if any(t.token_type is TokenType.SEMICOLON for t in tokens):
        raise _refuse("more than one statement")
    first = tokens[0]
    if first.token_type is TokenType.VAR:
        raise ConfigError(
            f"the query failed: {first.text!r} is not SQL (a query starts with SELECT or WITH)"
        )
    if first.token_type.name not in _STATEMENTS_START:
        raise _refuse(first.text.upper())
    try:
        statements = dialect.parser().parse(tokens, query)
    except (SqlglotError, RecursionError, ValueError) as exc:
        raise ConfigError(f"the query failed: cannot read it: {_reason(exc)}") from exc
    if len(statements) != 1 or statements[0] is None:
        raise _refuse("more than one statement")
    _check_tree(query, statements[0], tables, known_text)


def _reason(exc: BaseException) -> str:
    """sqlglot's message without its terminal underlining, on one line."""
    from sqlglot.errors import ParseError

    if isinstance(exc, ParseError) and exc.errors:
        error = exc.errors[0]
        return f"{error.get('description')} at line {error.get('line')}, column {error.get('col')}"
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    return (text.strip().splitlines() or [type(exc).__name__])[0]
