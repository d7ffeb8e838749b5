"""The only module that talks to S3.

:func:`make_s3_client` builds a botocore S3 client the way users expect (``AWS_ENDPOINT_URL``,
``AWS_PROFILE``, ``AWS_REGION`` and the default credential chain); :class:`S3Access` is a run's
access to S3 (one client, made on first use, a store of any bucket); :class:`ObjectStore` wraps one
bucket with the few operations the rest of the library needs, translating botocore's errors into
:class:`~rearcquest.errors.StorageError` messages that name the object and the fix.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import logging
import shutil
import threading
import zlib
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_all
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Final, cast
from urllib.parse import quote, unquote, urlsplit

from rearcquest.aws import _botocore
from rearcquest.errors import ConfigError, NoSpaceError, PreconditionFailedError, StorageError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

# An object written by an ObjectWriter goes up in one PUT when its body fits in one part; a larger
# one as a multipart upload whose parts are sent as they fill (S3's smallest part is 5 MiB, save
# the last). At most PARTS_PER_UPLOAD parts of one object and PARTS_IN_FLIGHT parts of one store
# are held at once, so memory is bounded by the part size, whatever the object sizes.
PART_SIZE = 8 * 1024 * 1024
MAX_PARTS = 10_000
PARTS_PER_UPLOAD = 4
PARTS_IN_FLIGHT = 8
# A body at least this large is sent with ``Expect: 100-continue``: S3 may refuse it (a redirect,
# a failed condition) before it is sent. botocore asks for it on every PUT, which costs a round
# trip per small object; the AWS SDK for Go draws the line at 2 MB.
EXPECT_CONTINUE_MIN = 2 * 1024 * 1024
_DELETE_BATCH = 1000
# CopyObject copies at most 5 GiB in one request; larger objects are copied part by part.
COPY_LIMIT = 5 * 1024**3
COPY_PART_SIZE = 512 * 1024 * 1024
# What S3 answers when a conditional write or delete loses (If-Match, If-None-Match).
_PRECONDITION_CODES = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")


def make_s3_client(
    *,
    endpoint_url: str | None = None,
    region: str | None = None,
    profile: str | None = None,
    access_key: tuple[str, str] | None = None,
    max_pool_connections: int | None = None,
) -> S3Client:
    """Create an S3 client (botocore's, the client boto3 wraps).

    Args:
        endpoint_url: an S3-compatible endpoint (MinIO, SeaweedFS, moto); defaults to
            ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL``, then AWS itself.
        region: the AWS region; defaults to ``AWS_REGION`` / the profile, or ``us-east-1`` when a
            custom endpoint is used without one.
        profile: a profile from the AWS config files; defaults to ``AWS_PROFILE``.
        access_key: explicit ``(key id, secret)``, for embedded test endpoints only.
        max_pool_connections: connections kept open to S3; default 16, room for the
            :data:`PARTS_IN_FLIGHT` part uploads beside a sync's other requests (botocore's own
            default is 10). A server that streams many objects at once needs more.

    Returns:
        A configured ``S3Client``.

    Raises:
        ConfigError: the profile does not exist.
    """
    # botocore alone, not boto3: boto3's session adds nothing rearcquest uses but imports
    # s3transfer and registers its handlers, ~0.15 s of CPU at the start of every run.
    import botocore.config

    endpoint_url = _botocore.endpoint("S3", endpoint_url)
    core = _botocore.session(profile)
    # botocore parses every LastModified of a listing with dateutil, ~0.4 ms each: 4 s for a
    # 10,000-object listing. S3's ISO 8601 stamps parse ~50x faster with fromisoformat.
    core.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=_parse_timestamp
    )
    region = _botocore.resolve_region(core, region, endpoint_url)
    s3: dict[str, Any] = {}
    if endpoint_url:
        # S3-compatible servers on an IP or localhost only understand path-style addressing.
        s3["addressing_style"] = "path"
        if _is_loopback_http(endpoint_url):
            # Over plain http botocore signs every body, a second sha256 of every byte sent (half
            # the CPU of a large sync); on this machine's own loopback there is no one to guard
            # against. Bodies still carry a CRC32 checksum, as they do over https, where botocore
            # never signs them.
            s3["payload_signing_enabled"] = False
    config = botocore.config.Config(
        retries={"mode": "standard", "max_attempts": 4},
        connect_timeout=10,
        read_timeout=60,
        s3=cast("Any", s3),  # a TypedDict in the stubs, built key by key here
        # botocore would presign with the retired SigV2 in us-east-1; new buckets refuse it.
        signature_version="s3v4",
    )
    config = config.merge(
        botocore.config.Config(max_pool_connections=max_pool_connections or PARTS_IN_FLIGHT + 8)
    )
    kwargs: dict[str, Any] = {"endpoint_url": endpoint_url, "config": config}
    if region:
        kwargs["region_name"] = region
    if access_key is not None:
        kwargs["aws_access_key_id"], kwargs["aws_secret_access_key"] = access_key
    client = cast("S3Client", core.create_client("s3", **kwargs))
    from botocore.handlers import add_expect_header

    client.meta.events.unregister("before-call.s3", add_expect_header)
    client.meta.events.register("before-call.s3", _expect_continue_if_large)
    return client


class S3Access:
    """The S3 access of a run: one client, made on first use, and a store of any bucket.

    The entry points make one and hand it down; nothing below them makes a client. A run that
    reads only local files never makes one (nor imports botocore).

    Args:
        endpoint_url: the S3-compatible endpoint of :func:`make_s3_client`.
        client: a ready client to use instead (a Lambda's per-container client, a test's).
        max_pool_connections: as :func:`make_s3_client`.
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        client: S3Client | None = None,
        max_pool_connections: int | None = None,
    ) -> None:
        self._endpoint_url = endpoint_url
        self._client = client
        self._connections = max_pool_connections

    @property
    def client(self) -> S3Client:
        """The run's client, made on first use.

        Raises:
            ConfigError: the AWS profile does not exist.
        """
        if self._client is None:
            self._client = make_s3_client(
                endpoint_url=self._endpoint_url, max_pool_connections=self._connections
            )
        return self._client

    def store(self, bucket: str) -> ObjectStore:
        """The bucket ``bucket`` through the run's client.

        Raises:
            ConfigError: no bucket named, or the AWS profile does not exist.
        """
        return ObjectStore(self.client, bucket)


