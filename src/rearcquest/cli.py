"""The ``rq`` command line: parse the arguments, call one library function, render the result.

This is the only module that imports typer and rich. Results go to stdout, progress and logs to
stderr. An :class:`~rearcquest.errors.RqError` is caught here, once, and printed as ``Error: ...``
with the error's exit code; usage errors exit 2 (Typer's default).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar

import typer

from rearcquest import __version__, render
from rearcquest.analytics import (
    DEFAULT_FROM_YEAR,
    DEFAULT_PERIOD,
    DEFAULT_SERIES,
    DEFAULT_TO_YEAR,
)
from rearcquest.config import (
    DEFAULT_BLS_URL,
    DEFAULT_CACHE_SECONDS,
    DEFAULT_HOST,
    DEFAULT_INDEX_KEY,
    DEFAULT_MAX_DELETE,
    DEFAULT_POPULATION_KEY,
    DEFAULT_PORT,
    DEFAULT_ROOT_URL,
    DEFAULT_TRANSFERS,
    DEMO_BUCKET,
    MAX_PRESIGN_SECONDS,
    POLITE_RPS,
)
from rearcquest.errors import ConfigError, RqError
from rearcquest.layout import STATE_PREFIX
from rearcquest.sources._http import DEFAULT_ATTEMPTS
from rearcquest.surveys import DEFAULT_PARALLEL
from rearcquest.tables import DEFAULT_SURVEYS, TABLES_PREFIX
from rearcquest.vintages import DEFAULT_FILE, DEFAULT_FROM_RELEASE, DEFAULT_TO_RELEASE

if TYPE_CHECKING:
    from collections.abc import Sequence

    from rearcquest.render import TextTable
    from rearcquest.render_vintages import Grid
    from rearcquest.storage import ObjectStore
    from rearcquest.surveys import SurveyOutcome
    from rearcquest.sync import Progress as SyncProgress

T = TypeVar("T")

app = typer.Typer(
    name="rq",
    help="Mirror public economic data (BLS, DataUSA) into S3 and turn it into reports.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

log = logging.getLogger("rearcquest")


class TextOrJson(StrEnum):
    """Output formats of the commands that report what they did."""

    text = "text"
    json = "json"


# Shared options, declared once (STYLE 8).
EndpointOption = Annotated[
    str | None,
    typer.Option(
        "--endpoint-url",
        metavar="URL",
        envvar="AWS_ENDPOINT_URL",
        help="S3-compatible endpoint (MinIO, SeaweedFS, moto); default: AWS.",
        show_default=False,
    ),
]
FormatOption = Annotated[
    TextOrJson, typer.Option("--format", help="Summary format on stdout.", case_sensitive=False)
]
BlsBucketOption = Annotated[
    str,
    typer.Option(
        "--bucket",
        metavar="BUCKET",
        envvar="RQ_BLS_BUCKET",
        help="Bucket of the BLS mirror.",
        show_default=False,
    ),
]
RootUrlOption = Annotated[
    str,
    typer.Option(
        "--root-url", metavar="URL", envvar="RQ_BLS_ROOT_URL", help="Root listing the surveys."
    ),
]
RootPrefixOption = Annotated[
    str,
    typer.Option(
        "--root-prefix",
        metavar="PREFIX",
        envvar="RQ_BLS_ROOT_PREFIX",
        help="Key prefix the survey mirrors are under (default: bucket root).",
    ),
]
MaxRpsOption = Annotated[
    float | None,
    typer.Option(
        "--max-rps",
        metavar="R",
        envvar="RQ_MAX_RPS",
        min=0,
        help="Highest request rate to the source, summed over every survey and transfer; "
        f"default {POLITE_RPS:g}/s for bls.gov, 0 = unlimited.",
        show_default=False,
    ),
]
IndexKeyOption = Annotated[
    str, typer.Option("--index-key", metavar="KEY", help="Key of the static index page.")
]
PortOption = Annotated[
    int,
    typer.Option(
        "--port",
        metavar="PORT",
        min=0,
        max=65535,
        help="Port of the index page; 0 picks a free one.",
    ),
]
ContactOption = Annotated[
    str | None,
    typer.Option(
        "--contact",
        metavar="EMAIL",
        envvar="RQ_CONTACT",
        help="Your e-mail, sent in the User-Agent (BLS refuses requests without one).",
        show_default=False,
    ),
]
UserAgentOption = Annotated[
    str | None,
    typer.Option(
        "--user-agent",
        metavar="UA",
        envvar="RQ_USER_AGENT",
        help="A complete User-Agent instead of one built from --contact.",
        show_default=False,
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"rq (rearcquest) {__version__}")
        raise typer.Exit()


@dataclass(frozen=True)
class _Verbosity:
    """``--verbose``/``--quiet`` of this invocation, carried by the context object (``ctx.obj``)."""

    verbose: int = 0
    quiet: bool = False


def _verbosity(ctx: typer.Context) -> _Verbosity:
    """The verbosity the callback put in the context object (the defaults without it)."""
    found = ctx.find_object(_Verbosity)
    return found if found is not None else _Verbosity()


@app.callback()
def _main(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More logging (-vv for debug).")
    ] = 0,
    quiet: Annotated[
        bool, typer.Option("--quiet", "-q", help="Only errors on stderr; no progress display.")
    ] = False,
) -> None:
    """Mirror public economic data (BLS, DataUSA) into S3 and turn it into reports.

    Run `rq demo` to see every step offline, with embedded servers.
    """
    ctx.obj = _Verbosity(verbose=verbose, quiet=quiet)
    level = (
        logging.ERROR
        if quiet
        else (logging.DEBUG if verbose > 1 else logging.INFO if verbose else logging.WARNING)
    )
    _configure_logging(level)


def _configure_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("rq: %(levelname)s: %(message)s"))
    else:
        from rearcquest.logjson import JsonFormatter

        handler.setFormatter(JsonFormatter())
    from rearcquest.surveys import SurveyLogFilter

    handler.addFilter(SurveyLogFilter())  # lines logged while a survey syncs name it
    root = logging.getLogger("rearcquest")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _fail(ctx: typer.Context, exc: RqError) -> NoReturn:
    typer.echo(f"Error: {exc}", err=True)
    if _verbosity(ctx).verbose and exc.__cause__ is not None:
        typer.echo(f"  caused by {type(exc.__cause__).__name__}: {exc.__cause__}", err=True)
    raise typer.Exit(exc.exit_code)


@contextmanager
def _errors(ctx: typer.Context) -> Iterator[None]:
    """Turn an RqError into ``Error: ...`` and its exit code."""
    try:
        yield
    except RqError as exc:
        _fail(ctx, exc)


def _store(bucket: str, endpoint_url: str | None, *, connections: int | None = None) -> ObjectStore:
    from rearcquest.storage import ObjectStore, make_s3_client

    return ObjectStore(
        make_s3_client(endpoint_url=endpoint_url, max_pool_connections=connections), bucket
    )


def _on_command_line(ctx: typer.Context, name: str) -> bool:
    """Tell whether the option ``name`` was given on the command line (not a default or env var)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name == "COMMANDLINE"


