"""The ``rq`` command line: parse the arguments, call one library function, render the result.

This is the only module that imports typer; what it shows people with rich (progress displays,
report tables) is in :mod:`rearcquest.output._console`. Results go to stdout, progress and logs to
stderr. An :class:`~rearcquest.errors.RqError` is caught here, once, and printed as ``Error: ...``
with the error's exit code; usage errors exit 2 (Typer's default).
"""

from __future__ import annotations

import logging
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperCommand, TyperGroup

from rearcquest import __version__
from rearcquest._text import visible, visible_lines
from rearcquest.config import (
    DEFAULT_ATTEMPTS,
    DEFAULT_BLS_URL,
    DEFAULT_CACHE_SECONDS,
    DEFAULT_FILE,
    DEFAULT_FROM_RELEASE,
    DEFAULT_FROM_YEAR,
    DEFAULT_HOST,
    DEFAULT_INDEX_KEY,
    DEFAULT_MAX_DELETE,
    DEFAULT_PARALLEL,
    DEFAULT_PERIOD,
    DEFAULT_POPULATION_KEY,
    DEFAULT_POPULATION_URL,
    DEFAULT_PORT,
    DEFAULT_ROOT_URL,
    DEFAULT_SERIES,
    DEFAULT_SURVEYS,
    DEFAULT_TO_RELEASE,
    DEFAULT_TO_YEAR,
    DEFAULT_TRANSFERS,
    DEMO_BUCKET,
    LARGEST_REVISIONS,
    MAX_PRESIGN_SECONDS,
    POLITE_RPS,
)
from rearcquest.errors import OptionError, RqError
from rearcquest.layout import STATE_PREFIX
from rearcquest.output import _console as console
from rearcquest.output import render

if TYPE_CHECKING:
    from collections.abc import Sequence
    from pathlib import Path

    from rearcquest.aws.storage import ObjectStore, S3Access
    from rearcquest.output.render import TextTable

# -v and -q, the app's own flags, also after the command (`rq analyze -v` as `rq -v analyze`); a
# command's --format also before it (`rq --format json analyze` as `rq analyze --format json`).
_APP_FLAGS = re.compile(r"^(-v+|--verbose|-q|--quiet)$")


class _Group(TyperGroup):
    """The app: its verbosity flags are taken from after the command name too, and a command's
    ``--format`` from before it."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:  # click's own signature
        return super().parse_args(ctx, _flags_in_place(args))


def _flags_in_place(args: list[str]) -> list[str]:
    """``args`` with ``-v``/``-q`` given after the command moved before it, and ``--format X``
    given before the command moved after it (nothing after ``--`` is touched)."""
    before: list[str] = []
    formats: list[str] = []
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        if args[i] == "--format" and i + 1 < len(args):
            formats += args[i : i + 2]
            i += 2
            continue
        (formats if args[i].startswith("--format=") else before).append(args[i])
        i += 1
    if i >= len(args) or args[i] == "--":
        return args  # no command: the app's own help, version or completion
    command, after = args[i], args[i + 1 :]
    end = after.index("--") if "--" in after else len(after)
    moved = [arg for arg in after[:end] if _APP_FLAGS.match(arg)]
    rest = [arg for arg in after[:end] if not _APP_FLAGS.match(arg)]
    return [*before, *moved, command, *formats, *rest, *after[end:]]


app = typer.Typer(
    cls=_Group,
    name="rq",
    help="Mirror public economic data (BLS, DataUSA) into S3 and turn it into reports.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)

log = logging.getLogger("rearcquest")


class TextOrJson(StrEnum):
    """Output formats of the commands that report what they did."""

    text = "text"
    json = "json"


def _opt(flag: str, help: str, metavar: str | None = None, **more: Any) -> Any:
    """``typer.Option(flag, help=..., metavar=..., ...)``: every option here, in one line."""
    return typer.Option(flag, help=help, metavar=metavar, **more)


# Shared options, declared once (STYLE 8).
EndpointOption = Annotated[
    str | None,
    _opt(
        "--endpoint-url",
        "S3-compatible endpoint (MinIO, SeaweedFS, moto); default: AWS.",
        "URL",
        envvar="AWS_ENDPOINT_URL",
    ),
]
FormatOption = Annotated[
    TextOrJson, _opt("--format", "Summary format on stdout.", case_sensitive=False)
]
_BLS_BUCKET = _opt("--bucket", "Bucket of the BLS mirror.", "BUCKET", envvar="RQ_BLS_BUCKET")
BlsBucketOption = Annotated[str, _BLS_BUCKET]
MirrorBucketOption = Annotated[str | None, _BLS_BUCKET]  # None: the library's default
RootUrlOption = Annotated[
    str,
    _opt("--root-url", "Root listing the surveys.", "URL", envvar="RQ_BLS_ROOT_URL"),
]
RootPrefixOption = Annotated[
    str,
    _opt(
        "--root-prefix",
        "Key prefix the survey mirrors are under (default: bucket root).",
        "PREFIX",
        envvar="RQ_BLS_ROOT_PREFIX",
    ),
]
TablesPrefixOption = Annotated[
    str | None,
    _opt(
        "--tables-prefix",
        "Key prefix of the Parquet tables (rq tables), in the bucket of the mirror.",
        "PREFIX",
        envvar="RQ_TABLES_PREFIX",
        show_default="<root prefix>tables/",
    ),
]
MaxRpsOption = Annotated[
    float | None,
    _opt(
        "--max-rps",
        "Highest request rate to the source, summed over every survey and transfer; "
        f"default {POLITE_RPS:g}/s for bls.gov, 0 = unlimited.",
        "R",
        envvar="RQ_MAX_RPS",
        min=0,
    ),
]
IndexKeyOption = Annotated[str, _opt("--index-key", "Key of the static index page.", "KEY")]
PortOption = Annotated[
    int,
    _opt("--port", "Port of the index page; 0 picks a free one.", "PORT", min=0, max=65535),
]
ContactOption = Annotated[
    str | None,
    _opt(
        "--contact",
        "Your e-mail, sent in the User-Agent (BLS refuses requests without one).",
        "EMAIL",
        envvar="RQ_CONTACT",
    ),
]
UserAgentOption = Annotated[
    str | None,
    _opt(
        "--user-agent",
        "A complete User-Agent instead of one built from --contact.",
        "UA",
        envvar="RQ_USER_AGENT",
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
        _opt("--version", "Show the version and exit.", callback=_version, is_eager=True),
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
    _configure_logging(_log_level(ctx.obj))


def _log_level(verbosity: _Verbosity) -> int:
    if verbosity.quiet:
        return logging.ERROR
    return (
        logging.DEBUG
        if verbosity.verbose > 1
        else logging.INFO
        if verbosity.verbose
        else logging.WARNING
    )


def _configure_logging(level: int) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if sys.stderr.isatty():
        handler.setFormatter(logging.Formatter("rq: %(levelname)s: %(message)s"))
    else:
        from rearcquest.logjson import JsonFormatter

        handler.setFormatter(JsonFormatter())
    from rearcquest.mirror.surveys import SurveyLogFilter

    handler.addFilter(SurveyLogFilter())  # lines logged while a survey syncs name it
    root = logging.getLogger("rearcquest")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


# 128 + SIGINT, what a shell reports for a command stopped with Ctrl-C.
EXIT_INTERRUPTED = 130
# 128 + SIGTERM, what a shell reports for a command stopped by `kill`, systemd or a container stop.
EXIT_TERMINATED = 143


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread as Ctrl-C is, so that the same cleanup runs: the
    library lets a ``KeyboardInterrupt`` through every handler that records failures."""


