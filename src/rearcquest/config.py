"""Settings shared by the CLI, cron and the Lambda handlers.

Every setting has one environment variable (``RQ_*``), listed in ``docs/configuration.md``; the CLI
options read the same variables. AWS settings (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``AWS_REGION``
and the credential chain) are left to boto3, which reads them itself.
"""

from __future__ import annotations

import dataclasses
import os
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from rearcquest._version import __version__
from rearcquest.errors import ConfigError, OptionError
from rearcquest.layout import default_prefix, normalise_prefix, parse_surveys

DEFAULT_BLS_URL = "https://download.bls.gov/pub/time.series/pr/"
# The root of every BLS survey (pr, cu, ce, ...), listed as directories.
DEFAULT_ROOT_URL = "https://download.bls.gov/pub/time.series/"
DEFAULT_POPULATION_URL = (
    "https://honolulu-api.datausa.io/tesseract/data.jsonrecords"
    "?cube=acs_yg_total_population_1&drilldowns=Year%2CNation&locale=en&measures=Population"
)
LEGACY_POPULATION_URL = "https://datausa.io/api/data?drilldowns=Nation&measures=Population"
DEFAULT_POPULATION_KEY = "datausa/population.json"
DEFAULT_MAX_DELETE = 20
# By default a sync may not delete more than this share of the mirrored files.
DEFAULT_MAX_DELETE_SHARE = 50.0
# A sync's lease on its mirror lasts this long unless renewed (every third of it while it works).
DEFAULT_LEASE_TTL = 600.0
# BLS asks bots not to fetch several files a second.
POLITE_RPS = 1.0
# The index page (rq serve-index, sync --write-index); its defaults live here, beside the
# others the command line shows, and rearcquest.index re-exports them.
DEFAULT_INDEX_KEY = "index.html"
# The live index listens here unless told otherwise: this machine only.
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
# How long the live index reuses a folder's listing (see ``_app._ListingCache``).
DEFAULT_CACHE_SECONDS = 5.0
# SigV4 presigned URLs live at most seven days.
MAX_PRESIGN_SECONDS = 7 * 24 * 3600
# The bucket `rq demo` fills on its embedded S3.
DEMO_BUCKET = "rq-demo"
# Downloads (and as many uploads) of one sync at once.
DEFAULT_TRANSFERS = 4
# One invocation's share: a file larger than this gets a message of its own. At the default
# worker rate and Lambda's network a 1 GB file takes a few minutes; several would not fit 15.
DEFAULT_BIG_FILE_BYTES = 512 * 1024 * 1024
# Seconds the fan-out worker keeps back from Lambda's remaining time: once only this much is
# left, its transfers stop at their last whole part and it hands over. What must fit in it: the
# parts in flight finishing (4 x 8 MiB, a few seconds in-region, ~30 s from a slow network), the
# state write, the lease's release and the continuation message (each one request), with room
# for S3's retries (botocore's standard mode backs off up to 20 s).
HANDOVER_MARGIN = 90.0
# A file message handed over this many times in a row without a byte of progress fails (its
# retries then take it to the dead-letter queue): a source that sends nothing would otherwise
# be handed round for ever.
MAX_STALLED_CONTINUATIONS = 3
# The reports (rq analyze): the BLS file they read, and the series, period and years they show.
BLS_FILE = "pr.data.0.Current"
DEFAULT_SERIES = "PRS30006032"
DEFAULT_PERIOD = "Q01"
DEFAULT_FROM_YEAR = 2013
DEFAULT_TO_YEAR = 2018
# The surveys rq tables builds unless told otherwise: the one the reports read.
DEFAULT_SURVEYS = ("pr",)
# What rq revisions compares unless told otherwise: the reports' file in the last two releases.
DEFAULT_FILE = BLS_FILE
DEFAULT_FROM_RELEASE = "previous"
DEFAULT_TO_RELEASE = "latest"
# rq revisions --format table lists this many of the largest revised values (--all: every one).
LARGEST_REVISIONS = 20
# Surveys synced at once (rq sync-bls --survey).
DEFAULT_PARALLEL = 4