def _print_json(doc: Any) -> None:
    typer.echo(json.dumps(doc, indent=2, default=str))


def _summary(fmt: TextOrJson, doc: Callable[[], Any], text: Callable[[], str]) -> None:
    """Print a command's summary on stdout: ``doc()`` as JSON, or the ``text()`` for people."""
    typer.echo(json.dumps(doc(), indent=2, default=str) if fmt is TextOrJson.json else text())


@contextmanager
def _progress(
    ctx: typer.Context, description: str
) -> Iterator[Callable[[SyncProgress], None] | None]:
    """A rich progress display on stderr when it is a terminal; yields the callback or None."""
    if _verbosity(ctx).quiet or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task(description, total=None)
    counts = {"done": 0, "files": 0}

    def callback(event: SyncProgress) -> None:
        if event.kind == "start":
            counts["files"] = event.files
            bar.update(task, total=event.total_bytes or None)
        elif event.kind == "bytes":
            bar.advance(task, event.nbytes)
        else:
            counts["done"] += 1
        bar.update(task, description=f"{description} {counts['done']}/{counts['files']} files")

    with bar:
        yield callback


@contextmanager
def _survey_progress(
    ctx: typer.Context,
    surveys: int | None,
) -> Iterator[tuple[Callable[[str, SyncProgress], None], Callable[[SurveyOutcome], None]] | None]:
    """A rich display of surveys done and bytes moved; yields the two callbacks or None."""
    if _verbosity(ctx).quiet or not sys.stderr.isatty():
        yield None
        return
    import threading

    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("syncing surveys", total=None)
    lock = threading.Lock()
    counts = {"done": 0, "bytes": 0}

    def describe() -> str:
        of = f"/{surveys}" if surveys else ""
        return f"syncing surveys: {counts['done']}{of} done"

    def on_progress(survey: str, event: SyncProgress) -> None:
        with lock:
            if event.kind == "start":
                counts["bytes"] += event.total_bytes
                bar.update(task, total=counts["bytes"] or None)
            elif event.kind == "bytes":
                bar.advance(task, event.nbytes)

    def on_survey(outcome: SurveyOutcome) -> None:
        with lock:
            counts["done"] += 1
            bar.update(task, description=describe())

    bar.update(task, description=describe())
    with bar:
        yield on_progress, on_survey


