"""The bucket layout: the names of everything rearcquest itself writes, in one leaf module.

A mirror prefix holds exactly the source's files. What ``rq`` keeps for itself lives under
:data:`RESERVED_PREFIX`, outside every mirror prefix, so ``rclone check``, ``aws s3 sync`` and the
index page see a clean copy::

    .rearcquest/state/<prefix>.json     the sync state of the mirror at <prefix> (e.g. pr.json)
    .rearcquest/locks/<prefix>.json     the lease a running sync holds on that mirror
    .rearcquest/releases/<prefix>.json  the release log of that mirror (see rearcquest.records.releases)

Object metadata keys written on every mirrored object are here too, so a reader never needs the
module that wrote them.

Names read back from storage or messages (a release log's files, a sync state's, a manifest's, a
listing's) are data, never paths: :func:`name_problem` is the one rule a name must pass before it
becomes part of a key or a local path, and :func:`path_inside` proves a local path stays in its
folder.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import urlsplit

from rearcquest.errors import ConfigError, DataError

# Everything rq writes for itself starts with this; it is never a mirrored file's key.
RESERVED_PREFIX = ".rearcquest/"
STATE_PREFIX = RESERVED_PREFIX + "state/"
LOCK_PREFIX = RESERVED_PREFIX + "locks/"
RELEASES_PREFIX = RESERVED_PREFIX + "releases/"
# Where the state lived before it moved out of the mirror (read once, migrated, deleted).
LEGACY_STATE_NAME = ".rearcquest-sync-state.json"

META_SHA256 = "rq-sha256"
META_LISTING_DATE = "rq-listing-date"
META_LAST_MODIFIED = "rq-last-modified"
META_SOURCE = "rq-source-url"
# rclone reads a file's modification time from this metadata key (seconds since the epoch).
META_MTIME = "mtime"


def _slug(prefix: str) -> str:
    """The prefix as a key part: ``pr/`` -> ``pr``, ``a/b/`` -> ``a/b``, ``''`` -> ``_root``.

    A prefix that itself starts with ``_`` gets one more (``_root/`` -> ``__root``), so no two
    mirrors, the bucket root included, share a state or a lease.
    """
    slug = prefix.strip("/")
    if not slug:
        return "_root"
    return "_" + slug if slug.startswith("_") else slug


def state_key(prefix: str) -> str:
    """The default key of the sync state of the mirror at ``prefix``."""
    return f"{STATE_PREFIX}{_slug(prefix)}.json"


def lock_key(prefix: str) -> str:
    """The key of the lease object of the mirror at ``prefix``."""
    return f"{LOCK_PREFIX}{_slug(prefix)}.json"


def releases_key(prefix: str) -> str:
    """The key of the release log of the mirror at ``prefix``."""
    return f"{RELEASES_PREFIX}{_slug(prefix)}.json"


def is_reserved(key: str) -> bool:
    """Tell whether ``key`` is one of rq's own objects rather than a mirrored file."""
    return key.startswith(RESERVED_PREFIX) or key.rsplit("/", 1)[-1] == LEGACY_STATE_NAME


# The longest file name the common file systems keep (NAME_MAX); a longer one is no BLS file.
MAX_NAME_BYTES = 255
# How much of a refused name an error message shows.
_SHOWN_CHARS = 80


def shown_name(name: object) -> str:
    """``repr(name)`` cut to a readable length, for error messages about untrusted names."""
    text = repr(name)
    return text if len(text) <= _SHOWN_CHARS else text[: _SHOWN_CHARS - 3] + "..."


def name_problem(name: object) -> str | None:
    """Why ``name`` is not one plain file name; ``None`` when it is.

    A plain name is a non-empty string of at most :data:`MAX_NAME_BYTES` UTF-8 bytes, without
    ``/`` or ``\\``, not ``.`` or ``..``, and without control characters (NUL included): the
    name of one entry directly inside a directory, on every file system and in every key.
    """
    if not isinstance(name, str):
        return f"a {type(name).__name__}, not a string"
    if not name:
        return "empty"
    if name in (".", ".."):
        return "a directory reference"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    try:
        size = len(name.encode())
    except UnicodeEncodeError:  # a lone surrogate, which JSON can spell
        return "not valid Unicode"
    if size > MAX_NAME_BYTES:
        return f"longer than {MAX_NAME_BYTES} bytes"
    # Unicode's control characters (category Cc): C0, DEL and C1.
    if any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in name):
        return "it holds a control character"
    return None