# Attempts per request, the first included.
DEFAULT_ATTEMPTS = 5


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry.

    Args:
        attempts: total attempts, the first included.
        base: the first backoff, in seconds; doubled each attempt, with full jitter.
        cap: the longest backoff.
        max_retry_after: the longest ``Retry-After`` honoured; longer ones are capped.
    """

    attempts: int = DEFAULT_ATTEMPTS
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 120.0

    def backoff(self, attempt: int) -> float:
        """Return the delay before retry number ``attempt`` (1-based)."""
        return random.uniform(0, min(self.cap, self.base * 2 ** (attempt - 1)))


def build_user_agent(contact: str | None = None, user_agent: str | None = None) -> str | None:
    """Return the User-Agent to send, or ``None`` when neither a contact nor a UA is set.

    Args:
        contact: an e-mail address or URL where the operator can be reached.
        user_agent: a complete User-Agent string; wins over ``contact``.

    Returns:
        The User-Agent header value, or ``None``.

    Raises:
        ConfigError: the contact is not an e-mail address or URL.
    """
    if user_agent and user_agent.strip():
        return user_agent.strip()
    if contact and contact.strip():
        contact = contact.strip()
        if "@" not in contact and not contact.startswith(("http://", "https://")):
            raise ConfigError(
                f"contact {contact!r} is not an e-mail address or URL; BLS needs a way to reach you"
            )
        return f"rearcquest/{__version__} (contact: {contact})"
    return None


def is_bls_url(url: str) -> bool:
    """Tell whether ``url`` points at a bls.gov host."""
    host = (urlsplit(url).hostname or "").lower()
    return host == "bls.gov" or host.endswith(".bls.gov")


def require_user_agent(url: str, user_agent: str | None) -> None:
    """Refuse, before any request, to call bls.gov without contact information.

    Raises:
        ConfigError: ``url`` is on bls.gov and no User-Agent with a contact is configured.
    """
    if user_agent is None and is_bls_url(url):
        raise ConfigError(
            "BLS answers 403 to requests without contact information in the User-Agent; "
            "set --contact you@example.com (or RQ_CONTACT), or --user-agent"
        )


def default_rps(url: str) -> float:
    """Return the default request rate for ``url``: polite for bls.gov, unlimited elsewhere."""
    return POLITE_RPS if is_bls_url(url) else 0.0


def check_http_url(url: str, what: str) -> str:
    """Return ``url`` if it is an absolute http(s) URL.

    Raises:
        ConfigError: it is not.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"{what} {url!r} is not an http(s) URL")
    return url


@dataclass(frozen=True)
class DeleteLimit:
    """How many deletes one sync may make before the delete guard stops it.

    The default (``DeleteLimit()``) protects a mirror whose source suddenly lists fewer files: a run
    trips when it would delete more than :data:`DEFAULT_MAX_DELETE` objects, more than half of
    the mirrored files, or any file when at most one would remain. An explicit limit (``N`` or
    ``P%``, see :meth:`parse`) replaces all three.

    Attributes:
        count: at most this many deletes (``None``: no count limit).
        percent: at most this share of the mirrored files, in percent (``None``: no share limit).
    """

    count: int | None = DEFAULT_MAX_DELETE
    percent: float | None = DEFAULT_MAX_DELETE_SHARE
    default: bool = True

    @classmethod
    def parse(cls, value: DeleteLimit | int | str | None) -> DeleteLimit:
        """Read ``--max-delete``: ``N`` (objects), ``P%`` (of the mirrored files) or ``None``.

        Raises:
            ConfigError: not a non-negative whole number nor a percentage from 0% to 100%.
        """
        if value is None:
            return cls()
        if isinstance(value, DeleteLimit):
            return value
        if isinstance(value, bool):
            raise ConfigError(f"--max-delete {value!r} is not a number of objects nor a share")
        if isinstance(value, int):
            if value < 0:
                raise ConfigError(f"--max-delete {value} must not be negative")
            return cls(count=value, percent=None, default=False)
        text = value.strip()
        hint = "give a number of objects (e.g. 20) or a share of the mirrored files (e.g. 10%)"
        if text.endswith("%"):
            try:
                share = float(text[:-1])
            except ValueError:
                raise ConfigError(f"--max-delete {value!r} is not a percentage; {hint}") from None
            if not 0 <= share <= 100:  # also refuses nan
                raise ConfigError(f"--max-delete {value!r} must be between 0% and 100%; {hint}")
            return cls(count=None, percent=share, default=False)
        if not text.isdecimal():
            raise ConfigError(f"--max-delete {value!r} is not a non-negative number; {hint}")
        return cls(count=int(text), percent=None, default=False)

    def describe(self) -> str:
        """The limit as people read it, e.g. ``20 objects or 50% of the mirrored files``."""
        if self.default:
            return (
                f"the default --max-delete ({self.count} objects, {self.percent:g}% of the "
                "mirrored files, or any file when at most one would remain)"
            )
        if self.count is not None:
            return f"--max-delete {self.count}"
        return f"--max-delete {self.percent:g}%"

    def exceeded(self, deletes: int, mirrored: int) -> bool:
        """Tell whether deleting ``deletes`` of ``mirrored`` files goes beyond the limit."""
        if deletes <= 0:
            return False
        if self.count is not None and deletes > self.count:
            return True
        if self.percent is not None and deletes * 100 > self.percent * mirrored:
            return True
        return self.default and mirrored - deletes <= 1