def _expect_continue_if_large(model: Any, params: dict[str, Any], **_: Any) -> None:
    """``Expect: 100-continue`` on a PUT or POST body of :data:`EXPECT_CONTINUE_MIN` or more."""
    if model.http.get("method", "") not in ("PUT", "POST"):
        return
    body = params.get("body")
    length = params["headers"].get("Content-Length")
    if length is not None:
        size = int(length)
    elif body is None or isinstance(body, bytes | bytearray):
        size = len(body or b"")
    else:
        from botocore.utils import determine_content_length

        size = determine_content_length(body) or 0
    if size >= EXPECT_CONTINUE_MIN:
        params["headers"]["Expect"] = "100-continue"


def _is_loopback_http(url: str) -> bool:
    """Whether ``url`` is plain http to this machine (``localhost``, ``127.x``, ``::1``)."""
    import ipaddress

    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.scheme.lower() != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _parse_timestamp(value: Any) -> datetime:
    """Parse an S3 timestamp the fast way: ISO 8601 (listings) and HTTP dates (a HEAD's or a
    GET's ``Last-Modified``); anything else as botocore does (dateutil, ~0.3 ms a stamp)."""
    parsed: datetime | None = None
    if isinstance(value, str) and value[:1].isdigit():
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            parsed = None
    elif isinstance(value, str) and value.endswith(" GMT"):
        from email.utils import parsedate_to_datetime

        try:
            parsed = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            parsed = None
    if parsed is not None and parsed.tzinfo is not None:
        return parsed
    from botocore.utils import parse_timestamp

    result: datetime = parse_timestamp(value)
    return result


# What a credential provider of Polars' object-store reader returns: the keys and their expiry
# (epoch seconds; None: reuse them for the whole query).
ReaderCredentials = tuple[dict[str, str], int | None]


@dataclass(frozen=True)
class ReaderOptions:
    """How a reader outside botocore (Polars' ``scan_parquet``) reaches this store's objects.

    Attributes:
        storage_options: endpoint, region and addressing, without the keys.
        credential_provider: returns the keys of the store's own credential chain, asked again
            whenever the reader needs them (so refreshed role credentials are followed).
    """

    storage_options: dict[str, str]
    credential_provider: Callable[[], ReaderCredentials]


@dataclass(frozen=True)
class ObjectInfo:
    """What S3 says about one object."""

    key: str
    size: int
    etag: str
    last_modified: datetime | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    # The S3 version id when the bucket is versioned (None when it never was; "null" for an
    # object written while versioning was suspended).
    version_id: str | None = None


@dataclass(frozen=True)
class ListPage:
    """One page of a delimited listing: objects, sub-folders and the token for the next page."""

    objects: list[ObjectInfo]
    prefixes: list[str]
    next_token: str | None


@dataclass(frozen=True)
class UploadPart:
    """One uploaded part of a multipart upload, as S3's ListParts tells it."""

    number: int
    etag: str
    size: int