def plain_name(name: object) -> bool:
    """Tell whether ``name`` is one plain file name (see :func:`name_problem`)."""
    return name_problem(name) is None


def path_inside(folder: Path, name: str) -> Path:
    """``folder / name``, proven to stay inside ``folder`` (symbolic links resolved).

    A second wall behind :func:`name_problem`: every local file rq writes from a name it
    read goes through here.

    Raises:
        DataError: the path would leave ``folder`` (or is ``folder`` itself).
    """
    base = folder.resolve()
    try:
        path = (base / name).resolve()
    except (OSError, ValueError):  # NUL in the name, a loop of links
        path = base
    if path == base or not path.is_relative_to(base):
        raise DataError(f"{shown_name(name)} is not a file inside {folder}; nothing was written")
    return path


# -- survey names ----------------------------------------------------------------------------------

# ``--survey all``: every survey the root lists.
ALL = "all"
# A survey is one directory name of the root: letters, digits and a few safe signs.
SURVEY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def parse_surveys(values: Iterable[str]) -> list[str]:
    """Split ``--survey`` values (comma-separated and/or repeated) into survey names.

    Returns:
        The names in order, without duplicates; ``["all"]`` when ``all`` is one of them.

    Raises:
        ConfigError: a name is empty or not a plain directory name.
    """
    names: list[str] = []
    for value in values:
        for part in value.split(","):
            name = part.strip()
            if not name:
                raise ConfigError(f"--survey {value!r} holds an empty survey name")
            if name.lower() == ALL:
                return [ALL]
            if not SURVEY_NAME.fullmatch(name) or not plain_name(name):
                raise ConfigError(
                    f"--survey {shown_name(name)} is not a survey name (a directory of the root such as "
                    "'pr' or 'cu')"
                )
            if name not in names:
                names.append(name)
    if not names:
        raise ConfigError("no survey named: give --survey pr,cu (or --survey all)")
    return names


# -- prefixes ---------------------------------------------------------------------------------------


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


# -- the tables (rq tables) -------------------------------------------------------------------------

TABLES_PREFIX = "tables/"
MANIFEST_NAME = "_manifest.json"
PART_NAME = "part-0.parquet"
SERIES_TABLE = "series"
SERIES_NAME = "series.parquet"
POPULATION_TABLE = "population"
# The tables of past releases (rq tables --as-of): <P>as-of/<release>/...
AS_OF_TABLES = "as-of"


def observations_key(tables_prefix: str, survey: str, data_file: str) -> str:
    """The key of the observations partition of one data file."""
    return f"{normalise_prefix(tables_prefix)}{survey}/observations/file={data_file}/{PART_NAME}"


def series_key(tables_prefix: str, survey: str) -> str:
    """The key of the decoded series table of a survey.

    In a folder of its own, not beside ``observations/``: Athena reads every object under a
    table's location, subfolders included, so a series table located at ``<survey>/`` would
    read the observations too.
    """
    return f"{normalise_prefix(tables_prefix)}{survey}/{SERIES_TABLE}/{SERIES_NAME}"


def manifest_key(tables_prefix: str, survey: str) -> str:
    """The key of the manifest of a survey's tables (or of ``population``)."""
    return f"{normalise_prefix(tables_prefix)}{survey}/{MANIFEST_NAME}"


def population_key(tables_prefix: str) -> str:
    """The key of the population table."""
    return f"{normalise_prefix(tables_prefix)}{POPULATION_TABLE}/population.parquet"


def default_tables_prefix(root_prefix: str = "") -> str:
    """Where the tables of the mirrors under ``root_prefix`` go unless told: beside them.

    ``""`` gives ``tables/``; ``mirrors/`` gives ``mirrors/tables/``, so the mirrors of two roots
    in one bucket never share (and overwrite) one set of tables.
    """
    return f"{normalise_prefix(root_prefix)}{TABLES_PREFIX}"


def tables_prefix(given: str | None, root_prefix: str = "") -> str:
    """Where the tables are: ``given`` (normalised), or beside the mirrors under ``root_prefix``
    when it is None (:func:`default_tables_prefix`). Every command resolves it here, so
    ``--tables-prefix`` means the same everywhere.

    Raises:
        ConfigError: ``given`` is empty (the tables would mix with the mirrors at the bucket
            root), or it or ``root_prefix`` is not a relative prefix.
    """
    if given is None:
        return default_tables_prefix(root_prefix)
    resolved = normalise_prefix(given)
    if not resolved:
        raise ConfigError("--tables-prefix must not be empty: the tables would mix with mirrors")
    return resolved