def _on_sigterm(signum: int, frame: object) -> None:
    # A second SIGTERM (a cleanup that hangs) ends the process at once, as the default would.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    raise _Terminated


def _handle_sigterm() -> None:
    """Handle SIGTERM like Ctrl-C (see :class:`_Terminated`): the lease released, uploads
    aborted, temporary folders removed, then ``Terminated.`` and exit 143."""
    signal.signal(signal.SIGTERM, _on_sigterm)


def _stdout_closed() -> bool:
    """Whether nothing reads stdout any more (``rq ... | head`` after head exited).

    A BrokenPipeError may come from any pipe or socket; only one on stdout means the reader has
    all it wanted. The write end of a pipe whose readers are gone polls as an error.
    """
    import select

    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture)
        return False
    if not hasattr(select, "poll"):
        return False
    poller = select.poll()
    poller.register(fd, select.POLLOUT)
    return any(events & select.POLLERR for _, events in poller.poll(0))


def _discard_stdout() -> None:
    """Point stdout at the null device, so that the interpreter's last flush of what is still
    buffered does not fail again (the recipe of the ``signal`` module's documentation)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


class _Command(TyperCommand):
    """A command whose :class:`RqError` is printed once, as ``Error: ...`` with its exit code.

    An :class:`OptionError` (options that cannot go together) is Typer's usage error instead:
    the usage line, then ``Invalid value for <options>: ...``, exit 2. Ctrl-C prints
    ``Interrupted.`` and exits 130, SIGTERM ``Terminated.`` and 143; a reader of stdout that
    stops early (``| head``) ends the command quietly with exit 0.
    """

    def invoke(self, ctx: Any) -> Any:  # Any: typer's own (vendored) click.Context
        try:
            return super().invoke(ctx)
        except _Terminated:
            typer.echo("Terminated.", err=True)
            raise typer.Exit(EXIT_TERMINATED) from None
        except KeyboardInterrupt:
            typer.echo("Interrupted.", err=True)
            raise typer.Exit(EXIT_INTERRUPTED) from None
        except BrokenPipeError:
            if not _stdout_closed():
                raise
            _discard_stdout()
            raise typer.Exit(0) from None
        except OptionError as exc:
            raise typer.BadParameter(str(exc), ctx=ctx, param_hint=exc.options) from exc
        except RqError as exc:
            # A message may quote a file name or a cell: its controls are shown, not sent.
            typer.echo(visible_lines(f"Error: {exc}"), err=True)
            if _verbosity(ctx).verbose and exc.__cause__ is not None:
                cause = exc.__cause__
                typer.echo(visible_lines(f"  caused by {type(cause).__name__}: {cause}"), err=True)
            raise typer.Exit(exc.exit_code) from None


def _command(name: str) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """``app.command(name)``, reporting errors as :class:`_Command` does."""
    return app.command(name, cls=_Command)


def _given(ctx: typer.Context) -> set[str]:
    """The options given on the command line (not defaults or env vars), as written there."""
    sources = {p.opts[0]: ctx.get_parameter_source(p.name or "") for p in ctx.command.params}
    return {flag for flag, source in sources.items() if source and source.name == "COMMANDLINE"}


def _s3(endpoint_url: str | None, *, connections: int | None = None) -> S3Access:
    """The command's S3 access: its one client is made when S3 is first read."""
    from rearcquest.aws.storage import S3Access

    return S3Access(endpoint_url=endpoint_url, max_pool_connections=connections)