@dataclass
class ObjectStream:
    """An open object body: iterate ``chunks()`` and ``close()`` it (or use ``with``)."""

    info: ObjectInfo
    content_range: str | None
    _body: Any

    def chunks(self, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
        """Yield the body in chunks of at most ``chunk_size`` bytes."""
        while True:
            chunk = self._body.read(chunk_size)
            if not chunk:
                return
            yield chunk

    def read_all(self) -> bytes:
        """The whole body in one read: held once (chunks joined are held twice at the end)."""
        body: bytes = self._body.read()
        return body

    def close(self) -> None:
        """Release the connection."""
        self._body.close()

    def __enter__(self) -> ObjectStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _crc32(body: bytes | bytearray) -> str:
    """The CRC32 of ``body`` as S3's ``x-amz-checksum-crc32`` header wants it (base64, big-endian)."""
    return base64.b64encode(zlib.crc32(body).to_bytes(4, "big")).decode()


def _encode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    # S3 user metadata travels in HTTP headers: ASCII only, so anything else is percent-encoded.
    return {k: quote(v, safe=" !#$&'()*+,/:;=?@[]~") for k, v in metadata.items()}


def _quoted(etag: str) -> str:
    return etag if etag.startswith('"') else f'"{etag}"'


def _info(key: str, response: Mapping[str, Any]) -> ObjectInfo:
    """The :class:`ObjectInfo` of a HeadObject or GetObject response."""
    return ObjectInfo(
        key=key,
        size=int(response.get("ContentLength", 0)),
        etag=str(response.get("ETag", "")).strip('"'),
        last_modified=response.get("LastModified"),
        content_type=response.get("ContentType"),
        metadata=_decode_metadata(response.get("Metadata", {})),
        version_id=response.get("VersionId"),
    )


def _decode_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    return {k.lower(): unquote(v) for k, v in metadata.items()}


class ObjectStore:
    """One S3 bucket, seen through the operations rearcquest needs.

    Args:
        client: a boto3 S3 client, usually from :func:`make_s3_client`.
        bucket: the bucket name.
    """

    def __init__(self, client: S3Client, bucket: str) -> None:
        if not bucket or not bucket.strip():
            raise ConfigError("no bucket given: pass --bucket or set the RQ_*_BUCKET variable")
        self.client = client
        self.bucket = bucket.strip()
        self._parts_lock = threading.Lock()
        self._parts: tuple[ThreadPoolExecutor, threading.BoundedSemaphore] | None = None

    def __repr__(self) -> str:
        return f"ObjectStore(bucket={self.bucket!r}, endpoint={self.endpoint_url!r})"

    @property
    def endpoint_url(self) -> str:
        """The endpoint the client talks to."""
        return str(self.client.meta.endpoint_url)

    def url(self, key: str = "") -> str:
        """Return ``s3://bucket/key``."""
        return f"s3://{self.bucket}/{key}"

    def reader_options(self) -> ReaderOptions:
        """The options for Polars to read ``s3://`` URLs of this bucket as this client does.

        The same endpoint (``AWS_ENDPOINT_URL``, a local S3-compatible server), region and
        credentials (profile, environment, role) as the store's client, so a query reads what
        the rest of rq writes, without a copy on local disk.

        Returns:
            ``storage_options`` and a ``credential_provider`` for ``polars.scan_parquet``.
        """
        meta = self.client.meta
        options = {"aws_region": str(meta.region_name or "us-east-1")}
        endpoint = str(meta.endpoint_url or "")
        host = (urlsplit(endpoint).hostname or "").lower()
        # On AWS itself the reader finds the regional endpoint from the region; a custom one
        # (MinIO, SeaweedFS, moto) is taken as is, path-style, as botocore addresses it.
        if endpoint and not host.endswith(".amazonaws.com"):
            options["aws_endpoint_url"] = endpoint.rstrip("/")
            options["aws_virtual_hosted_style_request"] = "false"
            if urlsplit(endpoint).scheme.lower() == "http":
                options["aws_allow_http"] = "true"
        # botocore keeps the resolved credential chain on the client (refreshing role
        # credentials as they expire); there is no public accessor for it.
        credentials = self.client._get_credentials()  # type: ignore[attr-defined]
        if credentials is None:
            options["aws_skip_signature"] = "true"

        def provide() -> ReaderCredentials:
            if credentials is None:
                return {}, None
            frozen = credentials.get_frozen_credentials()
            keys = {
                "aws_access_key_id": frozen.access_key,
                "aws_secret_access_key": frozen.secret_key,
            }
            if frozen.token:
                keys["aws_session_token"] = frozen.token
            return keys, None

        return ReaderOptions(options, provide)

    def _error(
        self, exc: Exception, action: str, key: str | None = None, version_id: str | None = None
    ) -> StorageError:
        """Translate ``exc`` into a :class:`StorageError` naming the object, S3's code and a fix."""
        import botocore.exceptions

        where = self.url(key) if key is not None else self.url()
        if version_id is not None:
            where += f"?versionId={version_id}"
        code = None
        if isinstance(exc, botocore.exceptions.ClientError):
            code = _botocore.error_code(exc)
            if code == "NoSuchBucket":
                hint = f"bucket {self.bucket!r} does not exist; create it or check the bucket name"
            elif code in ("AccessDenied", "403", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                hint = "access denied; check the credentials (AWS_PROFILE) and the bucket policy"
            elif code in ("NoSuchKey", "404", "NotFound"):
                hint = "no such object"
            elif code in _PRECONDITION_CODES:
                return PreconditionFailedError(
                    f"cannot {action} {where}: the object changed since it was read "
                    f"(S3 answered {code}); nothing was overwritten",
                    code=code,
                    key=key,
                )
            else:
                hint = f"S3 answered {code or 'an error'}: {exc}"
        elif isinstance(exc, botocore.exceptions.NoCredentialsError):
            hint = "no AWS credentials found; set AWS_PROFILE or configure the credential chain"
        elif isinstance(exc, botocore.exceptions.EndpointConnectionError | ConnectionError):
            hint = (
                f"cannot reach the S3 endpoint {self.endpoint_url}; is it running? "
                "(--endpoint-url / AWS_ENDPOINT_URL)"
            )
        else:
            hint = str(exc) or type(exc).__name__
        return StorageError(f"cannot {action} {where}: {hint}", code=code, key=key)

    def _call(
        self, action: str, key: str | None, fn: Callable[[], Any], version_id: str | None = None
    ) -> Any:
        import botocore.exceptions

        try:
            return fn()
        except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
            raise self._error(exc, action, key, version_id) from exc

    def check_bucket(self) -> None:
        """Fail early with a clear message when the bucket cannot be used.

        Raises:
            StorageError: the bucket does not exist or is not accessible.
        """
        import botocore.exceptions

        try:
            self.client.head_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            code = _botocore.error_code(exc)
            if code in ("404", "NoSuchBucket", "NotFound"):
                raise StorageError(
                    f"bucket {self.bucket!r} does not exist at {self.endpoint_url}; "
                    "create it or check the bucket name",
                    code=code,
                ) from exc
            raise self._error(exc, "use bucket") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, "use bucket") from exc

    def versioning(self) -> str:
        """The bucket's versioning status: ``Enabled``, ``Suspended`` or ``""`` (never enabled).

        Raises:
            StorageError: S3 refused (no bucket, or no ``s3:GetBucketVersioning`` permission).
        """
        response = self._call(
            "read the versioning of",
            None,
            lambda: self.client.get_bucket_versioning(Bucket=self.bucket),
        )
        return str(response.get("Status", ""))

    def create_bucket(self) -> None:
        """Create the bucket if it does not exist (for local endpoints and the demo)."""
        import botocore.exceptions

        try:
            self.client.create_bucket(Bucket=self.bucket)
        except botocore.exceptions.ClientError as exc:
            if _botocore.error_code(exc) not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise self._error(exc, "create bucket") from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, "create bucket") from exc

    def list_objects(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Yield every object under ``prefix``, paging through ``ListObjectsV2``.

        Raises:
            StorageError: the listing failed.
        """
        token: str | None = None
        while True:
            page = self.list_page(prefix, delimiter=None, token=token)
            yield from page.objects
            if page.next_token is None:
                return
            token = page.next_token

    def list_page(
        self,
        prefix: str = "",
        *,
        delimiter: str | None = "/",
        token: str | None = None,
        max_keys: int = 1000,
    ) -> ListPage:
        """Return one page of ``ListObjectsV2``.

        Args:
            prefix: only keys starting with this.
            delimiter: group keys below the next ``/`` into ``prefixes``; ``None`` lists all.
            token: the ``next_token`` of the previous page.
            max_keys: the page size (S3 caps it at 1000).

        Raises:
            StorageError: the listing failed.
        """
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if delimiter:
            kwargs["Delimiter"] = delimiter
        if token:
            kwargs["ContinuationToken"] = token
        response = self._call("list", prefix, lambda: self.client.list_objects_v2(**kwargs))
        objects = [
            ObjectInfo(
                key=item["Key"],
                size=int(item.get("Size", 0)),
                etag=str(item.get("ETag", "")).strip('"'),
                last_modified=item.get("LastModified"),
            )
            for item in response.get("Contents", [])
        ]
        prefixes = [p["Prefix"] for p in response.get("CommonPrefixes", [])]
        next_token = response.get("NextContinuationToken") if response.get("IsTruncated") else None
        return ListPage(objects, prefixes, next_token)

    def head(self, key: str) -> ObjectInfo | None:
        """Return the object's size, ETag, metadata and version id, or ``None`` if it does not
        exist.

        Raises:
            StorageError: S3 failed for another reason.
        """
        import botocore.exceptions

        try:
            response = self.client.head_object(Bucket=self.bucket, Key=key)
        except botocore.exceptions.ClientError as exc:
            if _botocore.error_code(exc) in ("404", "NoSuchKey", "NotFound"):
                return None
            raise self._error(exc, "read", key) from exc
        except botocore.exceptions.BotoCoreError as exc:
            raise self._error(exc, "read", key) from exc
        return _info(key, response)

    def open(
        self,
        key: str,
        *,
        byte_range: tuple[int, int] | None = None,
        version_id: str | None = None,
    ) -> ObjectStream:
        """Open the object for streaming, optionally only bytes ``start..end`` (inclusive).

        Args:
            key: the object key.
            byte_range: only these bytes.
            version_id: that version of the object (a versioned bucket keeps the old ones).

        Raises:
            StorageError: the object (or that version) does not exist or cannot be read.
        """
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if byte_range is not None:
            kwargs["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
        if version_id is not None:
            kwargs["VersionId"] = version_id
        response = self._call("read", key, lambda: self.client.get_object(**kwargs), version_id)
        info = _info(key, response)
        return ObjectStream(info, response.get("ContentRange"), response["Body"])

    def stream(self, key: str, *, chunk_size: int = 1024 * 1024) -> Generator[bytes, None, None]:
        """The object's body, a chunk at a time, from one streaming GET (made at the first
        chunk; ``close()`` the generator to drop the connection before the end).

        Raises:
            StorageError: the object does not exist or cannot be read (also midway: a dropped
                connection).
        """
        import botocore.exceptions

        with self.open(key) as stream:
            try:
                yield from stream.chunks(chunk_size)
            except (botocore.exceptions.BotoCoreError, OSError) as exc:
                raise self._error(exc, "read", key) from exc

    def _open_version(self, key: str, version_id: str | None) -> ObjectStream:
        # Without a version, the plain call: wrappers of open() written before versions (test
        # doubles, instrumented stores) keep working.
        if version_id is None:
            return self.open(key)
        return self.open(key, version_id=version_id)

    def presigned_url(self, key: str, *, expires_in: int) -> str:
        """Return a presigned GET URL for the object, valid for ``expires_in`` seconds.

        Signing happens locally (no request is made); the URL works while the credentials that
        signed it are valid, and SigV4 caps ``expires_in`` at seven days.

        Raises:
            StorageError: no credentials to sign with.
        """
        url = self._call(
            "presign",
            key,
            lambda: self.client.generate_presigned_url(
                "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=expires_in
            ),
        )
        return str(url)

    def get_bytes(
        self, key: str, *, max_bytes: int | None = None, version_id: str | None = None
    ) -> bytes:
        """Read a whole (small) object.

        Args:
            key: the object key.
            max_bytes: refuse objects larger than this.
            version_id: that version of the object.

        Raises:
            StorageError: the object does not exist, cannot be read or is too large.
        """
        with self._open_version(key, version_id) as stream:
            if max_bytes is not None and stream.info.size > max_bytes:
                raise StorageError(
                    f"{self.url(key)} is {stream.info.size} bytes, more than the {max_bytes} allowed",
                    key=key,
                )
            return stream.read_all()

    def download_to(
        self,
        key: str,
        fileobj: IO[bytes],
        *,
        version_id: str | None = None,
        on_chunk: Callable[[bytes], object] | None = None,
    ) -> int:
        """Stream the object (or that version of it) into ``fileobj``; return the bytes written.

        ``on_chunk`` sees every chunk as it is written (``hashlib.sha256().update``: the bytes
        hashed in the same pass). When ``fileobj`` is a file on disk, the free space of its
        folder is checked first (see :func:`free_bytes`).

        Raises:
            StorageError: the object does not exist or cannot be read.
            NoSpaceError: the file's folder has less room than the object needs, or filled up
                while it was written.
        """
        import botocore.exceptions

        written = 0
        with self._open_version(key, version_id) as stream:
            folder = _folder_of(fileobj)
            if folder is not None:
                _check_room(folder, stream.info.size, self.url(key))
            chunks = stream.chunks(1024 * 1024)
            while True:
                try:
                    chunk = next(chunks, None)
                    if chunk is None:
                        break
                    fileobj.write(chunk)
                except OSError as exc:
                    if exc.errno in _FULL_DISK:
                        raise _no_space(folder or "", stream.info.size, self.url(key)) from exc
                    raise self._error(exc, "read", key) from exc
                except botocore.exceptions.BotoCoreError as exc:
                    raise self._error(exc, "read", key) from exc
                if on_chunk is not None:
                    on_chunk(chunk)
                written += len(chunk)
        return written

    def put_bytes(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Write a small object in one PUT; return its ETag.

        Raises:
            StorageError: the write failed.
        """
        return self._put(key, data, len(data), content_type, metadata)

    def _put(
        self,
        key: str,
        body: bytes | bytearray | IO[bytes],
        size: int,
        content_type: str,
        metadata: Mapping[str, str] | None,
    ) -> str:
        # A file object is streamed by botocore, so memory stays small whatever it holds; a
        # bytearray is sent as it is (the stubs name only bytes), saving a copy of the body.
        extra: dict[str, str] = {}
        if isinstance(body, bytes | bytearray):
            # As for parts: one zlib call that lets go of the GIL (botocore's own CRC32 of a
            # body in memory holds it), in a header S3 checks.
            extra["ChecksumCRC32"] = _crc32(body)
        response = self._call(
            "write",
            key,
            lambda: self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=cast("bytes", body),
                ContentLength=size,
                ContentType=content_type,
                Metadata=_encode_metadata(metadata or {}),
                **extra,  # type: ignore[arg-type]
            ),
        )
        return str(response.get("ETag", "")).strip('"')

    def writer(
        self,
        key: str,
        *,
        content_type: str = "application/octet-stream",
        metadata: Mapping[str, str] | None = None,
        size: int | None = None,
    ) -> ObjectWriter:
        """Start writing an object whose bytes arrive in pieces, with no temporary file.

        Args:
            key: the object key.
            content_type: the object's Content-Type.
            metadata: the user metadata the object gets if it grows into a multipart upload
                (fixed when the upload starts); :meth:`ObjectWriter.complete` may give other
                metadata for a body that still fits in one part.
            size: the expected size, if known: a body over :data:`PART_SIZE` x
                :data:`MAX_PARTS` then gets larger parts.

        Returns:
            The writer: :meth:`~ObjectWriter.write` the chunks, then
            :meth:`~ObjectWriter.complete` or :meth:`~ObjectWriter.abort`.
        """
        return ObjectWriter(self, key, content_type=content_type, metadata=metadata, size=size)

    def resume_writer(
        self,
        key: str,
        *,
        upload_id: str,
        parts: Sequence[UploadPart],
        part_size: int,
        content_type: str = "application/octet-stream",
    ) -> ObjectWriter:
        """Continue a multipart upload whose first ``parts`` are in S3 (as :meth:`list_parts`
        confirmed them): the next byte written starts part ``len(parts) + 1``.

        Args:
            key: the object key the upload was started for.
            upload_id: the upload.
            parts: its parts 1..n, each ``part_size`` bytes.
            part_size: the size of every part but the last.
            content_type: kept for the writer (the upload already has its own).

        Returns:
            The writer: write the rest, then complete, suspend or abort it.
        """
        writer = ObjectWriter(self, key, content_type=content_type, metadata=None, size=None)
        writer._resume(upload_id, parts, part_size)
        return writer

    def list_parts(self, key: str, upload_id: str) -> list[UploadPart] | None:
        """The parts of a multipart upload, by number; ``None`` when S3 knows no such upload
        (completed, aborted, or never started).

        Raises:
            StorageError: S3 failed for another reason.
        """
        import botocore.exceptions

        parts: list[UploadPart] = []
        marker = 0
        while True:
            try:
                page = self.client.list_parts(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumberMarker=marker
                )
            except botocore.exceptions.ClientError as exc:
                if _botocore.error_code(exc) in ("NoSuchUpload", "404", "NotFound"):
                    return None
                raise self._error(exc, "read the upload of", key) from exc
            except botocore.exceptions.BotoCoreError as exc:
                raise self._error(exc, "read the upload of", key) from exc
            for part in page.get("Parts", []):
                parts.append(
                    UploadPart(
                        int(part.get("PartNumber", 0)),
                        str(part.get("ETag", "")).strip('"'),
                        int(part.get("Size", -1)),
                    )
                )
            if not page.get("IsTruncated"):
                break
            following = int(page.get("NextPartNumberMarker", 0) or 0)
            if following <= marker:
                break  # a server that does not move on would loop for ever
            marker = following
        return sorted(parts, key=lambda p: p.number)

    def uploads_at(self, key: str) -> list[str]:
        """The ids of the multipart uploads in progress for exactly ``key``.

        Raises:
            StorageError: S3 failed.
        """
        found: list[str] = []
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Prefix": key}
        while True:
            page = self._call(
                "list the uploads of", key, lambda: self.client.list_multipart_uploads(**kwargs)
            )
            found.extend(str(u["UploadId"]) for u in page.get("Uploads", []) if u.get("Key") == key)
            if not page.get("IsTruncated"):
                return found
            following = (page.get("NextKeyMarker", ""), page.get("NextUploadIdMarker", ""))
            if following == (kwargs.get("KeyMarker", ""), kwargs.get("UploadIdMarker", "")):
                return found  # an endpoint that does not move on would loop for ever
            kwargs["KeyMarker"], kwargs["UploadIdMarker"] = following

    def abort_upload(self, key: str, upload_id: str) -> bool:
        """Abort a multipart upload (S3 drops its parts); ``True`` when done or already gone.

        Never raises: a failure is logged (a lifecycle rule removes what is left).
        """
        import botocore.exceptions

        try:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
        except botocore.exceptions.ClientError as exc:
            if _botocore.error_code(exc) in ("NoSuchUpload", "404", "NotFound"):
                return True
            log.warning("could not abort the multipart upload of %s: %s", self.url(key), exc)
            return False
        except botocore.exceptions.BotoCoreError as exc:
            log.warning("could not abort the multipart upload of %s: %s", self.url(key), exc)
            return False
        return True

    def sha256_of(self, key: str, *, if_match: str) -> tuple[int, str]:
        """Stream the object (only if its ETag is still ``if_match``) and hash it on the way:
        one GET, no copy kept. Returns its size and sha256.

        Raises:
            PreconditionFailedError: the object is no longer the one named.
            StorageError: it cannot be read.
        """
        import botocore.exceptions

        digest = hashlib.sha256()
        size = 0
        try:
            response = self._call(
                "read",
                key,
                lambda: self.client.get_object(
                    Bucket=self.bucket, Key=key, IfMatch=_quoted(if_match)
                ),
            )
        except StorageError as exc:
            raise self._gone_is_precondition(exc, key, "read", if_match) from exc.__cause__
        with ObjectStream(_info(key, response), None, response["Body"]) as stream:
            try:
                for chunk in stream.chunks(1024 * 1024):
                    digest.update(chunk)
                    size += len(chunk)
            except (botocore.exceptions.BotoCoreError, OSError) as exc:
                raise self._error(exc, "read", key) from exc
        return size, digest.hexdigest()

    def _part_pool(self) -> tuple[ThreadPoolExecutor, threading.BoundedSemaphore]:
        """The threads that send parts, and the slots bounding the parts held, for all writers."""
        with self._parts_lock:
            if self._parts is None:
                self._parts = (
                    ThreadPoolExecutor(max_workers=PARTS_IN_FLIGHT, thread_name_prefix="rq-part"),
                    threading.BoundedSemaphore(PARTS_IN_FLIGHT),
                )
            return self._parts

    def replace_metadata(
        self,
        key: str,
        metadata: Mapping[str, str],
        *,
        content_type: str,
        size: int | None = None,
        if_match: str | None = None,
    ) -> str:
        """Give the object new metadata and Content-Type in place; return its (new) ETag.

        A server-side copy of the object onto itself with ``MetadataDirective=REPLACE``: no byte
        leaves S3. Objects over :data:`COPY_LIMIT` (CopyObject's 5 GiB) are copied part by part
        (``UploadPartCopy``). A multipart copy gets a new ETag; a single copy usually keeps it.

        Args:
            key: the object key.
            metadata: the complete new user metadata (the old is dropped).
            content_type: the new Content-Type.
            size: the object's size, if known (saves a HEAD before a possible multipart copy).
            if_match: copy only if the object's ETag is still this one.

        Raises:
            StorageError: the object is missing, changed (``if_match``) or could not be copied;
                the object is as it was.
        """
        if size is None:
            head = self.head(key)
            if head is None:
                raise StorageError(
                    f"cannot update metadata of {self.url(key)}: no such object", key=key
                )
            size = head.size
        copy: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "CopySource": {"Bucket": self.bucket, "Key": key},
        }
        if if_match:
            copy["CopySourceIfMatch"] = f'"{if_match}"'
        encoded = _encode_metadata(metadata)
        if size <= COPY_LIMIT:
            response = self._call(
                "update metadata of",
                key,
                lambda: self.client.copy_object(
                    **copy,
                    MetadataDirective="REPLACE",
                    Metadata=encoded,
                    ContentType=content_type,
                ),
            )
            return str(response.get("CopyObjectResult", {}).get("ETag", "")).strip('"')
        return self._copy_parts(key, size, copy, encoded, content_type)

    def _copy_parts(
        self, key: str, size: int, copy: dict[str, Any], encoded: dict[str, str], content_type: str
    ) -> str:
        created = self._call(
            "update metadata of",
            key,
            lambda: self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, ContentType=content_type, Metadata=encoded
            ),
        )
        upload_id = created["UploadId"]
        parts: list[dict[str, Any]] = []
        try:
            for number, start in enumerate(range(0, size, COPY_PART_SIZE), 1):
                end = min(start + COPY_PART_SIZE, size) - 1
                request = {
                    **copy,
                    "UploadId": upload_id,
                    "PartNumber": number,
                    "CopySourceRange": f"bytes={start}-{end}",
                }
                part = self._call(
                    "update metadata of",
                    key,
                    lambda request=request: self.client.upload_part_copy(**request),  # type: ignore[misc]
                )
                parts.append({"ETag": part["CopyPartResult"]["ETag"], "PartNumber": number})
            done = self._call(
                "update metadata of",
                key,
                lambda: self.client.complete_multipart_upload(
                    Bucket=self.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                ),
            )
        except BaseException:
            try:
                self.client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except Exception:  # the original error is the one worth reporting
                log.warning("could not abort multipart copy of %s", self.url(key))
            raise
        return str(done.get("ETag", "")).strip('"')

    def fetch(self, key: str, *, max_bytes: int | None = None) -> tuple[bytes, ObjectInfo] | None:
        """Read a whole (small) object with its ETag, or ``None`` if it does not exist.

        The ETag is the one of the bytes returned (one GET), for a later ``if_match`` write. With
        ``max_bytes``, at most ``max_bytes + 1`` bytes are read, so a caller tells an object that
        is too large by the length, without reading all of it.

        Raises:
            StorageError: the object cannot be read.
        """
        import botocore.exceptions

        try:
            stream = self.open(key)
        except StorageError as exc:
            if exc.code in ("NoSuchKey", "404", "NotFound"):
                return None
            raise
        with stream:
            data = bytearray()
            try:
                for chunk in stream.chunks():
                    data += chunk
                    if max_bytes is not None and len(data) > max_bytes:
                        break
            except (botocore.exceptions.BotoCoreError, OSError) as exc:
                raise self._error(exc, "read", key) from exc
        return bytes(data), stream.info

    def put_bytes_if(
        self,
        key: str,
        data: bytes,
        *,
        if_match: str | None = None,
        if_none_match: bool = False,
        content_type: str = "application/json",
    ) -> str:
        """Write a small object only if it is still as expected; return its new ETag.

        Args:
            key: the object key.
            data: the new body.
            if_match: write only if the object's ETag is still this (``If-Match``).
            if_none_match: write only if no object exists at ``key`` (``If-None-Match: *``).
            content_type: the ``Content-Type``.

        Raises:
            PreconditionFailedError: the condition failed (the object changed, appeared or went
                away); nothing was written.
            StorageError: the write failed for another reason.
        """
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": key,
            "Body": data,
            "ContentLength": len(data),
            "ContentType": content_type,
        }
        if if_match is not None:
            kwargs["IfMatch"] = _quoted(if_match)
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        try:
            response = self._call("write", key, lambda: self.client.put_object(**kwargs))
        except StorageError as exc:
            raise self._gone_is_precondition(exc, key, "write", if_match) from exc.__cause__
        return str(response.get("ETag", "")).strip('"')

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        """Delete one object; with ``if_match``, only if its ETag is still that.

        Raises:
            PreconditionFailedError: ``if_match`` was given and the object changed or is gone.
            StorageError: the delete failed for another reason.
        """
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if if_match is not None:
            kwargs["IfMatch"] = _quoted(if_match)
        try:
            self._call("delete", key, lambda: self.client.delete_object(**kwargs))
        except StorageError as exc:
            raise self._gone_is_precondition(exc, key, "delete", if_match) from exc.__cause__

    def _gone_is_precondition(
        self, exc: StorageError, key: str, action: str, if_match: str | None
    ) -> StorageError:
        # AWS and moto answer 404 to If-Match on a missing object: for the caller it is the same
        # lost race as a 412 (the object it read is not there any more).
        if if_match is not None and exc.code in ("NoSuchKey", "404"):
            return PreconditionFailedError(
                f"cannot {action} {self.url(key)}: the object is gone since it was read; "
                "nothing was overwritten",
                code=exc.code,
                key=key,
            )
        return exc

    def delete_many(self, keys: list[str]) -> dict[str, str]:
        """Delete ``keys`` in batches; return ``{key: error message}`` for those that failed.

        Raises:
            StorageError: a whole batch request failed.
        """
        failures: dict[str, str] = {}
        for start in range(0, len(keys), _DELETE_BATCH):
            batch = keys[start : start + _DELETE_BATCH]
            response = self._call(
                "delete",
                batch[0],
                lambda batch=batch: self.client.delete_objects(  # type: ignore[misc]
                    Bucket=self.bucket,
                    Delete={"Objects": [{"Key": k} for k in batch], "Quiet": True},
                ),
            )
            for error in response.get("Errors", []):
                failures[str(error.get("Key"))] = str(error.get("Message", error.get("Code")))
        return failures

    def notify_queue(self, queue_arn: str, *, key_prefix: str) -> None:
        """Send an S3 event to the SQS queue ``queue_arn`` whenever a key under ``key_prefix`` is
        written (replaces the bucket's notification configuration; for local pipelines).

        Raises:
            StorageError: S3 refused the configuration.
        """
        self._call(
            "configure notifications of",
            None,
            lambda: self.client.put_bucket_notification_configuration(
                Bucket=self.bucket,
                NotificationConfiguration={
                    "QueueConfigurations": [
                        {
                            "QueueArn": queue_arn,
                            "Events": ["s3:ObjectCreated:*"],
                            "Filter": {
                                "Key": {"FilterRules": [{"Name": "prefix", "Value": key_prefix}]}
                            },
                        }
                    ]
                },
            ),
        )


