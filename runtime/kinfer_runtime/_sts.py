"""Temporary S3 credentials from a web-identity token (EKS IRSA, or any projected
ServiceAccount token trusted by an IAM OpenID provider), so no static key needs storing.

The variables are the ones the AWS SDKs read and EKS's pod-identity webhook injects:
AWS_WEB_IDENTITY_TOKEN_FILE and AWS_ROLE_ARN (AWS_ROLE_SESSION_NAME optional), the STS
endpoint from AWS_ENDPOINT_URL_STS or the region's. AssumeRoleWithWebIdentity is an unsigned
POST (the token is the proof), answered in XML: a few lines of urllib and ElementTree, read
with a size bound (and expat's own limit on entity amplification), rather than botocore's
service descriptions. The token file is read again for every call: the kubelet rotates it.
Regions outside the aws partition (China) need AWS_ENDPOINT_URL_STS.
"""

import http.client
import logging
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Final

from kinfer_runtime._objectstore import ObjectStoreCredentials
from kinfer_runtime.errors import ModelLoadError

__all__ = [
    "WebIdentity",
    "WebIdentityCredentials",
    "credentials_from_env",
    "web_identity_from_env",
]

log = logging.getLogger(__name__)

ENV_TOKEN_FILE: Final = "AWS_WEB_IDENTITY_TOKEN_FILE"
ENV_ROLE_ARN: Final = "AWS_ROLE_ARN"
ENV_SESSION_NAME: Final = "AWS_ROLE_SESSION_NAME"
ENV_STS_ENDPOINT: Final = "AWS_ENDPOINT_URL_STS"
_MAX_TOKEN_BYTES: Final = 16 * 1024  # a ServiceAccount JWT is 1-2 KiB
_MAX_ANSWER_BYTES: Final = 64 * 1024  # STS answers are ~2 KiB
_TIMEOUT_S: Final = 30.0
_DURATION_S: Final = 3600  # STS's default, and what every role allows
_REFRESH_BEFORE: Final = timedelta(minutes=5)
_NS: Final = "{https://sts.amazonaws.com/doc/2011-06-15/}"


@dataclass(frozen=True)
class WebIdentity:
    """Which role to assume, with which token file, at which STS endpoint."""

    role_arn: str
    token_file: Path
    sts_endpoint: str
    session_name: str = "kinfer"


def web_identity_from_env(environ: Mapping[str, str], region: str) -> WebIdentity | None:
    """The web identity the environment configures, or None without both token file and
    role; the STS endpoint defaults to AWS_REGION's, else `region`'s."""
    token_file = environ.get(ENV_TOKEN_FILE)
    role_arn = environ.get(ENV_ROLE_ARN)
    if not token_file or not role_arn:
        return None
    region = environ.get("AWS_REGION") or region
    endpoint = environ.get(ENV_STS_ENDPOINT) or f"https://sts.{region}.amazonaws.com"
    session = environ.get(ENV_SESSION_NAME) or f"kinfer-{int(time.time())}"
    return WebIdentity(role_arn, Path(token_file), endpoint.rstrip("/") + "/", session[:64])


def _read_token(path: Path) -> str:
    try:
        with path.open("rb") as f:
            raw = f.read(_MAX_TOKEN_BYTES + 1)
    except OSError as exc:
        raise ModelLoadError(f"{ENV_TOKEN_FILE} {path}: cannot read it ({exc})") from exc
    if len(raw) > _MAX_TOKEN_BYTES:
        raise ModelLoadError(f"{ENV_TOKEN_FILE} {path} is over {_MAX_TOKEN_BYTES} bytes")
    token = raw.decode(errors="replace").strip()
    if not token:
        raise ModelLoadError(f"{ENV_TOKEN_FILE} {path} is empty")
    return token


def _text(node: ET.Element, name: str) -> str:
    found = node.findtext(f"{_NS}{name}")
    if not found:
        raise ModelLoadError(f"AssumeRoleWithWebIdentity answered without {name}")
    return found.strip()


