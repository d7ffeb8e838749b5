"""botocore sessions for the S3, SQS and Glue seams: one profile check, one region rule."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from rearcquest.errors import ConfigError

if TYPE_CHECKING:
    from botocore.exceptions import ClientError


def session(profile: str | None) -> Any:
    """A botocore session for ``profile`` (default ``AWS_PROFILE``), its profile read now.

    Raises:
        ConfigError: the profile does not exist (so it fails here, not in the middle of a run).
    """
    import botocore.exceptions
    import botocore.session

    core = botocore.session.Session(profile=profile)
    try:
        core.get_scoped_config()
    except botocore.exceptions.ProfileNotFound as exc:
        raise ConfigError(
            f"AWS profile {profile or core.profile!r} is not configured ({exc})"
        ) from exc
    return core


def resolve_region(core: Any, region: str | None, endpoint_url: str | None) -> str | None:
    """The region asked for, else the profile's, else ``us-east-1`` for a custom endpoint."""
    found: str | None = region or core.get_config_variable("region")
    if not found and endpoint_url:
        found = "us-east-1"
    return found


def endpoint(service: str, given: str | None) -> str | None:
    """The endpoint asked for, else ``AWS_ENDPOINT_URL_<SERVICE>``, else ``AWS_ENDPOINT_URL``."""
    return (
        given
        or os.environ.get(f"AWS_ENDPOINT_URL_{service}")
        or os.environ.get("AWS_ENDPOINT_URL")
        or None
    )


def client(
    service: str,
    *,
    endpoint_url: str | None,
    region: str | None,
    profile: str | None,
    access_key: tuple[str, str] | None = None,
) -> Any:
    """A botocore client of ``service`` (``"sqs"``, ``"glue"``) with botocore's own defaults.

    The endpoint follows :func:`endpoint` (``AWS_ENDPOINT_URL_<SERVICE>`` first), the region
    :func:`resolve_region`; ``access_key`` is an explicit ``(key id, secret)`` for embedded test
    endpoints only.

    Raises:
        ConfigError: the profile does not exist.
    """
    endpoint_url = endpoint(service.upper(), endpoint_url)
    core = session(profile)
    key_id, secret = access_key if access_key else (None, None)
    return core.create_client(
        service,
        endpoint_url=endpoint_url,
        region_name=resolve_region(core, region, endpoint_url),
        aws_access_key_id=key_id,
        aws_secret_access_key=secret,
    )


def error_code(exc: ClientError) -> str | None:
    """The code AWS answered (``NoSuchKey``, ``AccessDenied`` ...), else its HTTP status, else None.

    The one reader of a botocore error's response: the seams put it on their ``StorageError``
    (``code``), so no caller looks behind the translation.
    """
    code = exc.response.get("Error", {}).get("Code") or exc.response.get(
        "ResponseMetadata", {}
    ).get("HTTPStatusCode")
    return str(code) if code else None
