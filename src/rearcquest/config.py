"""Settings shared by the CLI, cron and the Lambda handlers.

Every setting has one environment variable (``RQ_*``), listed in ``docs/configuration.md``; the CLI
options read the same variables. AWS settings (``AWS_ENDPOINT_URL``, ``AWS_PROFILE``, ``AWS_REGION``
and the credential chain) are left to boto3, which reads them itself.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from rearcquest._version import __version__
from rearcquest.errors import ConfigError

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


def default_prefix(source_url: str) -> str:
    """Return the default key prefix for a mirrored directory: its last path segment plus ``/``.

    ``https://download.bls.gov/pub/time.series/pr/`` gives ``pr/``.
    """
    segments = [s for s in urlsplit(source_url).path.split("/") if s]
    return f"{segments[-1]}/" if segments else ""


def normalise_prefix(prefix: str) -> str:
    """Return ``prefix`` with exactly one trailing slash, or ``''`` for the bucket root.

    Raises:
        ConfigError: the prefix starts with a slash or holds ``..`` segments.
    """
    prefix = prefix.strip()
    if not prefix:
        return ""
    if prefix.startswith("/") or ".." in prefix.split("/"):
        raise ConfigError(f"prefix {prefix!r} must be relative and must not contain '..'")
    return prefix.rstrip("/") + "/"


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

    def with_options(self, **options: Any) -> Settings:
        """These settings with each option that was given (not None) in its place.

        Args:
            options: fields of :class:`Settings`, e.g. the command line's ``--bls-bucket``.
        """
        given = {name: value for name, value in options.items() if value is not None}
        return dataclasses.replace(self, **given)

    @property
    def resolved_user_agent(self) -> str | None:
        """The User-Agent built from ``user_agent`` or ``contact``."""
        return build_user_agent(self.contact, self.user_agent)

    @property
    def resolved_bls_prefix(self) -> str:
        """The BLS mirror prefix, defaulting to the directory name."""
        if self.bls_prefix is None:
            return default_prefix(self.bls_url)
        return normalise_prefix(self.bls_prefix)