@app.command("sync-bls")
def sync_bls(
    ctx: typer.Context,
    bucket: BlsBucketOption,
    prefix: Annotated[
        str | None,
        typer.Option(
            "--prefix",
            metavar="PREFIX",
            envvar="RQ_BLS_PREFIX",
            help="Key prefix; default the directory name plus '/' (e.g. 'pr/'); '' for the root.",
            show_default=False,
        ),
    ] = None,
    source_url: Annotated[
        str | None,
        typer.Option(
            "--source-url",
            metavar="URL",
            envvar="RQ_BLS_URL",
            help=f"One BLS directory to mirror [default: {DEFAULT_BLS_URL}]; not with --survey.",
            show_default=False,
        ),
    ] = None,
    survey: Annotated[
        list[str] | None,
        typer.Option(
            "--survey",
            metavar="NAMES",
            help="Surveys of --root-url to mirror, each to <root prefix><survey>/: 'pr,cu,ce' "
            "(repeatable) or 'all' for every directory the root lists.",
            show_default=False,
        ),
    ] = None,
    root_url: RootUrlOption = DEFAULT_ROOT_URL,
    root_prefix: RootPrefixOption = "",
    parallel: Annotated[
        int,
        typer.Option(
            "--parallel",
            metavar="N",
            min=1,
            max=64,
            help="With --survey: surveys synced at once (--max-rps caps them all together).",
        ),
    ] = DEFAULT_PARALLEL,
    contact: ContactOption = None,
    user_agent: UserAgentOption = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the plan (with reasons); change nothing.")
    ] = False,
    no_delete: Annotated[
        bool, typer.Option("--no-delete", help="Keep objects whose file left the listing.")
    ] = False,
    max_delete: Annotated[
        str | None,
        typer.Option(
            "--max-delete",
            metavar="N|P%",
            help="Stop with exit code 4, deleting nothing, rather than delete more than N objects "
            f"or P% of the mirrored files. Default: {DEFAULT_MAX_DELETE}, half, or any file "
            "when at most one "
            "would remain.",
            show_default=False,
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        typer.Option(
            "--include",
            metavar="GLOB",
            help="Only files matching this glob (repeatable).",
            show_default=False,
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            metavar="GLOB",
            help="Never fetch or delete files matching this glob (repeatable).",
            show_default=False,
        ),
    ] = None,
    transfers: Annotated[
        int,
        typer.Option(
            "--transfers",
            metavar="N",
            min=1,
            max=64,
            help="Downloads at once; as many uploads run beside them.",
        ),
    ] = DEFAULT_TRANSFERS,
    max_rps: MaxRpsOption = None,
    retries: Annotated[
        int,
        typer.Option(
            "--retries",
            metavar="N",
            min=1,
            max=20,
            help="Attempts per request (429, 5xx, network).",
        ),
    ] = DEFAULT_ATTEMPTS,
    write_index: Annotated[
        bool,
        typer.Option(
            "--write-index",
            help="Also keep a static index.html of the mirror in the bucket (see serve-index).",
        ),
    ] = False,
    index_key: IndexKeyOption = DEFAULT_INDEX_KEY,
    state_key: Annotated[
        str | None,
        typer.Option(
            "--state-key",
            metavar="KEY",
            help=f"Key of the sync state, outside the mirror; default {STATE_PREFIX}<prefix>.json.",
            show_default=False,
        ),
    ] = None,
    wait: Annotated[
        float,
        typer.Option(
            "--wait",
            metavar="SECONDS",
            min=0,
            help="Wait this long for another sync of the mirror to finish (default: exit 5 at once).",
        ),
    ] = 0,
    no_lock: Annotated[
        bool,
        typer.Option(
            "--no-lock",
            help="Take no lease on the mirror (for endpoints that ignore conditional writes).",
        ),
    ] = False,
    keep_vintages: Annotated[
        bool,
        typer.Option(
            "--vintages",
            envvar="RQ_VINTAGES",
            help="Require a versioned bucket, so every release stays readable (rq releases, "
            "analyze --as-of, revisions); exit 2 when versioning is off.",
        ),
    ] = False,
    endpoint_url: EndpointOption = None,
    fmt: FormatOption = TextOrJson.text,
) -> None:
    """Mirror a BLS time-series directory into a bucket and keep it in sync.

    New and changed files are uploaded, files gone from the listing deleted, unchanged files
    neither downloaded nor uploaded again. A run holds a lease on the mirror; --dry-run takes
    none. Exit codes: 0 ok, 1 some files failed, 2 usage, 3 source unreachable, forbidden or
    unparseable, 4 delete guard tripped (also with --dry-run), 5 another sync holds the mirror.

    With --survey, each survey of --root-url is mirrored, planned, guarded and leased on its own;
    the exit code is the worst survey's.

    Example: rq sync-bls --bucket my-bls-mirror --contact me@example.com --survey pr,cu
    """
    from rearcquest.pipeline import sync_with_index
    from rearcquest.sources._http import RetryPolicy
    from rearcquest.surveys import ALL, parse_surveys, survey_prefix, survey_url, sync_surveys
    from rearcquest.sync import sync_bls

    with _errors(ctx):
        names = parse_surveys(survey) if survey else None
        if names is not None:
            clash = [
                flag
                for flag, given in (
                    ("--source-url/RQ_BLS_URL", source_url is not None),
                    ("--prefix/RQ_BLS_PREFIX", prefix is not None),
                    ("--state-key", state_key is not None),
                    ("--write-index", write_index),
                )
                if given
            ]
            if clash:
                raise typer.BadParameter(
                    f"--survey cannot be combined with {', '.join(clash)}: each survey has its "
                    "own directory, prefix and state",
                    param_hint="--survey",
                )
        # Surveys in parallel upload at once: botocore's default pool (10) would open and drop
        # a connection for each request beyond it.
        pool = 2 * transfers * parallel if names is not None else None
        store = _store(bucket, endpoint_url, connections=pool)
        # What every survey and a single directory share.
        common: dict[str, Any] = {
            "contact": contact,
            "user_agent": user_agent,
            "dry_run": dry_run,
            "delete": not no_delete,
            "max_delete": max_delete,
            "include": include or (),
            "exclude": exclude or (),
            "transfers": transfers,
            "max_rps": max_rps,
            "retry": RetryPolicy(attempts=retries),
            "lock": not no_lock,
            "wait": wait,
            "vintages": keep_vintages,
        }
        if names is not None and names != [ALL] and len(names) == 1:
            # One survey keeps today's single-directory document.
            source_url, prefix = (
                survey_url(root_url, names[0]),
                survey_prefix(root_prefix, names[0]),
            )
        elif names is not None:
            with _survey_progress(ctx, None if names == [ALL] else len(names)) as callbacks:
                many = sync_surveys(
                    store,
                    surveys=names,
                    root_url=root_url,
                    root_prefix=root_prefix,
                    parallel=parallel,
                    on_progress=callbacks[0] if callbacks else None,
                    on_survey=callbacks[1] if callbacks else None,
                    **common,
                )
            _summary(fmt, many.to_dict, lambda: render.surveys_summary(many))
            many.raise_for_errors()
            return
        common.update(source_url=source_url or DEFAULT_BLS_URL, prefix=prefix, state_key=state_key)
        with _progress(ctx, "syncing") as on_progress:
            if write_index:
                result = sync_with_index(
                    store, index_key=index_key, on_progress=on_progress, **common
                )
            else:
                result = sync_bls(store, on_progress=on_progress, **common)
        _summary(fmt, result.to_dict, lambda: render.sync_summary(result))
        result.raise_for_errors()


