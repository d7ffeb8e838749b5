"""rearcquest: mirror public economic data into S3 and turn it into reports.

The command line (``rq``) is a thin layer over this library::

    from rearcquest import ObjectStore, SyncOptions, make_s3_client, sync_bls

    store = ObjectStore(make_s3_client(), bucket="my-bucket")
    result = sync_bls(store, SyncOptions(prefix="pr/", contact="me@example.com"))
    print(result.added, result.updated, result.deleted)

Heavy dependencies (boto3, httpx, polars) are imported lazily, so importing this package and
running ``rq --help`` stay fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "ConcurrentSyncError",
    "ConfigError",
    "DataError",
    "DeleteGuardError",
    "DeleteLimit",
    "FetchResult",
    "LeaseHeldError",
    "ListingError",
    "ObjectStore",
    "PopulationData",
    "Release",
    "RemoteFile",
    "ReportInputs",
    "Revisions",
    "RqError",
    "S3Access",
    "Settings",
    "SourceChangedError",
    "SourceError",
    "SourceForbiddenError",
    "StorageError",
    "SyncOptions",
    "SyncPlan",
    "SyncResult",
    "TablesResult",
    "TransferError",
    "__version__",
    "analyze",
    "analyze_at",
    "build_tables",
    "fetch_population",
    "list_releases",
    "make_s3_client",
    "parse_listing",
    "parse_population",
    "plan_sync",
    "revisions",
    "run_sql",
    "sync_bls",
    "write_static_index",
]

from rearcquest._version import __version__
from rearcquest.errors import (
    ConcurrentSyncError,
    ConfigError,
    DataError,
    DeleteGuardError,
    LeaseHeldError,
    ListingError,
    RqError,
    SourceChangedError,
    SourceError,
    SourceForbiddenError,
    StorageError,
    TransferError,
)

if TYPE_CHECKING:
    from rearcquest.aws.storage import ObjectStore, S3Access, make_s3_client
    from rearcquest.config import DeleteLimit, Settings, SyncOptions
    from rearcquest.data.analytics import ReportInputs, analyze
    from rearcquest.data.tables import TablesResult, build_tables, run_sql
    from rearcquest.data.vintages import Revisions, analyze_at, list_releases, revisions
    from rearcquest.index import write_static_index
    from rearcquest.mirror.population import FetchResult, fetch_population
    from rearcquest.mirror.sync import SyncPlan, SyncResult, plan_sync, sync_bls
    from rearcquest.records.releases import Release
    from rearcquest.sources.bls import RemoteFile, parse_listing
    from rearcquest.sources.datausa import PopulationData, parse_population

# Public name -> module that defines it; resolved on first access (PEP 562) to keep start-up lean.
_LAZY = {
    "Settings": "rearcquest.config",
    "DeleteLimit": "rearcquest.config",
    "SyncOptions": "rearcquest.config",
    "analyze": "rearcquest.data.analytics",
    "ReportInputs": "rearcquest.data.analytics",
    "FetchResult": "rearcquest.mirror.population",
    "fetch_population": "rearcquest.mirror.population",
    "PopulationData": "rearcquest.sources.datausa",
    "parse_population": "rearcquest.sources.datausa",
    "RemoteFile": "rearcquest.sources.bls",
    "parse_listing": "rearcquest.sources.bls",
    "ObjectStore": "rearcquest.aws.storage",
    "S3Access": "rearcquest.aws.storage",
    "make_s3_client": "rearcquest.aws.storage",
    "SyncPlan": "rearcquest.mirror.sync",
    "SyncResult": "rearcquest.mirror.sync",
    "plan_sync": "rearcquest.mirror.sync",
    "sync_bls": "rearcquest.mirror.sync",
    "write_static_index": "rearcquest.index",
    "TablesResult": "rearcquest.data.tables",
    "build_tables": "rearcquest.data.tables",
    "run_sql": "rearcquest.data.tables",
    "Release": "rearcquest.records.releases",
    "Revisions": "rearcquest.data.vintages",
    "analyze_at": "rearcquest.data.vintages",
    "list_releases": "rearcquest.data.vintages",
    "revisions": "rearcquest.data.vintages",
}


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'rearcquest' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
