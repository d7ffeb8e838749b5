"""The Glue seam: the only code that talks to the Glue Data Catalog, as :mod:`rearcquest.aws.storage`
is for S3 and :mod:`rearcquest.aws.queues` for SQS.

The CDK stack declares the Glue tables of the surveys it knows (``pr`` and those it is given).
A deployment that mirrors every survey (``surveys=all``) learns its surveys only when it lists
the root, so the worker registers each survey's tables after building them
(:meth:`Catalog.ensure_tables`): a table is created when it is missing and never changed when it
exists, so what the stack declared stays the stack's. Errors come back as
:class:`~rearcquest.errors.StorageError` naming the database; no caller reads botocore's.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from rearcquest.aws import _botocore
from rearcquest.errors import StorageError

_T = TypeVar("_T")


def make_glue_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
) -> Any:
    """Create a Glue client (botocore's), from the default credential chain.

    Args:
        endpoint_url: a Glue-compatible endpoint (moto); defaults to ``AWS_ENDPOINT_URL_GLUE`` /
            ``AWS_ENDPOINT_URL``, then AWS itself.
        region: the AWS region; ``us-east-1`` when a custom endpoint is used without one.
        profile: a profile from the AWS config files; defaults to ``AWS_PROFILE``.

    Raises:
        ConfigError: the profile does not exist.
    """
    return _botocore.client("glue", endpoint_url=endpoint_url, region=region, profile=profile)


class Catalog:
    """One Glue database.

    Args:
        client: a Glue client (:func:`make_glue_client`).
        database: the database's name.
    """

    def __init__(self, client: Any, database: str) -> None:
        self.client = client
        self.database = database

    def __repr__(self) -> str:
        return f"Catalog({self.database!r})"

    def check_database(self) -> None:
        """Make sure the database exists (before work whose tables it is to hold).

        Raises:
            StorageError: it does not exist, or Glue refused to say.
        """
        try:
            _call(
                f"read the Glue database {self.database}",
                functools.partial(self.client.get_database, Name=self.database),
            )
        except _NotFound as exc:
            raise StorageError(
                f"the Glue database {self.database!r} does not exist (--glue-database, "
                "RQ_GLUE_DATABASE)",
                code=exc.code,
            ) from exc

    def ensure_tables(self, tables: Sequence[Mapping[str, Any]]) -> list[str]:
        """Create each table that the database does not hold yet; leave the others as they are.

        Args:
            tables: Glue ``TableInput`` documents (:func:`rearcquest.data.athena.table_input`).

        Returns:
            The names of the tables created (another run creating one at the same moment is no
            error: it exists either way).

        Raises:
            StorageError: the database is missing, or Glue refused (permissions, a bad table).
        """
        self.check_database()
        created = []
        for table in tables:
            name = str(table["Name"])
            try:
                _call(
                    f"read the Glue table {self.database}.{name}",
                    functools.partial(self.client.get_table, DatabaseName=self.database, Name=name),
                )
                continue
            except _NotFound:
                pass
            try:
                _call(
                    f"create the Glue table {self.database}.{name}",
                    functools.partial(
                        self.client.create_table, DatabaseName=self.database, TableInput=dict(table)
                    ),
                )
            except _AlreadyExists:
                continue
            created.append(name)
        return created


class _NotFound(StorageError):
    pass


class _AlreadyExists(StorageError):
    pass


def _call(what: str, call: Callable[[], _T]) -> _T:
    import botocore.exceptions

    try:
        return call()
    except botocore.exceptions.ClientError as exc:
        code = _botocore.error_code(exc)
        if code == "EntityNotFoundException":
            raise _NotFound(f"could not {what}: {exc}", code=code) from exc
        if code == "AlreadyExistsException":
            raise _AlreadyExists(f"could not {what}: {exc}", code=code) from exc
        raise StorageError(f"could not {what}: {exc}", code=code) from exc
    except botocore.exceptions.BotoCoreError as exc:
        raise StorageError(f"could not {what}: {exc}") from exc