@app.command("surveys")
def surveys(
    ctx: typer.Context,
    root_url: RootUrlOption = DEFAULT_ROOT_URL,
    bucket: Annotated[
        str | None,
        typer.Option(
            "--bucket",
            metavar="BUCKET",
            help="Also say which surveys this bucket mirrors and when each was last synced.",
            show_default=False,
        ),
    ] = None,
    root_prefix: RootPrefixOption = "",
    contact: ContactOption = None,
    user_agent: UserAgentOption = None,
    max_rps: MaxRpsOption = None,
    endpoint_url: EndpointOption = None,
    fmt: FormatOption = TextOrJson.text,
) -> None:
    """List the surveys of the BLS root with file count, size and latest date.

    Only the root listing and one listing per survey are fetched, never a file. With --bucket,
    each survey's mirror state says how many files are mirrored and when it was last synced.
    Exit codes: 0 ok, 1 some survey's listing failed, 3 the root is unreachable.

    Example: rq surveys --contact me@example.com --bucket my-bls-mirror
    """
    from rearcquest.surveys import survey_inventory

    with _errors(ctx):
        store = _store(bucket, endpoint_url) if bucket else None
        infos = survey_inventory(
            root_url=root_url,
            store=store,
            root_prefix=root_prefix,
            contact=contact,
            user_agent=user_agent,
            max_rps=max_rps,
        )
        with_bucket = store is not None
        _summary(
            fmt,
            lambda: {"surveys": [i.to_dict() for i in infos]},
            lambda: render.inventory_summary(infos, with_bucket=with_bucket),
        )
        for i in infos:
            if i.error is not None:
                typer.echo(f"{i.name}: {i.error}", err=True)
        failed = [i.name for i in infos if i.error is not None]
        if failed:
            raise RqError(f"the listing of {len(failed)} survey(s) failed: {', '.join(failed)}")