def _flag(value: str | None, name: str) -> bool:
    """Read a boolean variable: 1/0, true/false, yes/no, on/off; unset is false.

    Raises:
        ConfigError: it is something else.
    """
    text = (value or "0").lower()
    if text not in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        raise ConfigError(f"{name}={text!r} is not true or false (1/0, yes/no)")
    return text in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    """Settings for an unattended run (cron, Lambda), read from ``RQ_*`` environment variables."""

    bls_bucket: str | None = None
    bls_prefix: str | None = None
    bls_url: str = DEFAULT_BLS_URL
    population_bucket: str | None = None
    population_key: str = DEFAULT_POPULATION_KEY
    population_url: str = DEFAULT_POPULATION_URL
    contact: str | None = None
    user_agent: str | None = None
    max_rps: float | None = None
    # Require a versioned mirror bucket, so every release stays readable (RQ_VINTAGES).
    vintages: bool = False
    # Build the Parquet tables after a sync that changed something, and the population table
    # after the fetch (RQ_TABLES), under RQ_TABLES_PREFIX (default <root prefix>tables/).
    tables: bool = False
    tables_prefix: str | None = None
    # Register each survey's tables in this Glue database when they are built, if missing
    # (RQ_GLUE_DATABASE): the fan-out of every survey, whose surveys the stack cannot declare.
    glue_database: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Read the settings from ``environ`` (default ``os.environ``).

        Raises:
            ConfigError: ``RQ_MAX_RPS`` is not a number, or ``RQ_VINTAGES`` or ``RQ_TABLES``
                not a boolean.
        """
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        rps = get("RQ_MAX_RPS")
        try:
            max_rps = float(rps) if rps is not None else None
        except ValueError as exc:
            raise ConfigError(f"RQ_MAX_RPS={rps!r} is not a number") from exc
        vintages = _flag(get("RQ_VINTAGES"), "RQ_VINTAGES")
        tables = _flag(get("RQ_TABLES"), "RQ_TABLES")
        return cls(
            bls_bucket=get("RQ_BLS_BUCKET"),
            bls_prefix=env.get("RQ_BLS_PREFIX"),
            bls_url=get("RQ_BLS_URL") or DEFAULT_BLS_URL,
            population_bucket=get("RQ_POPULATION_BUCKET"),
            population_key=get("RQ_POPULATION_KEY") or DEFAULT_POPULATION_KEY,
            population_url=get("RQ_POPULATION_URL") or DEFAULT_POPULATION_URL,
            contact=get("RQ_CONTACT"),
            user_agent=get("RQ_USER_AGENT"),
            max_rps=max_rps,
            vintages=vintages,
            tables=tables,
            tables_prefix=get("RQ_TABLES_PREFIX"),
            glue_database=get("RQ_GLUE_DATABASE"),
        )

    def with_options(
        self,
        *,
        bls_bucket: str | None = None,
        population_bucket: str | None = None,
        contact: str | None = None,
        user_agent: str | None = None,
    ) -> Settings:
        """These settings with each option the command line gave (not None) in its place."""
        return dataclasses.replace(
            self,
            bls_bucket=self.bls_bucket if bls_bucket is None else bls_bucket,
            population_bucket=self.population_bucket
            if population_bucket is None
            else population_bucket,
            contact=self.contact if contact is None else contact,
            user_agent=self.user_agent if user_agent is None else user_agent,
        )

    @property
    def resolved_bls_prefix(self) -> str:
        """The BLS mirror prefix, defaulting to the directory name."""
        if self.bls_prefix is None:
            return default_prefix(self.bls_url)
        return normalise_prefix(self.bls_prefix)


@dataclass(frozen=True)
class SyncOptions:
    """How one BLS directory is mirrored: what ``rq sync-bls`` is told, as values.

    The command line, the scheduled job and the fan-out worker each build one from their own
    inputs (arguments, :class:`Settings`, a work message); :func:`rearcquest.mirror.sync.sync_bls`
    reads nothing else.

    Attributes:
        source_url: a BLS ``time.series/<survey>/`` directory (or any directory page).
        prefix: the key prefix; None for the directory's last segment plus ``/``.
        contact: an e-mail address for the User-Agent (BLS refuses requests without one).
        user_agent: a complete User-Agent instead.
        max_rps: the highest request rate; None for 1/s on bls.gov, unlimited elsewhere.
        retry: the retry policy for the source; None for the default.
        dry_run: plan only; change nothing, download nothing and take no lease.
        delete: delete objects whose file left the listing.
        max_delete: the delete guard: ``N`` objects, ``"P%"`` of the mirrored files, or a
            :class:`DeleteLimit`; None for 20 objects, half the mirrored files, or any file when
            at most one would remain.
        include: only file names matching one of these globs.
        exclude: never touch file names matching one of these globs.
        transfers: files moved at once.
        state_key: the key of the sync state; None for ``.rearcquest/state/<prefix>.json``.
        index_key: the key of a static ``index.html`` kept beside the mirror: never deleted as
            a stale file, never overwritten by a listed file.
        lock: hold a lease on the mirror while syncing (``False``: ``--no-lock``).
        wait: seconds to wait for another sync's lease before giving up.
        lease_ttl: seconds the lease lasts without renewal (it is renewed every third).
        vintages: require a versioned bucket, so that every release stays readable.
        time_left: seconds the run may still spend transferring, asked as it goes (the Lambda
            worker's remaining time less :data:`HANDOVER_MARGIN`); when it reaches 0 the
            transfers stop at their last whole part, are recorded in the state to be resumed
            and listed in ``SyncResult.handed_over``. None: no limit.
    """

    source_url: str = DEFAULT_BLS_URL
    prefix: str | None = None
    contact: str | None = None
    user_agent: str | None = None
    max_rps: float | None = None
    retry: RetryPolicy | None = None
    dry_run: bool = False
    delete: bool = True
    max_delete: DeleteLimit | int | str | None = None
    include: Sequence[str] = ()
    exclude: Sequence[str] = ()
    transfers: int = DEFAULT_TRANSFERS
    state_key: str | None = None
    index_key: str | None = None
    lock: bool = True
    wait: float = 0.0
    lease_ttl: float = DEFAULT_LEASE_TTL
    vintages: bool = False
    time_left: Callable[[], float] | None = None

    def __post_init__(self) -> None:
        """Refuse options that contradict each other, before any work.

        Raises:
            OptionError: ``wait`` without ``lock`` (``--wait`` with ``--no-lock``).
        """
        if self.wait and not self.lock:
            raise OptionError(
                "--wait waits for another sync's lease, and --no-lock takes none: give one of them",
                options="--wait, --no-lock",
            )


@dataclass(frozen=True)
class FanoutSettings:
    """Where the fan-out sends its work and what it covers (``RQ_*`` variables).

    Attributes:
        queue_url: the SQS work queue (``RQ_WORK_QUEUE_URL``); ``None``: no fan-out, the
            scheduled function syncs in-process as before.
        surveys: the surveys (``RQ_SURVEYS``, comma-separated or ``all``; default ``pr``).
        root_url: the root (``RQ_BLS_ROOT_URL``).
        root_prefix: the prefix the survey mirrors are under (``RQ_BLS_ROOT_PREFIX``).
        big_file_bytes: files larger than this get a message of their own (``RQ_BIG_FILE_BYTES``).
    """

    queue_url: str | None = None
    surveys: tuple[str, ...] = ("pr",)
    root_url: str = DEFAULT_ROOT_URL
    root_prefix: str = ""
    big_file_bytes: int = DEFAULT_BIG_FILE_BYTES

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> FanoutSettings:
        """Read the settings from ``environ`` (default ``os.environ``).

        Raises:
            ConfigError: a value is invalid (the message names the variable).
        """
        env = dict(os.environ) if environ is None else environ
        raw = env.get("RQ_BIG_FILE_BYTES", "").strip()
        try:
            big = int(raw) if raw else DEFAULT_BIG_FILE_BYTES
        except ValueError:
            raise ConfigError(f"RQ_BIG_FILE_BYTES={raw!r} is not a whole number of bytes") from None
        if big < 1:
            raise ConfigError(f"RQ_BIG_FILE_BYTES={raw!r} must be at least 1")
        surveys = parse_surveys([env.get("RQ_SURVEYS", "").strip() or "pr"])
        return cls(
            queue_url=env.get("RQ_WORK_QUEUE_URL", "").strip() or None,
            surveys=tuple(surveys),
            root_url=env.get("RQ_BLS_ROOT_URL", "").strip() or DEFAULT_ROOT_URL,
            root_prefix=env.get("RQ_BLS_ROOT_PREFIX", "").strip(),
            big_file_bytes=big,
        )