# What a write to a full disk (or past the user's quota) fails with.
_FULL_DISK: Final = frozenset({errno.ENOSPC, errno.EDQUOT})


def free_bytes(directory: str) -> int:
    """The bytes free in ``directory``'s file system: the probe :meth:`ObjectStore.download_to`
    checks before it writes there."""
    return shutil.disk_usage(directory).free


def _folder_of(fileobj: IO[bytes]) -> str | None:
    """The folder of a file on disk (its ``name`` a path), or ``None`` (a buffer, a pipe)."""
    name = getattr(fileobj, "name", None)
    if not isinstance(name, str) or not name:
        return None
    return str(Path(name).absolute().parent)


def _mb(size: int) -> int:
    return -(-size // 1_000_000)


def _no_space(folder: str, needed: int, what: str) -> NoSpaceError:
    try:
        free = free_bytes(folder) if folder else 0
    except OSError:
        free = 0
    return NoSpaceError(
        f"no space left in {folder or 'the local disk'}: need ~{_mb(needed)} MB, have "
        f"{free // 1_000_000} MB (to download {what}); free some space or point TMPDIR at a "
        "larger disk",
        directory=folder,
        needed=needed,
        free=free,
    )


def _check_room(folder: str, needed: int, what: str) -> None:
    """Refuse, before writing, a download that the folder's disk cannot hold.

    Raises:
        NoSpaceError: less free space than ``needed``.
    """
    try:
        free = free_bytes(folder)
    except OSError:
        return  # no probe (a special file system): the write itself tells
    if free < needed:
        raise _no_space(folder, needed, what)


class ObjectWriter:
    """One object written as its bytes arrive: no temporary file, memory bounded by the parts.

    The first :data:`PART_SIZE` bytes are held in memory. A body that fits goes up in one PUT at
    :meth:`complete`; once a body outgrows one part a multipart upload starts, and each full part
    is sent while the next one fills, :data:`PARTS_PER_UPLOAD` at once (:meth:`write` waits for a
    slot, so a slow S3 slows the reader instead of filling memory). Nothing is visible in the
    bucket before :meth:`complete`; :meth:`abort` (also called by :meth:`complete` and
    :meth:`write` when they fail) leaves no object, no part and no S3 event behind.

    Use :meth:`ObjectStore.writer` to make one. ``write`` and ``complete`` are called from one
    thread at a time.
    """

    def __init__(
        self,
        store: ObjectStore,
        key: str,
        *,
        content_type: str,
        metadata: Mapping[str, str] | None,
        size: int | None,
    ) -> None:
        self.store = store
        self.key = key
        self.content_type = content_type
        self.metadata = dict(metadata or {})
        self.part_size = PART_SIZE
        if size is not None and size > PART_SIZE * MAX_PARTS:
            per_part = -(-size // MAX_PARTS)
            self.part_size = -(-per_part // 2**20) * 2**20  # a whole number of MiB
        self.size = 0
        # The body's next part, as the pieces given (joined once, when the part is sent).
        self._pieces: list[memoryview] = []
        self._held = 0
        self._upload_id: str | None = None
        self._sent: list[Future[str]] = []
        self._sizes: list[int] = []  # the size of each part sent, by number - 1
        self._slots = threading.BoundedSemaphore(PARTS_PER_UPLOAD)
        self._done = False
        self._part_failed = False  # set by a part's thread: checked at every write, cheaply

    @property
    def multipart(self) -> bool:
        """Whether the body outgrew one part and goes up as a multipart upload."""
        return self._upload_id is not None

    @property
    def upload_id(self) -> str | None:
        """The multipart upload's id, once one started (``None`` after complete or abort)."""
        return self._upload_id

    def _resume(self, upload_id: str, parts: Sequence[UploadPart], part_size: int) -> None:
        """Start from parts already in S3 (see :meth:`ObjectStore.resume_writer`)."""
        self._upload_id = upload_id
        self.part_size = part_size
        for part in parts:
            done: Future[str] = Future()
            done.set_result(_quoted(part.etag))
            self._sent.append(done)
            self._sizes.append(part.size)
            self.size += part.size

    def completed_parts(self) -> list[UploadPart]:
        """The parts S3 has taken so far, 1..n with no gap (one still in flight ends the list)."""
        parts: list[UploadPart] = []
        for number, future in enumerate(list(self._sent), 1):
            if not future.done() or future.cancelled() or future.exception() is not None:
                break
            etag = future.result().strip('"')
            parts.append(UploadPart(number, etag, self._sizes[number - 1]))
        return parts

    def suspend(self) -> list[UploadPart]:
        """Stop at the last whole part, leaving the multipart upload open to be resumed.

        The bytes of the part still filling are dropped; the parts in flight are waited for.
        The writer is closed (a later :meth:`abort` does nothing): the caller owns the upload,
        by its id, and must resume or abort it. A body that never grew into a multipart upload
        has nothing to keep.

        Returns:
            The parts in S3, 1..n with no gap.
        """
        self._done = True
        self._pieces, self._held = [], 0
        if self._upload_id is None:
            return []
        wait_all(self._sent)
        parts = self.completed_parts()
        self._upload_id = None
        return parts

    def write(self, data: bytes) -> None:
        """Add ``data`` to the body; send each part as it fills.

        Raises:
            StorageError: S3 refused the upload or a part (the upload is aborted).
        """
        if self._done:
            raise StorageError(
                f"cannot write {self.store.url(self.key)}: the writer is closed", key=self.key
            )
        try:
            self._raise_failed()
            # Pieces are held by reference until their part is sent: a mutable buffer that the
            # caller may reuse is copied now.
            view = memoryview(data if isinstance(data, bytes) else bytes(data))
            while view:
                if self._held == self.part_size:
                    # Sent only once more bytes come: a body of exactly one part is one PUT.
                    self._send_part()
                piece = view[: self.part_size - self._held]
                self._pieces.append(piece)
                self._held += len(piece)
                view = view[len(piece) :]
            self.size += len(data)
        except BaseException:
            self.abort()
            raise

    def complete(self, *, metadata: Mapping[str, str] | None = None) -> str:
        """Make the object visible; return its ETag.

        Args:
            metadata: the user metadata for a body that fits in one part (one PUT), instead of
                the one given at the start; a multipart upload keeps the one it started with.

        Raises:
            StorageError: the write failed; the upload is aborted and the object is as it was.
        """
        if self._done:
            raise StorageError(
                f"cannot write {self.store.url(self.key)}: the writer is closed", key=self.key
            )
        try:
            if self._upload_id is None:
                body = self._take_part()
                chosen = self.metadata if metadata is None else metadata
                etag = self.store._put(self.key, body, len(body), self.content_type, chosen)
                self._done = True
                return etag
            if self._held:
                self._send_part()
            parts = [
                {"ETag": future.result(), "PartNumber": number}
                for number, future in enumerate(self._sent, 1)
            ]
            upload_id = self._upload_id
            done = self.store._call(
                "write",
                self.key,
                lambda: self.store.client.complete_multipart_upload(
                    Bucket=self.store.bucket,
                    Key=self.key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                ),
            )
        except BaseException:
            self.abort()
            raise
        self._done = True
        self._upload_id = None  # completed: nothing left to abort
        return str(done.get("ETag", "")).strip('"')

    def abort(self) -> None:
        """Drop the body: abort the multipart upload, if one started, once its parts are sent.

        Never raises: a failed abort is logged (the object is unchanged either way; S3 keeps
        the parts of an upload it could not abort until a lifecycle rule removes them).
        """
        self._done = True
        self._pieces, self._held = [], 0
        upload_id, self._upload_id = self._upload_id, None
        if upload_id is None:
            return
        _, held = self.store._part_pool()
        for future in self._sent:
            if future.cancel():  # never ran: its slots are released here
                held.release()
                self._slots.release()
        # S3 may keep a part whose upload was still running when the abort came: wait for them.
        wait_all(self._sent)
        try:
            self.store.client.abort_multipart_upload(
                Bucket=self.store.bucket, Key=self.key, UploadId=upload_id
            )
        except Exception:  # the error that led here is the one worth reporting
            log.warning("could not abort the multipart upload of %s", self.store.url(self.key))

    def _raise_failed(self) -> None:
        if not self._part_failed:
            return
        for future in self._sent:
            if future.done() and not future.cancelled() and future.exception() is not None:
                future.result()

    def _send_part(self) -> None:
        if self._upload_id is None:
            created = self.store._call(
                "write",
                self.key,
                lambda: self.store.client.create_multipart_upload(
                    Bucket=self.store.bucket,
                    Key=self.key,
                    ContentType=self.content_type,
                    Metadata=_encode_metadata(self.metadata),
                ),
            )
            self._upload_id = str(created["UploadId"])
        number = len(self._sent) + 1
        if number > MAX_PARTS:
            raise StorageError(
                f"cannot write {self.store.url(self.key)}: more than {MAX_PARTS} parts of "
                f"{self.part_size} bytes; give the expected size so the parts are larger",
                key=self.key,
            )
        pool, held = self.store._part_pool()
        body = self._take_part()
        self._sizes.append(len(body))
        self._slots.acquire()
        held.acquire()
        try:
            self._sent.append(pool.submit(self._upload_part, self._upload_id, number, body))
        except BaseException:
            held.release()
            self._slots.release()
            raise
        del body
        self._raise_failed()

    def _take_part(self) -> bytes:
        """The pieces held so far, joined (the one copy of the bytes); nothing is held after."""
        body = b"".join(self._pieces)
        self._pieces, self._held = [], 0
        return body

    def _upload_part(self, upload_id: str, number: int, body: bytes) -> str:
        _, held = self.store._part_pool()
        try:
            # The part's CRC32 goes in a header, computed here in one call (zlib lets go of the
            # GIL): left to botocore, it is sent as an aws-chunked trailer, and the body is read
            # through a Python wrapper 8 KiB at a time, holding the GIL the download needs (a
            # fifth of the CPU of a 2 GiB file). S3 checks the part against it either way.
            crc32 = _crc32(body)
            part = self.store._call(
                "write",
                self.key,
                lambda: self.store.client.upload_part(
                    Bucket=self.store.bucket,
                    Key=self.key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ChecksumCRC32=crc32,
                ),
            )
            return str(part["ETag"])
        except BaseException:
            self._part_failed = True
            raise
        finally:
            held.release()
            self._slots.release()