@app.command("fetch-population")
def fetch_population(
    ctx: typer.Context,
    bucket: Annotated[
        str,
        typer.Option(
            "--bucket",
            metavar="BUCKET",
            envvar="RQ_POPULATION_BUCKET",
            help="Bucket to store the population JSON in.",
            show_default=False,
        ),
    ],
    key: Annotated[
        str | None,
        typer.Option(
            "--key",
            metavar="KEY",
            envvar="RQ_POPULATION_KEY",
            help="Object key.",
            show_default="datausa/population.json",
        ),
    ] = None,
    url: Annotated[
        str | None,
        typer.Option(
            "--url",
            metavar="URL",
            envvar="RQ_POPULATION_URL",
            help="DataUSA API URL: tesseract, or the old https://datausa.io/api/data?... endpoint.",
            show_default="the DataUSA tesseract API, ACS 1-year, Nation by Year",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Write even when the data is unchanged.")
    ] = False,
    contact: ContactOption = None,
    user_agent: UserAgentOption = None,
    endpoint_url: EndpointOption = None,
    fmt: FormatOption = TextOrJson.text,
) -> None:
    """Fetch the US population by year from DataUSA and store the JSON in a bucket.

    The body is stored as received, with its source URL, fetch time, shape and canonical sha256
    as metadata; it is validated first, and written only when its data changed. Exit codes:
    0 written or unchanged, 1 bad answer (nothing written) or S3 failure, 2 usage,
    3 API unreachable or non-2xx status.

    Example: rq fetch-population --bucket my-bucket --format json
    """
    from rearcquest.config import DEFAULT_POPULATION_KEY, DEFAULT_POPULATION_URL
    from rearcquest.population import fetch_population as run_fetch

    with _errors(ctx):
        store = _store(bucket, endpoint_url)
        result = run_fetch(
            store,
            key=key or DEFAULT_POPULATION_KEY,
            url=url or DEFAULT_POPULATION_URL,
            force=force,
            contact=contact,
            user_agent=user_agent,
        )
        _summary(fmt, result.to_dict, lambda: render.population_summary(result))


# -- analyze (issue 4) --


class AnalyzeReport(StrEnum):
    """Reports of ``rq analyze``."""

    all = "all"
    population = "population"
    best_year = "best-year"
    series_population = "series-population"


class AnalyzeFormat(StrEnum):
    """Output formats of ``rq analyze``."""

    table = "table"
    json = "json"
    csv = "csv"
    markdown = "markdown"


TableFormatOption = Annotated[
    AnalyzeFormat, typer.Option("--format", case_sensitive=False, help="Output on stdout.")
]


class AnalyzeFrom(StrEnum):
    """Where ``rq analyze`` reads the BLS rows."""

    auto = "auto"
    tables = "tables"
    files = "files"


TablesPrefixOption = Annotated[
    str,
    typer.Option(
        "--tables-prefix",
        metavar="PREFIX",
        help="Key prefix of the Parquet tables (rq tables), in the bucket of the mirror.",
    ),
]


def _print_grids(grids: Sequence[TextTable | Grid]) -> None:
    """Print report tables with rich: one per grid, its notes dimmed beneath it."""
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    for spec in grids:
        table = Table(title=spec.title, title_justify="left")
        widths = [
            max([len(n), *(len(row[i]) for row in spec.rows)]) for i, n in enumerate(spec.columns)
        ]
        for index, (name, numeric) in enumerate(zip(spec.columns, spec.numeric, strict=True)):
            justify: Literal["left", "right"] = "right" if numeric else "left"
            if name == "title":
                # A long series title is cut to the width the other columns leave, never
                # wrapped: each row stays one line.
                others = sum(w for i, w in enumerate(widths) if i != index)
                room = max(10, console.width - others - 3 * len(widths) - 1)
                table.add_column(
                    name, justify=justify, no_wrap=True, overflow="ellipsis", max_width=room
                )
            else:
                table.add_column(name, justify=justify)
        for row in spec.rows:
            table.add_row(*row)
        console.print(table)
        for note in spec.notes:
            console.print(f"  {note}", style="dim", markup=False)
        console.print()


@app.command("analyze")
def analyze(
    ctx: typer.Context,
    report: Annotated[
        AnalyzeReport, typer.Option("--report", case_sensitive=False, help="Which report to run.")
    ] = AnalyzeReport.all,
    bls: Annotated[
        str | None,
        typer.Option(
            "--bls",
            metavar="PATH_OR_S3_URL",
            help="BLS data file.",
            show_default="s3://$RQ_BLS_BUCKET/pr/pr.data.0.Current",
        ),
    ] = None,
    population: Annotated[
        str | None,
        typer.Option(
            "--population",
            metavar="PATH_OR_S3_URL",
            help="Stored DataUSA population JSON (either API shape).",
            show_default=f"s3://$RQ_POPULATION_BUCKET/{DEFAULT_POPULATION_KEY}",
        ),
    ] = None,
    from_year: Annotated[
        int,
        typer.Option("--from-year", metavar="YEAR", help="First year of the population report."),
    ] = DEFAULT_FROM_YEAR,
    to_year: Annotated[
        int,
        typer.Option(
            "--to-year", metavar="YEAR", help="Last year of the population report (inclusive)."
        ),
    ] = DEFAULT_TO_YEAR,
    series: Annotated[
        str,
        typer.Option(
            "--series", metavar="SERIES_ID", help="Series of the series-population report."
        ),
    ] = DEFAULT_SERIES,
    period: Annotated[
        str,
        typer.Option("--period", metavar="PERIOD", help="Period of the series-population report."),
    ] = DEFAULT_PERIOD,
    include_annual: Annotated[
        bool,
        typer.Option(
            "--include-annual", help="best-year: add Q05 (annual average) to the quarter sums."
        ),
    ] = False,
    all_years: Annotated[
        bool,
        typer.Option(
            "--all-years", help="series-population: keep years without population (empty)."
        ),
    ] = False,
    fmt: TableFormatOption = AnalyzeFormat.table,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            metavar="DIR",
            help="Also write each report as CSV and Parquet, and PNG charts, into DIR.",
            show_default=False,
        ),
    ] = None,
    source: Annotated[
        AnalyzeFrom,
        typer.Option(
            "--from",
            case_sensitive=False,
            help="Read the BLS rows from the Parquet tables (rq tables), the text file, or the "
            "tables when present and current, else the text (auto).",
        ),
    ] = AnalyzeFrom.auto,
    tables_prefix: TablesPrefixOption = TABLES_PREFIX,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="DATE|RELEASE",
            help="Read the BLS file as it was in the latest release on or before this date "
            "(YYYY-MM-DD), or in this release stamp (see rq releases); population stays current.",
            show_default=False,
        ),
    ] = None,
    endpoint_url: EndpointOption = None,
) -> None:
    """Report on the mirrored data: population statistics, best years, a series with population.

    population: mean and sample standard deviation (ddof=1) of the US population from
    --from-year to --to-year. best-year: for every series, the year whose quarterly values
    (Q01-Q04) have the largest exact sum; ties go to the earliest year. series-population: every
    --series/--period row with the population of the same year. Inputs default to what
    sync-bls and fetch-population store; local paths work too.

    Example: rq analyze --report best-year --include-annual --format json
    """
    from rearcquest.analytics import REPORTS
    from rearcquest.tables import analyze as run_analysis

    with _errors(ctx):
        options: dict[str, Any] = {
            "reports": REPORTS if report is AnalyzeReport.all else (report.value,),
            "bls": bls,
            "population": population,
            "from_year": from_year,
            "to_year": to_year,
            "series_id": series,
            "period": period,
            "include_annual": include_annual,
            "all_years": all_years,
            "endpoint_url": endpoint_url,
        }
        if as_of is not None:
            from rearcquest.vintages import analyze_as_of

            if source is AnalyzeFrom.tables:
                raise ConfigError("--as-of reads the text file of a release; drop --from tables")
            result = analyze_as_of(as_of, **options)
            typer.echo(f"as of release {result.release}: {result.bls_source}", err=True)
        else:
            result = run_analysis(source=source.value, tables_prefix=tables_prefix, **options)
        if fmt is AnalyzeFormat.json:
            typer.echo(render.to_json(result))
        elif fmt is AnalyzeFormat.csv:
            typer.echo(render.to_csv(result), nl=False)
        elif fmt is AnalyzeFormat.markdown:
            typer.echo(render.to_markdown(result), nl=False)
        else:
            _print_grids(render.tables(result))
        if output is not None:
            for path in render.write_outputs(result, output):
                typer.echo(f"wrote {path}", err=True)


# -- tables and sql (issue 12) --


