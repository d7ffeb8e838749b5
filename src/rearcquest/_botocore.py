"""botocore sessions for the S3 and SQS seams: one profile check, one region rule."""

from __future__ import annotations

import os
from typing import Any

from rearcquest.errors import ConfigError


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


def region(core: Any, region: str | None, endpoint_url: str | None) -> str | None:
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