def _store(bucket: str, endpoint_url: str | None, *, connections: int | None = None) -> ObjectStore:
    return _s3(endpoint_url, connections=connections).store(bucket)


def _summary(fmt: TextOrJson, doc: Callable[[], Any], text: Callable[[], str]) -> None:
    """Print a command's summary on stdout: ``doc()`` as JSON, or the ``text()`` for people."""
    typer.echo(render.json_text(doc()) if fmt is TextOrJson.json else visible_lines(text()))


@_command("sync-bls")
def sync_bls(
    ctx: typer.Context,
    bucket: BlsBucketOption,
    prefix: Annotated[
        str | None,
        _opt(
            "--prefix",
            "Key prefix; default the directory name plus '/' (e.g. 'pr/'); '' for the root.",
            "PREFIX",
            envvar="RQ_BLS_PREFIX",
        ),
    ] = None,
    source_url: Annotated[
        str | None,
        _opt(
            "--source-url",
            f"One BLS directory to mirror [default: {DEFAULT_BLS_URL}]; not with --survey.",
            "URL",
            envvar="RQ_BLS_URL",
        ),
    ] = None,
    survey: Annotated[
        list[str] | None,
        _opt(
            "--survey",
            "Surveys of --root-url to mirror, each to <root prefix><survey>/: 'pr,cu,ce' "
            "(repeatable) or 'all' for every directory the root lists.",
            "NAMES",
        ),
    ] = None,
    root_url: RootUrlOption = DEFAULT_ROOT_URL,
    root_prefix: RootPrefixOption = "",
    parallel: Annotated[
        int,
        _opt(
            "--parallel",
            "With --survey: surveys synced at once (--max-rps caps them all together).",
            "N",
            min=1,
            max=64,
        ),
    ] = DEFAULT_PARALLEL,
    contact: ContactOption = None,
    user_agent: UserAgentOption = None,
    dry_run: Annotated[
        bool, _opt("--dry-run", "Print the plan (with reasons); change nothing.")
    ] = False,
    no_delete: Annotated[
        bool, _opt("--no-delete", "Keep objects whose file left the listing.")
    ] = False,
    max_delete: Annotated[
        str | None,
        _opt(
            "--max-delete",
            "Stop with exit code 4, deleting nothing, rather than delete more than N objects "
            f"or P% of the mirrored files. Default: {DEFAULT_MAX_DELETE}, half, or any file "
            "when at most one "
            "would remain.",
            "N|P%",
        ),
    ] = None,
    include: Annotated[
        list[str] | None,
        _opt("--include", "Only files matching this glob (repeatable).", "GLOB"),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        _opt("--exclude", "Never fetch or delete files matching this glob (repeatable).", "GLOB"),
    ] = None,
    transfers: Annotated[
        int,
        _opt(
            "--transfers", "Downloads at once; as many uploads run beside them.", "N", min=1, max=64
        ),
    ] = DEFAULT_TRANSFERS,
    max_rps: MaxRpsOption = None,
    retries: Annotated[
        int,
        _opt("--retries", "Attempts per request (429, 5xx, network).", "N", min=1, max=20),
    ] = DEFAULT_ATTEMPTS,
    write_index: Annotated[
        bool,
        _opt(
            "--write-index",
            "Also keep a static index.html of the mirror in the bucket (see serve-index).",
        ),
    ] = False,
    index_key: IndexKeyOption = DEFAULT_INDEX_KEY,
    tables: Annotated[
        bool,
        typer.Option(
            "--tables",
            envvar="RQ_TABLES",
            help="Also build the Parquet tables (rq tables) of each survey whose sync changed "
            "something, or whose last build failed; a failed table fails its survey (exit 1).",
        ),
    ] = False,
    tables_prefix: TablesPrefixOption = None,
    state_key: Annotated[
        str | None,
        _opt(
            "--state-key",
            f"Key of the sync state, outside the mirror; default {STATE_PREFIX}<prefix>.json.",
            "KEY",
        ),
    ] = None,
    wait: Annotated[
        float,
        _opt(
            "--wait",
            "Wait this long for another sync of the mirror to finish (default: exit 5 at once).",
            "SECONDS",
            min=0,
        ),
    ] = 0,
    no_lock: Annotated[
        bool,
        _opt(
            "--no-lock",
            "Take no lease on the mirror (for endpoints that ignore conditional writes).",
        ),
    ] = False,
    vintages: Annotated[
        bool,
        _opt(
            "--vintages",
            "Require a versioned bucket, so every release stays readable (rq releases, "
            "analyze --as-of, revisions); exit 2 when versioning is off.",
            envvar="RQ_VINTAGES",
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
    from rearcquest.config import RetryPolicy, SyncOptions
    from rearcquest.jobs.job import (
        AfterSync,
        SurveySet,
        check_surveys,
        one_or_many,
        run_survey,
        run_surveys,
    )
    from rearcquest.layout import ALL, parse_surveys

    options = SyncOptions(
        source_url=source_url or DEFAULT_BLS_URL,
        prefix=prefix,
        contact=contact,
        user_agent=user_agent,
        max_rps=max_rps,
        retry=RetryPolicy(attempts=retries),
        dry_run=dry_run,
        delete=not no_delete,
        max_delete=max_delete,
        include=include or (),
        exclude=exclude or (),
        transfers=transfers,
        state_key=state_key,
        index_key=index_key if write_index else None,
        lock=not no_lock,
        wait=wait,
        vintages=vintages,
    )
    after = AfterSync(index=write_index, tables=tables, tables_prefix=tables_prefix)
    names = parse_surveys(survey) if survey else None
    many: SurveySet | None = None
    connections = None
    if names is not None:
        single_only = {
            "--source-url/RQ_BLS_URL": source_url is not None,
            "--prefix/RQ_BLS_PREFIX": prefix is not None,
            "--state-key": state_key is not None,
            "--write-index": write_index,
        }
        if any(single_only.values()):
            given = ", ".join(flag for flag, on in single_only.items() if on)
            raise OptionError(
                f"--survey cannot be combined with {given}: each survey has its own directory, "
                "prefix and state",
                options="--survey",
            )
        asked = SurveySet(names, root_url, root_prefix, parallel)
        options, many = one_or_many(options, asked, tables_prefix=tables_prefix)
        check_surveys(asked, options, tables_prefix=tables_prefix)
        # Surveys in parallel upload at once: botocore's default pool (10) would open and drop
        # a connection for each request beyond it.
        connections = 2 * transfers * parallel
    store = _store(bucket, endpoint_url, connections=connections)
    quiet = _verbosity(ctx).quiet
    if many is not None:
        count = None if names == [ALL] else len(many.names)
        with console.survey_progress(quiet, count) as (on_each, on_survey):
            outcomes = run_surveys(
                store, many, options, after, on_progress=on_each, on_survey=on_survey
            )
        _summary(fmt, outcomes.to_dict, lambda: render.surveys_summary(outcomes))
        outcomes.raise_for_errors()
        return
    with console.sync_progress(quiet, "syncing") as on_progress:
        result = run_survey(store, options, after, on_progress=on_progress)
    _summary(fmt, result.to_dict, lambda: render.sync_summary(result))
    result.raise_for_errors()


@_command("surveys")
def surveys(
    root_url: RootUrlOption = DEFAULT_ROOT_URL,
    bucket: Annotated[
        str | None,
        _opt(
            "--bucket",
            "Also say which surveys this bucket mirrors and when each was last synced.",
            "BUCKET",
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
    from rearcquest.mirror.surveys import raise_for_inventory, survey_inventory

    store = _store(bucket, endpoint_url) if bucket else None
    infos = survey_inventory(
        root_url=root_url,
        store=store,
        root_prefix=root_prefix,
        contact=contact,
        user_agent=user_agent,
        max_rps=max_rps,
    )
    _summary(
        fmt,
        lambda: {"surveys": [i.to_dict() for i in infos]},
        lambda: render.inventory_summary(infos, with_bucket=store is not None),
    )
    typer.echo(visible_lines(render.inventory_errors(infos)), err=True, nl=False)
    raise_for_inventory(infos)


@_command("fetch-population")
def fetch_population(
    bucket: Annotated[
        str,
        _opt(
            "--bucket",
            "Bucket to store the population JSON in.",
            "BUCKET",
            envvar="RQ_POPULATION_BUCKET",
        ),
    ],
    key: Annotated[
        str | None,
        _opt(
            "--key",
            "Object key.",
            "KEY",
            envvar="RQ_POPULATION_KEY",
            show_default=DEFAULT_POPULATION_KEY,
        ),
    ] = None,
    url: Annotated[
        str | None,
        _opt(
            "--url",
            "DataUSA API URL: tesseract, or the old https://datausa.io/api/data?... endpoint.",
            "URL",
            envvar="RQ_POPULATION_URL",
            show_default="the DataUSA tesseract API, ACS 1-year, Nation by Year",
        ),
    ] = None,
    force: Annotated[bool, _opt("--force", "Write even when the data is unchanged.")] = False,
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
    from rearcquest.mirror.population import fetch_population as run_fetch

    result = run_fetch(
        _store(bucket, endpoint_url),
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


# A year has four digits: --from-year 13 is a typo, not the year 13.
_YEAR_RANGE: dict[str, Any] = {"min": 1000, "max": 9999}

TableFormatOption = Annotated[
    AnalyzeFormat, _opt("--format", "Output on stdout.", case_sensitive=False)
]
MaxRowsOption = Annotated[
    int | None,
    _opt(
        "--max-rows",
        "--format table: show at most N rows of each table, then how many were left out.",
        "N",
        min=1,
    ),
]


class AnalyzeFrom(StrEnum):
    """Where ``rq analyze`` reads the BLS rows."""

    auto = "auto"
    tables = "tables"
    files = "files"


def _report(
    fmt: AnalyzeFormat,
    output: str | None,
    *,
    grids: Callable[[], Sequence[TextTable]],
    text: Callable[[str], str],
    write: Callable[[str], Sequence[Path]],
    max_rows: int | None = None,
) -> None:
    """Print a report as rich tables (``grids()``, at most ``max_rows`` rows each) or in a text
    format (``text(fmt)``); then write its files into ``output`` (``write(output)``), naming
    each on stderr."""
    if fmt is AnalyzeFormat.table:
        console.print_grids(grids(), max_rows)
    else:
        typer.echo(text(fmt.value), nl=False)
    for path in write(output) if output is not None else ():
        typer.echo(f"wrote {path}", err=True)


@_command("analyze")
def analyze(
    report: Annotated[
        AnalyzeReport, _opt("--report", "Which report to run.", case_sensitive=False)
    ] = AnalyzeReport.all,
    bls: Annotated[
        str | None,
        _opt(
            "--bls",
            "BLS data file.",
            "PATH_OR_S3_URL",
            show_default="s3://$RQ_BLS_BUCKET/pr/pr.data.0.Current",
        ),
    ] = None,
    population: Annotated[
        str | None,
        _opt(
            "--population",
            "Stored DataUSA population JSON (either API shape).",
            "PATH_OR_S3_URL",
            show_default=f"s3://$RQ_POPULATION_BUCKET/{DEFAULT_POPULATION_KEY}",
        ),
    ] = None,
    from_year: Annotated[
        int,
        _opt("--from-year", "First year of the population report.", "YEAR", **_YEAR_RANGE),
    ] = DEFAULT_FROM_YEAR,
    to_year: Annotated[
        int,
        _opt("--to-year", "Last year of the population report (inclusive).", "YEAR", **_YEAR_RANGE),
    ] = DEFAULT_TO_YEAR,
    series_id: Annotated[
        str, _opt("--series", "Series of the series-population report.", "SERIES_ID")
    ] = DEFAULT_SERIES,
    period: Annotated[
        str,
        _opt("--period", "Period of the series-population report.", "PERIOD"),
    ] = DEFAULT_PERIOD,
    include_annual: Annotated[
        bool,
        _opt("--include-annual", "best-year: add Q05 (annual average) to the quarter sums."),
    ] = False,
    all_years: Annotated[
        bool,
        _opt("--all-years", "series-population: keep years without population (empty)."),
    ] = False,
    fmt: TableFormatOption = AnalyzeFormat.table,
    max_rows: MaxRowsOption = None,
    output: Annotated[
        str | None,
        _opt(
            "--output",
            "Also write each report as CSV and Parquet, and PNG charts, into DIR.",
            "DIR",
        ),
    ] = None,
    source: Annotated[
        AnalyzeFrom,
        _opt(
            "--from",
            "Read the BLS rows from the Parquet tables (rq tables), the text file, or the "
            "tables when present and current, else the text (auto).",
            case_sensitive=False,
        ),
    ] = AnalyzeFrom.auto,
    tables_prefix: TablesPrefixOption = None,
    root_prefix: Annotated[
        str,
        typer.Option(
            "--root-prefix",
            metavar="PREFIX",
            envvar="RQ_BLS_ROOT_PREFIX",
            help="Key prefix the survey mirrors are under (rq sync-bls --root-prefix): the "
            "default --bls is <root prefix>pr/pr.data.0.Current, the tables <root prefix>tables/.",
        ),
    ] = "",
    as_of: Annotated[
        str | None,
        _opt(
            "--as-of",
            "Read the BLS file as it was in the latest release on or before this date "
            "(YYYY-MM-DD), or in this release stamp (see rq releases); population stays current.",
            "DATE|RELEASE",
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
    if output is not None:
        render.require_matplotlib()  # before the work, not after it
    from rearcquest.config import Settings
    from rearcquest.data.analytics import REPORTS, ReportInputs
    from rearcquest.data.vintages import analyze_at

    inputs = ReportInputs(
        reports=REPORTS if report is AnalyzeReport.all else (report.value,),
        bls=bls,
        population=population,
        from_year=from_year,
        to_year=to_year,
        series_id=series_id,
        period=period,
        include_annual=include_annual,
        all_years=all_years,
        source=source.value,
        tables_prefix=tables_prefix,
        root_prefix=root_prefix,
        as_of=as_of,
    )
    result = analyze_at(inputs, s3=_s3(endpoint_url), settings=Settings.from_env())
    if as_of is not None:
        typer.echo(visible(f"as of release {result.release}: {result.bls_source}"), err=True)
    _report(
        fmt,
        output,
        grids=lambda: render.tables(result),
        text=lambda fmt: render.report_text(result, fmt),
        write=lambda directory: render.write_outputs(result, directory),
        max_rows=max_rows,
    )


# -- tables and sql (issue 12) --


@_command("tables")
def tables(
    survey: Annotated[
        str,
        _opt(
            "--survey",
            "Surveys to build, comma-separated, or all: every mirrored <survey>/ prefix.",
            "S,...|all",
        ),
    ] = ",".join(DEFAULT_SURVEYS),
    bucket: BlsBucketOption = "",
    tables_prefix: TablesPrefixOption = None,
    root_prefix: RootPrefixOption = "",
    population: Annotated[
        str | None,
        _opt(
            "--population",
            "Stored DataUSA answer for the population table.",
            "S3_URL",
            show_default=f"s3://$RQ_POPULATION_BUCKET/{DEFAULT_POPULATION_KEY}, else the same key "
            "in --bucket",
        ),
    ] = None,
    force: Annotated[bool, _opt("--force", "Rebuild every table, changed or not.")] = False,
    no_lock: Annotated[
        bool,
        _opt(
            "--no-lock",
            "Build without taking each survey's lease (for S3 endpoints that ignore "
            "conditional writes); by default a survey another run holds fails with exit 5.",
        ),
    ] = False,
    as_of: Annotated[
        str | None,
        _opt(
            "--as-of",
            "Build the tables of the latest release on or before this date, under "
            "<prefix>as-of/<release>/ (population: the current table).",
            "DATE|RELEASE",
        ),
    ] = None,
    glue_database: Annotated[
        str | None,
        _opt(
            "--glue-database",
            "Also create the Glue tables (for Athena) of every table built or current, where "
            "missing, in this existing database; existing Glue tables are left as they are.",
            "NAME",
            envvar="RQ_GLUE_DATABASE",
        ),
    ] = None,
    endpoint_url: EndpointOption = None,
    fmt: FormatOption = TextOrJson.text,
) -> None:
    """Build query-ready Parquet tables from the mirrored surveys and the population.

    Writes <prefix><survey>/observations/file=<data file>/part-0.parquet for every data file,
    <prefix><survey>/series/series.parquet with every code decoded by the survey's mapping
    files, and <prefix>population/population.parquet. Only tables whose input changed since the last build
    (the manifest beside them) are rebuilt; a malformed file fails alone, leaving its old table,
    and exits 1. See docs/tables.md.

    Example: rq tables --bucket my-bls-mirror --survey all --format json
    """
    from rearcquest.config import Settings
    from rearcquest.data.tables import TablesOptions

    options = TablesOptions(
        survey=survey,
        population=population,
        root_prefix=root_prefix,
        tables_prefix=tables_prefix,
        force=force,
        lock=not no_lock,
        glue_database=glue_database,
    )
    settings = Settings.from_env()
    if as_of is not None:
        from rearcquest.data.vintages import tables_as_of
        from rearcquest.output.render_vintages import tables_as_of_doc, tables_as_of_summary

        built, written = tables_as_of(
            as_of, options, s3=_s3(endpoint_url), bucket=bucket or None, settings=settings
        )
        _summary(
            fmt,
            lambda: tables_as_of_doc(built.release, written),
            lambda: tables_as_of_summary(built.release, written),
        )
        return
    from rearcquest.jobs.pipeline import build_tables_registered

    run = build_tables_registered(
        _store(bucket, endpoint_url), options, settings=settings, on_progress=log.info
    )
    _summary(fmt, run.to_dict, lambda: render.tables_run_summary(run))
    run.raise_for_errors()


@_command("sql")
def sql(
    query: Annotated[
        str | None,
        typer.Argument(metavar="QUERY", help="The SQL (Polars SQL).", show_default=False),
    ] = None,
    named: Annotated[
        str | None,
        _opt(
            "--named",
            "Run a report's named query instead: population, best_year, series_population.",
            "NAME",
        ),
    ] = None,
    location: Annotated[
        str | None,
        _opt(
            "--tables",
            "The tables: a local directory or an s3://bucket/prefix/.",
            "DIR_OR_S3_URL",
            show_default="s3://$RQ_BLS_BUCKET/<root prefix>tables/",
        ),
    ] = None,
    root_prefix: RootPrefixOption = "",
    fmt: TableFormatOption = AnalyzeFormat.table,
    max_rows: MaxRowsOption = None,
    as_of: Annotated[
        str | None,
        _opt(
            "--as-of",
            "Query the tables of the latest release on or before this date, built from the "
            "release's file versions (population: the current table).",
            "DATE|RELEASE",
        ),
    ] = None,
    endpoint_url: EndpointOption = None,
) -> None:
    """Run SQL over the Parquet tables that rq tables builds, local or in S3.

    The tables are <survey>_observations (column file: the data file of each partition; the
    files overlap, so filter on it), <survey>_series and population. See docs/tables.md.

    Example: rq sql "SELECT year, population FROM population ORDER BY year" --format csv
    """
    from rearcquest.config import Settings
    from rearcquest.data.vintages import query as run_query

    release, answer = run_query(
        query,
        s3=_s3(endpoint_url),
        named=named,
        as_of=as_of,
        location=location,
        root_prefix=root_prefix,
        # Only the default location reads the environment (as ever: --tables needs none).
        settings=Settings.from_env() if location is None else None,
    )
    if release is not None:
        typer.echo(visible(f"as of release {release}"), err=True)
    if fmt is AnalyzeFormat.table:
        console.print_cells(*render.frame_cells(answer), max_rows=max_rows)
    else:
        typer.echo(render.frame_text(answer, fmt.value), nl=False)


@_command("serve-index")
def serve_index(
    ctx: typer.Context,
    bucket: BlsBucketOption,
    prefix: Annotated[
        str,
        _opt("--prefix", "Show and serve only keys under this prefix; '' = all.", "PREFIX"),
    ] = "",
    host: Annotated[
        str,
        _opt(
            "--host", "Address to listen on; 0.0.0.0 opens it to the network (use --token).", "HOST"
        ),
    ] = DEFAULT_HOST,
    port: PortOption = DEFAULT_PORT,
    token: Annotated[
        str | None,
        _opt(
            "--token",
            "Require this token (16+ characters) on every request: bearer header, or cookie "
            "set by ?token=. 'auto' generates one and prints the link.",
            "TOKEN",
            envvar="RQ_INDEX_TOKEN",
        ),
    ] = None,
    write_static: Annotated[
        bool,
        _opt("--write-static", "Write a static index.html into the bucket instead of serving."),
    ] = False,
    index_key: IndexKeyOption = DEFAULT_INDEX_KEY,
    presign: Annotated[
        int | None,
        _opt(
            "--presign",
            "With --write-static: presign every link (and print a share URL) for SECONDS.",
            "SECONDS",
            min=1,
            max=MAX_PRESIGN_SECONDS,
        ),
    ] = None,
    cache_seconds: Annotated[
        float,
        _opt(
            "--cache-seconds",
            "Reuse a folder's listing this long; 0 = every request.",
            "SECONDS",
            min=0,
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
    from rearcquest.index import AUTO_TOKEN, check_mode, resolve_token, serve

    check_mode(write_static, _given(ctx))
    # Each download holds an S3 connection while it streams: keep more than botocore's 10.
    store = _store(bucket, endpoint_url, connections=64)
    if write_static:
        from rearcquest.index import write_static_index

        written = write_static_index(store, prefix, index_key, presign_seconds=presign)
        _summary(fmt, written.to_dict, lambda: render.static_index_summary(written))
        return
    required = resolve_token(token)

    def ready(url: str) -> None:
        show = required is not None and token == AUTO_TOKEN
        typer.echo(render.serving_banner(store.url(prefix), url, required, show_token=show))

    serve(
        store,
        prefix=prefix,
        host=host,
        port=port,
        token=required,
        on_ready=ready,
        cache_seconds=cache_seconds,
    )


@_command("run")
def run(
    bls_bucket: Annotated[
        str | None,
        _opt("--bls-bucket", "Bucket of the BLS mirror.", "BUCKET", envvar="RQ_BLS_BUCKET"),
    ] = None,
    population_bucket: Annotated[
        str | None,
        _opt(
            "--population-bucket",
            "Bucket of the population JSON.",
            "BUCKET",
            envvar="RQ_POPULATION_BUCKET",
        ),
    ] = None,
    contact: ContactOption = None,
    user_agent: UserAgentOption = None,
    reports: Annotated[
        bool, _opt("--reports", "Then print the three reports (rq analyze).")
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
    from rearcquest.config import Settings
    from rearcquest.jobs.pipeline import run_pipeline
    from rearcquest.layout import parse_surveys

    settings = Settings.from_env().with_options(
        bls_bucket=bls_bucket,
        population_bucket=population_bucket,
        contact=contact,
        user_agent=user_agent,
    )
    result = run_pipeline(
        settings,
        s3_client=_s3(endpoint_url).client,
        reports=reports,
        surveys=parse_surveys(survey) if survey else None,
        root_url=root_url,
        root_prefix=root_prefix,
    )
    _summary(fmt, lambda: render.pipeline_doc(result), lambda: render.pipeline_summary(result))
    result.raise_for_errors()


@_command("demo")
def demo(
    endpoint_url: Annotated[
        str | None,
        _opt(
            "--endpoint-url",
            "Use this S3 and SQS endpoint (e.g. a moto server) instead of the embedded one.",
            "URL",
        ),
    ] = None,
    bucket: Annotated[str, _opt("--bucket", "Bucket for the demo.", "BUCKET")] = DEMO_BUCKET,
    serve: Annotated[
        bool,
        _opt("--serve", "Then keep the index page of the demo bucket up until Ctrl-C."),
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
        typer.echo(visible_lines(render.demo_step(title, payload)))

    run_demo(
        bucket=bucket, endpoint_url=endpoint_url, on_step=show, serve_port=port if serve else None
    )


# -- releases and revisions (issue 13) --


class ReleasesFormat(StrEnum):
    """Output formats of ``rq releases``."""

    table = "table"
    json = "json"


SurveyOption = Annotated[
    str | None,
    _opt(
        "--survey",
        "The mirror's prefix, one per survey (e.g. 'pr'); default $RQ_BLS_PREFIX or 'pr/'.",
        "PREFIX",
    ),
]


@_command("releases")
def releases(
    bucket: MirrorBucketOption = None,
    survey: SurveyOption = None,
    fmt: Annotated[
        ReleasesFormat, _opt("--format", "Output on stdout.", case_sensitive=False)
    ] = ReleasesFormat.table,
    endpoint_url: EndpointOption = None,
) -> None:
    """List the releases a mirror has kept, newest first, with the files each changed.

    A sync that changes the mirror records a release: the latest listing date of the files it
    changed, when it ran, and each file's sha256 and S3 version id.

    Example: rq releases --bucket my-bls-mirror --format json
    """
    from rearcquest.config import Settings
    from rearcquest.data.vintages import list_releases
    from rearcquest.output.render_vintages import releases_grid, releases_json

    found = list_releases(
        s3=_s3(endpoint_url), bucket=bucket, prefix=survey, settings=Settings.from_env()
    )
    if fmt is ReleasesFormat.json:
        typer.echo(releases_json(found))
    else:
        console.print_grids([releases_grid(found)])


@_command("revisions")
def revisions(
    from_release: Annotated[
        str,
        _opt(
            "--from",
            "The older release: a date, a release stamp, 'previous' or 'latest'.",
            "DATE|RELEASE",
        ),
    ] = DEFAULT_FROM_RELEASE,
    to_release: Annotated[
        str,
        _opt("--to", "The newer release.", "DATE|RELEASE"),
    ] = DEFAULT_TO_RELEASE,
    file: Annotated[str, _opt("--file", "The data file to compare.", "NAME")] = DEFAULT_FILE,
    series: Annotated[
        str | None,
        _opt("--series", "Only series matching this glob.", "GLOB"),
    ] = None,
    bucket: MirrorBucketOption = None,
    prefix: SurveyOption = None,
    fmt: TableFormatOption = AnalyzeFormat.table,
    max_rows: MaxRowsOption = None,
    every: Annotated[
        bool,
        _opt(
            "--all",
            f"--format table: list every revised value, not only the {LARGEST_REVISIONS} largest.",
        ),
    ] = False,
    output: Annotated[
        str | None,
        _opt(
            "--output",
            "Also write revisions.csv, summary.csv and a chart of the largest revisions.",
            "DIR",
        ),
    ] = None,
    endpoint_url: EndpointOption = None,
) -> None:
    """Compare two releases of a data file: revised values, observations added and removed.

    Observations are keyed on series, year and period; values are exact decimals as BLS prints
    them. The releases' bytes are read at the S3 versions the release log names.

    Example: rq revisions --from 2025-06-05 --to latest --series 'PRS30*' --format csv
    """
    if output is not None:
        render.require_matplotlib()  # before the work, not after it
    from rearcquest.config import Settings
    from rearcquest.data.vintages import revisions as compare
    from rearcquest.output import render_vintages as out

    result = compare(
        s3=_s3(endpoint_url),
        from_release=from_release,
        to_release=to_release,
        file=file,
        series=series,
        bucket=bucket,
        prefix=prefix,
        settings=Settings.from_env(),
    )
    _report(
        fmt,
        output,
        grids=lambda: out.revisions_grids(result, largest=None if every else LARGEST_REVISIONS),
        text=lambda fmt: out.revisions_text(result, fmt),
        write=lambda directory: out.write_revisions(result, directory),
        max_rows=max_rows,
    )


def main() -> None:
    """Entry point of the ``rq`` console script."""
    import atexit
    import gc

    # Exit would otherwise walk every object botocore and typer built (~0.2 s per run); nothing
    # rq needs finalised lives only in a reference cycle.
    atexit.register(gc.freeze)
    _handle_sigterm()
    try:
        _for_command(sys.argv[1:])(prog_name="rq")
    finally:
        # What is still buffered is written now, not in the interpreter's shutdown, where a
        # reader gone early would print "Exception ignored ... BrokenPipeError".
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _discard_stdout()


def _for_command(args: list[str]) -> typer.Typer:
    """The app with only the command ``args`` name, when they name one.

    typer builds every command's options before it looks at the command line (~45 ms for all of
    them, ~15 ms for one). The options before a command are flags, so its name is the first word
    that is not an option; anything else (no command, a typo) gets the whole app, and its help.
    """
    import copy

    from typer.main import get_command_name

    name = next((arg for arg in args if not arg.startswith("-")), None)
    asked = [
        info
        for info in app.registered_commands
        if info.callback is not None
        # typer's own rule for a command's name
        and (info.name or get_command_name(info.callback.__name__)) == name
    ]
    if not asked:
        return app
    one = copy.copy(app)
    one.registered_commands = asked
    return one