@app.command("tables")
def tables(
    ctx: typer.Context,
    survey: Annotated[
        str,
        typer.Option(
            "--survey",
            metavar="S,...|all",
            help="Surveys to build, comma-separated, or all: every mirrored <survey>/ prefix.",
        ),
    ] = ",".join(DEFAULT_SURVEYS),
    bucket: BlsBucketOption = "",
    tables_prefix: TablesPrefixOption = TABLES_PREFIX,
    population: Annotated[
        str | None,
        typer.Option(
            "--population",
            metavar="S3_URL",
            help="Stored DataUSA answer for the population table.",
            show_default="s3://$RQ_POPULATION_BUCKET/datausa/population.json, else the same key "
            "in --bucket",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Rebuild every table, changed or not.")
    ] = False,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="DATE|RELEASE",
            help="Build the tables of the latest release on or before this date, under "
            "<prefix>as-of/<release>/ (population: the current table).",
            show_default=False,
        ),
    ] = None,
    endpoint_url: EndpointOption = None,
    fmt: FormatOption = TextOrJson.text,
) -> None:
    """Build query-ready Parquet tables from the mirrored surveys and the population.

    Writes <prefix><survey>/observations/file=<data file>/part-0.parquet for every data file,
    <prefix><survey>/series.parquet with every code decoded by the survey's mapping files, and
    <prefix>population/population.parquet. Only tables whose input changed since the last build
    (the manifest beside them) are rebuilt; a malformed file fails alone, leaving its old table,
    and exits 1. See docs/tables.md.

    Example: rq tables --bucket my-bls-mirror --survey all --format json
    """
    from rearcquest.tables import build_tables, population_source

    if as_of is not None:
        from rearcquest.vintages import tables_as_of

        with _errors(ctx):
            built, written = tables_as_of(
                as_of,
                tables_prefix=tables_prefix,
                bucket=bucket or None,
                prefix=survey,
                endpoint_url=endpoint_url,
            )
            if fmt is TextOrJson.json:
                _print_json({"release": built.release, "written": written})
            else:
                typer.echo(f"tables of release {built.release}:")
                for url in written:
                    typer.echo(f"  {url}")
        return
    with _errors(ctx):
        store = _store(bucket, endpoint_url)
        population_store, population_key = population_source(store, population)
        surveys = None if survey.strip() == "all" else [s.strip() for s in survey.split(",")]
        result = build_tables(
            store,
            surveys=[s for s in surveys if s] if surveys is not None else None,
            tables_prefix=tables_prefix,
            population_store=population_store,
            population_object=population_key,
            force=force,
            on_progress=log.info,
        )
        _summary(fmt, result.to_dict, lambda: render.tables_summary(result))
        result.raise_for_errors()


@app.command("sql")
def sql(
    ctx: typer.Context,
    query: Annotated[
        str | None,
        typer.Argument(metavar="QUERY", help="The SQL (Polars SQL).", show_default=False),
    ] = None,
    named: Annotated[
        str | None,
        typer.Option(
            "--named",
            metavar="NAME",
            help="Run a report's named query instead: population, best_year, series_population.",
            show_default=False,
        ),
    ] = None,
    location: Annotated[
        str | None,
        typer.Option(
            "--tables",
            metavar="DIR_OR_S3_URL",
            help="The tables: a local directory or an s3://bucket/prefix/.",
            show_default="s3://$RQ_BLS_BUCKET/tables/",
        ),
    ] = None,
    fmt: TableFormatOption = AnalyzeFormat.table,
    as_of: Annotated[
        str | None,
        typer.Option(
            "--as-of",
            metavar="DATE|RELEASE",
            help="Query the tables of the latest release on or before this date, built from the "
            "release's file versions (population: the current table).",
            show_default=False,
        ),
    ] = None,
    endpoint_url: EndpointOption = None,
) -> None:
    """Run SQL over the Parquet tables that rq tables builds, local or in S3.

    The tables are <survey>_observations (column file: the data file of each partition; the
    files overlap, so filter on it), <survey>_series and population. See docs/tables.md.

    Example: rq sql "SELECT year, population FROM population ORDER BY year" --format csv
    """
    from rearcquest.tables import named_query, run_sql

    with _errors(ctx):
        if (query is None) == (named is None):
            raise ConfigError("give either a QUERY or --named NAME")
        text = query if query is not None else named_query(str(named))
        if as_of is not None:
            from rearcquest.vintages import sql_as_of

            if location is not None:
                raise ConfigError("--as-of builds the release's tables itself; drop --tables")
            built, answer = sql_as_of(text, as_of, endpoint_url=endpoint_url)
            typer.echo(f"as of release {built.release}", err=True)
        else:
            answer = run_sql(text, location=location, endpoint_url=endpoint_url)
        if fmt is AnalyzeFormat.json:
            typer.echo(render.frame_json(answer), nl=False)
        elif fmt is AnalyzeFormat.csv:
            typer.echo(render.frame_csv(answer), nl=False)
        elif fmt is AnalyzeFormat.markdown:
            typer.echo(render.frame_markdown(answer), nl=False)
        else:
            from rich.console import Console
            from rich.table import Table

            columns, numeric, rows = render.frame_cells(answer)
            table = Table()
            for name, right in zip(columns, numeric, strict=True):
                table.add_column(name, justify="right" if right else "left")
            for row in rows:
                table.add_row(*row)
            Console(highlight=False).print(table)