def _parse_error(body: bytes) -> str:
    """'Code: Message' from an STS ErrorResponse, or a short prefix of whatever came."""
    try:
        error = ET.fromstring(body).find(f"{_NS}Error")
    except ET.ParseError:
        error = None
    if error is None:
        return body[:200].decode(errors="replace")
    return f"{error.findtext(f'{_NS}Code')}: {error.findtext(f'{_NS}Message')}"


def _read_bounded(response: http.client.HTTPResponse | urllib.error.HTTPError) -> bytes:
    body = response.read(_MAX_ANSWER_BYTES + 1)
    if len(body) > _MAX_ANSWER_BYTES:
        raise ModelLoadError(f"AssumeRoleWithWebIdentity answer is over {_MAX_ANSWER_BYTES} bytes")
    return body


def assume_role(identity: WebIdentity) -> tuple[ObjectStoreCredentials, datetime]:
    """Temporary credentials for the role and when they expire."""
    form = {
        "Action": "AssumeRoleWithWebIdentity",
        "Version": "2011-06-15",
        "RoleArn": identity.role_arn,
        "RoleSessionName": identity.session_name,
        "DurationSeconds": str(_DURATION_S),
        "WebIdentityToken": _read_token(identity.token_file),
    }
    request = urllib.request.Request(
        identity.sts_endpoint,
        data=urllib.parse.urlencode(form).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        method="POST",
    )
    what = f"AssumeRoleWithWebIdentity for {identity.role_arn} at {identity.sts_endpoint}"
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as response:
            body = _read_bounded(response)
    except urllib.error.HTTPError as exc:
        raise ModelLoadError(f"{what}: HTTP {exc.code} {_parse_error(_read_bounded(exc))}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise ModelLoadError(f"{what}: {exc}") from exc
    try:
        result = ET.fromstring(body).find(f"{_NS}AssumeRoleWithWebIdentityResult")
    except ET.ParseError as exc:
        raise ModelLoadError(f"{what}: the answer is not XML ({exc})") from exc
    creds = None if result is None else result.find(f"{_NS}Credentials")
    if creds is None:
        raise ModelLoadError(f"{what}: the answer holds no Credentials")
    try:
        expires = datetime.fromisoformat(_text(creds, "Expiration").replace("Z", "+00:00"))
    except ValueError as exc:
        raise ModelLoadError(f"{what}: the Expiration is not a time ({exc})") from exc
    return (
        ObjectStoreCredentials(
            _text(creds, "AccessKeyId"),
            _text(creds, "SecretAccessKey"),
            _text(creds, "SessionToken"),
        ),
        expires if expires.tzinfo else expires.replace(tzinfo=UTC),
    )


class WebIdentityCredentials:
    """The role's temporary credentials, assumed again when they have under five minutes
    left: each download attempt asks, so a long download's resumes stay signed."""

    def __init__(
        self, identity: WebIdentity, *, now: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self.identity = identity
        self._now = now
        self._lock = threading.Lock()
        self._current: tuple[ObjectStoreCredentials, datetime] | None = None

    def get(self) -> ObjectStoreCredentials:
        with self._lock:
            if self._current is None or self._current[1] - self._now() < _REFRESH_BEFORE:
                self._current = assume_role(self.identity)
                log.info(
                    "assumed %s until %s", self.identity.role_arn, self._current[1].isoformat()
                )
            return self._current[0]

    def __repr__(self) -> str:
        return f"WebIdentityCredentials(role_arn={self.identity.role_arn!r})"


def credentials_from_env(environ: Mapping[str, str], region: str) -> WebIdentityCredentials | None:
    """Temporary-credential source for the environment's web identity, if it has one."""
    identity = web_identity_from_env(environ, region)
    return WebIdentityCredentials(identity) if identity is not None else None