@app.command("serve-index")
def serve_index(
    ctx: typer.Context,
    bucket: BlsBucketOption,
    prefix: Annotated[
        str,
        typer.Option(
            "--prefix",
            metavar="PREFIX",
            help="Show and serve only keys under this prefix; '' = all.",
        ),
    ] = "",
    host: Annotated[
        str,
        typer.Option(
            "--host",
            metavar="HOST",
            help="Address to listen on; 0.0.0.0 opens it to the network (use --token).",
        ),
    ] = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            envvar="RQ_INDEX_TOKEN",
            help="Require this token (16+ characters) on every request: bearer header, or cookie "
            "set by ?token=. 'auto' generates one and prints the link.",
            show_default=False,
        ),
    ] = None,
    write_static: Annotated[
        bool,
        typer.Option(
            "--write-static", help="Write a static index.html into the bucket instead of serving."
        ),
    ] = False,
    index_key: IndexKeyOption = DEFAULT_INDEX_KEY,
    presign: Annotated[
        int | None,
        typer.Option(
            "--presign",
            min=1,
            max=MAX_PRESIGN_SECONDS,
            metavar="SECONDS",
            help="With --write-static: presign every link (and print a share URL) for SECONDS.",
            show_default=False,
        ),
    ] = None,
    cache_seconds: Annotated[
        float,
        typer.Option(
            "--cache-seconds",
            metavar="SECONDS",
            min=0,
            help="Reuse a folder's listing this long; 0 = every request.",
        ),
    ] = DEFAULT_CACHE_SECONDS,
    endpoint_url: EndpointOption = None,
    fmt: FormatOption = TextOrJson.text,
) -> None:
    """Browse and download the bucket's objects in a web page, or write a static index.html.

    The live page lists folders and files (size, last modified), sorts by each column, filters
    by name, offers a JSON listing (?format=json) and streams downloads from S3 with Range and
    conditional requests. It listens on 127.0.0.1 unless told otherwise; on a network, add
    --host 0.0.0.0 --token auto. Big folders are shown 1,000 entries a page. --host, --port,
    --token and --cache-seconds are for serving; --index-key, --presign and --format for
    --write-static: each is refused in the other mode.

    Example: rq serve-index --bucket my-bls-mirror --prefix pr/
    """
    from rearcquest.storage import ObjectStore, make_s3_client

    # Each mode ignores the other's options: refuse them rather than drop them silently.
    static_only = {"index_key": "--index-key", "presign": "--presign", "fmt": "--format"}
    live_only = {
        "host": "--host",
        "port": "--port",
        "token": "--token",
        "cache_seconds": "--cache-seconds",
    }
    ignored = live_only if write_static else static_only
    clash = [flag for name, flag in ignored.items() if _on_command_line(ctx, name)]
    if clash:
        mode = "--write-static" if write_static else "serving (without --write-static)"
        raise typer.BadParameter(f"cannot be used with {mode}", param_hint=", ".join(clash))
    with _errors(ctx):
        # Each download holds an S3 connection while it streams: keep more than botocore's 10.
        client = make_s3_client(endpoint_url=endpoint_url, max_pool_connections=64)
        store = ObjectStore(client, bucket)
        if write_static:
            from rearcquest.index import write_static_index

            written = write_static_index(store, prefix, index_key, presign_seconds=presign)
            _summary(fmt, written.to_dict, lambda: render.static_index_summary(written))
            return
        from rearcquest.index import AUTO_TOKEN, resolve_token, serve

        required = resolve_token(token)

        def ready(url: str) -> None:
            needs = " (token required)" if required else ""
            typer.echo(f"Serving {store.url(prefix)} at {url}{needs}; press Ctrl-C to stop")
            if required and token == AUTO_TOKEN:
                # Shown this once: it is nowhere else, and a new one is made at every start.
                typer.echo(f"Open {url}?token={required}")

        serve(
            store,
            prefix=prefix,
            host=host,
            port=port,
            token=required,
            on_ready=ready,
            cache_seconds=cache_seconds,
        )


@app.command("run")
def run(
    ctx: typer.Context,
    bls_bucket: Annotated[
        str | None,
        typer.Option(
            "--bls-bucket",
            metavar="BUCKET",
            envvar="RQ_BLS_BUCKET",
            help="Bucket of the BLS mirror.",
            show_default=False,
        ),
    ] = None,
    population_bucket: Annotated[
        str | None,
        typer.Option(
            "--population-bucket",
            metavar="BUCKET",
            envvar="RQ_POPULATION_BUCKET",
            help="Bucket of the population JSON.",
            show_default=False,
        ),
    ] = None,
    contact: ContactOption = None,
    user_agent: UserAgentOption = None,
    reports: Annotated[
        bool, typer.Option("--reports", help="Then print the three reports (rq analyze).")
    ] = False,
    survey: Annotated[
        list[str] | None,
        typer.Option(
            "--survey",
            metavar="NAMES",
            help="Sync these surveys of --root-url (as sync-bls --survey) instead of the one "
            "directory RQ_BLS_URL: 'pr,cu,ce' (repeatable) or 'all'.",
            show_default=False,
        ),
    ] = None,
    root_url: RootUrlOption = DEFAULT_ROOT_URL,
    root_prefix: RootPrefixOption = "",
    endpoint_url: EndpointOption = None,
    fmt: FormatOption = TextOrJson.text,
) -> None:
    """Run the scheduled job: sync-bls, then fetch-population, for cron and systemd.

    Every other setting comes from the RQ_* variables (docs/configuration.md). Every step runs
    whatever the others did; the exit code is the highest of the failed steps' (0 exactly when
    "ok" is true). Logs are JSON lines when stderr is not a terminal.

    Example: RQ_CONTACT=me@example.com rq run --bls-bucket my-bls --population-bucket my-pop
    """
    import dataclasses

    from rearcquest.config import Settings
    from rearcquest.pipeline import run_pipeline
    from rearcquest.storage import make_s3_client
    from rearcquest.surveys import parse_surveys

    with _errors(ctx):
        overrides: dict[str, Any] = {
            "bls_bucket": bls_bucket,
            "population_bucket": population_bucket,
            "contact": contact,
            "user_agent": user_agent,
        }
        settings = dataclasses.replace(
            Settings.from_env(), **{k: v for k, v in overrides.items() if v is not None}
        )
        result = run_pipeline(
            settings,
            s3_client=make_s3_client(endpoint_url=endpoint_url),
            reports=reports,
            surveys=parse_surveys(survey) if survey else None,
            root_url=root_url,
            root_prefix=root_prefix,
        )
        _summary(fmt, result.to_dict, lambda: render.pipeline_summary(result))
        result.raise_for_errors()


@app.command("demo")
def demo(
    ctx: typer.Context,
    endpoint_url: Annotated[
        str | None,
        typer.Option(
            "--endpoint-url",
            metavar="URL",
            help="Use this S3 and SQS endpoint (e.g. a moto server) instead of the embedded one.",
            show_default=False,
        ),
    ] = None,
    bucket: Annotated[
        str, typer.Option("--bucket", metavar="BUCKET", help="Bucket for the demo.")
    ] = DEMO_BUCKET,
    serve: Annotated[
        bool,
        typer.Option(
            "--serve", help="Then keep the index page of the demo bucket up until Ctrl-C."
        ),
    ] = False,
    port: PortOption = DEFAULT_PORT,
) -> None:
    """Run every step offline: embedded S3, a local BLS-like server with real data.

    Syncs one real BLS release, switches the server to a newer release and syncs again, fetches
    the population (an S3 event to a queue), drains the queue into the report function as Lambda
    would, and prints the three reports. Needs no AWS account and no internet, and leaves nothing
    running; with --serve, the index page of the bucket stays up until Ctrl-C.

    Example: rq demo
    """
    from rearcquest.demo import run_demo

    def show(title: str, payload: Any) -> None:
        typer.echo(f"\n== {title}")
        if payload is None:
            return
        if hasattr(payload, "plan"):
            typer.echo(render.sync_summary(payload))
        elif hasattr(payload, "written"):
            typer.echo(render.population_summary(payload))
        elif hasattr(payload, "reports"):
            typer.echo(render.to_text(payload, max_rows=10).rstrip())
        elif isinstance(payload, str):
            typer.echo(payload)
        else:
            _print_json(payload)

    def keep_serving(store: ObjectStore, _bls: Any) -> None:
        from rearcquest.index import serve as serve_index

        def ready(url: str) -> None:
            show(f"Browse the demo bucket at {url} (Ctrl-C to stop)", None)

        serve_index(store, port=port, on_ready=ready)

    with _errors(ctx):
        run_demo(
            bucket=bucket,
            endpoint_url=endpoint_url,
            on_step=show,
            keep_running=keep_serving if serve else None,
        )


# -- releases and revisions (issue 13) --


class ReleasesFormat(StrEnum):
    """Output formats of ``rq releases``."""

    table = "table"
    json = "json"


MirrorBucketOption = Annotated[
    str | None,
    typer.Option(
        "--bucket",
        metavar="BUCKET",
        envvar="RQ_BLS_BUCKET",
        help="Bucket of the mirror.",
        show_default=False,
    ),
]
SurveyOption = Annotated[
    str | None,
    typer.Option(
        "--survey",
        metavar="PREFIX",
        help="The mirror's prefix, one per survey (e.g. 'pr'); default $RQ_BLS_PREFIX or 'pr/'.",
        show_default=False,
    ),
]


@app.command("releases")
def releases(
    ctx: typer.Context,
    bucket: MirrorBucketOption = None,
    survey: SurveyOption = None,
    fmt: Annotated[
        ReleasesFormat, typer.Option("--format", case_sensitive=False, help="Output on stdout.")
    ] = ReleasesFormat.table,
    endpoint_url: EndpointOption = None,
) -> None:
    """List the releases a mirror has kept, newest first, with the files each changed.

    A sync that changes the mirror records a release: the latest listing date of the files it
    changed, when it ran, and each file's sha256 and S3 version id.

    Example: rq releases --bucket my-bls-mirror --format json
    """
    from rearcquest.render_vintages import releases_grid, releases_json
    from rearcquest.vintages import list_releases

    with _errors(ctx):
        found = list_releases(bucket=bucket, prefix=survey, endpoint_url=endpoint_url)
        if fmt is ReleasesFormat.json:
            typer.echo(releases_json(found))
        else:
            _print_grids([releases_grid(found)])


@app.command("revisions")
def revisions(
    ctx: typer.Context,
    from_release: Annotated[
        str,
        typer.Option(
            "--from",
            metavar="DATE|RELEASE",
            help="The older release: a date, a release stamp, 'previous' or 'latest'.",
        ),
    ] = DEFAULT_FROM_RELEASE,
    to_release: Annotated[
        str,
        typer.Option("--to", metavar="DATE|RELEASE", help="The newer release."),
    ] = DEFAULT_TO_RELEASE,
    file: Annotated[
        str, typer.Option("--file", metavar="NAME", help="The data file to compare.")
    ] = DEFAULT_FILE,
    series: Annotated[
        str | None,
        typer.Option(
            "--series", metavar="GLOB", help="Only series matching this glob.", show_default=False
        ),
    ] = None,
    bucket: MirrorBucketOption = None,
    survey: SurveyOption = None,
    fmt: TableFormatOption = AnalyzeFormat.table,
    output: Annotated[
        str | None,
        typer.Option(
            "--output",
            metavar="DIR",
            help="Also write revisions.csv, summary.csv and a chart of the largest revisions.",
            show_default=False,
        ),
    ] = None,
    endpoint_url: EndpointOption = None,
) -> None:
    """Compare two releases of a data file: revised values, observations added and removed.

    Observations are keyed on series, year and period; values are exact decimals as BLS prints
    them. The releases' bytes are read at the S3 versions the release log names.

    Example: rq revisions --from 2025-06-05 --to latest --series 'PRS30*' --format csv
    """
    from rearcquest import render_vintages as out
    from rearcquest.vintages import revisions as compare

    with _errors(ctx):
        result = compare(
            from_release=from_release,
            to_release=to_release,
            file=file,
            series=series,
            bucket=bucket,
            prefix=survey,
            endpoint_url=endpoint_url,
        )
        if fmt is AnalyzeFormat.json:
            typer.echo(out.revisions_json(result), nl=False)
        elif fmt is AnalyzeFormat.csv:
            typer.echo(out.revisions_csv(result), nl=False)
        elif fmt is AnalyzeFormat.markdown:
            typer.echo(out.grids_markdown(out.revisions_grids(result)), nl=False)
        else:
            _print_grids(out.revisions_grids(result))
        if output is not None:
            for path in out.write_revisions(result, output):
                typer.echo(f"wrote {path}", err=True)


def main() -> None:
    """Entry point of the ``rq`` console script."""
    import atexit
    import gc

    # Exit would otherwise walk every object botocore and typer built (~0.2 s per run); nothing
    # rq needs finalised lives only in a reference cycle.
    atexit.register(gc.freeze)
    app(prog_name="rq")
