"""s3://, gs:// and azure:// sources as presigned HTTPS URLs, so they share the resumable
downloader.

AWS Signature Version 4 in its query-string form, written here rather than taken from
botocore: the runtime only ever signs a GET of one object, which is ~40 lines of a published
algorithm (checked against AWS's own example in the tests), while botocore would add tens of
megabytes of service descriptions to the runtime image. Google Cloud Storage accepts the same
signatures with HMAC keys (its XML API), so gs:// is the same code with another endpoint.
S3-compatible stores (MinIO, Ceph RGW, s3rver...) are reached with a custom endpoint, using
path-style URLs.

Azure Blob Storage gets a service SAS (shared access signature, version 2020-12-06 and later)
for reading one blob, signed with the storage account key: a URL, not a per-request Shared
Key header, because the Shared Key signature covers the Range header and every resumed
attempt would need a new one. azure-storage-blob would bring an HTTP stack for one HMAC.
"""

import base64
import binascii
import hashlib
import hmac
import urllib.parse
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = [
    "OBJECT_SCHEMES",
    "ObjectStoreCredentials",
    "azure_sas_url",
    "presigned_url",
    "sign_url",
]

OBJECT_SCHEMES: Final = ("s3", "gs", "azure")
_GCS_ENDPOINT: Final = "https://storage.googleapis.com"
_EXPIRES_S: Final = 7 * 24 * 3600  # SigV4's longest: one URL covers every resumed attempt
_SAS_VERSION: Final = "2022-11-02"  # any service version from 2020-12-06 signs the same
_UNRESERVED: Final = "-_.~"


@dataclass(frozen=True)
class ObjectStoreCredentials:
    """An access key pair: AWS keys, GCS HMAC keys, or an Azure storage account's name and
    its (base64) account key. Temporary AWS credentials (from STS) also carry a session
    token, which S3 wants signed alongside them."""

    access_key_id: str
    secret_access_key: str
    session_token: str | None = None

    def __repr__(self) -> str:
        token = ", session_token=<set>" if self.session_token else ""
        return f"ObjectStoreCredentials(access_key_id={self.access_key_id!r}, secret=<set>{token})"


def _quote(text: str, safe: str = _UNRESERVED) -> str:
    return urllib.parse.quote(text, safe=safe)


def _hmac(key: bytes, text: str) -> bytes:
    return hmac.new(key, text.encode(), hashlib.sha256).digest()


def _split(uri: str) -> tuple[str, str, str]:
    parts = urllib.parse.urlsplit(uri)
    bucket, key = parts.netloc, parts.path.lstrip("/")
    if not bucket or not key:
        what = "<container>/<blob>" if parts.scheme == "azure" else "<bucket>/<key>"
        raise ValueError(f"{uri} must be {parts.scheme}://{what}")
    return parts.scheme, bucket, key


def _object_url(uri: str, endpoint: str | None, region: str) -> str:
    scheme, bucket, key = _split(uri)
    if endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}/{_quote(key, _UNRESERVED + '/')}"
    if scheme == "gs":
        return f"{_GCS_ENDPOINT}/{bucket}/{_quote(key, _UNRESERVED + '/')}"
    return f"https://{bucket}.s3.{region}.amazonaws.com/{_quote(key, _UNRESERVED + '/')}"


def presigned_url(
    uri: str,
    *,
    endpoint: str | None = None,
    region: str = "us-east-1",
    credentials: ObjectStoreCredentials | None = None,
) -> str:
    """An HTTPS URL for the object at `uri` (s3://bucket/key, gs://bucket/key or
    azure://container/blob); signed (SigV4 query parameters, or an Azure SAS) when there are
    credentials, plain (public objects) otherwise."""
    if urllib.parse.urlsplit(uri).scheme == "azure":
        return _azure_url(uri, endpoint, credentials)
    url = _object_url(uri, endpoint, region)
    if credentials is None:
        return url
    if urllib.parse.urlsplit(uri).scheme == "gs" and region == "us-east-1":
        region = "auto"  # GCS's region for SigV4 with HMAC keys
    return sign_url(url, credentials, region=region)


def sign_url(
    url: str,
    credentials: ObjectStoreCredentials,
    *,
    region: str,
    method: str = "GET",
    now: datetime | None = None,
    expires_s: int = _EXPIRES_S,
) -> str:
    """`url` with SigV4 query-string authentication (host the only signed header); a session
    token goes in X-Amz-Security-Token, covered by the signature."""
    parts = urllib.parse.urlsplit(url)
    moment = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    scope = f"{moment[:8]}/{region}/s3/aws4_request"
    query = {
        "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
        "X-Amz-Credential": f"{credentials.access_key_id}/{scope}",
        "X-Amz-Date": moment,
        "X-Amz-Expires": str(expires_s),
        "X-Amz-SignedHeaders": "host",
    }
    if credentials.session_token:
        query["X-Amz-Security-Token"] = credentials.session_token
    canonical_query = "&".join(f"{_quote(k)}={_quote(v)}" for k, v in sorted(query.items()))
    canonical_request = "\n".join(
        [
            method,
            parts.path,
            canonical_query,
            f"host:{parts.netloc}",
            "",
            "host",
            "UNSIGNED-PAYLOAD",
        ]
    )
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            moment,
            scope,
            hashlib.sha256(canonical_request.encode()).hexdigest(),
        ]
    )
    key = _hmac(f"AWS4{credentials.secret_access_key}".encode(), moment[:8])
    for part in (region, "s3", "aws4_request"):
        key = _hmac(key, part)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    return f"{url}?{canonical_query}&X-Amz-Signature={signature}"


def _azure_url(uri: str, endpoint: str | None, credentials: ObjectStoreCredentials | None) -> str:
    _, container, blob = _split(uri)
    if endpoint is None:
        if credentials is None:
            raise ValueError(f"{uri} needs an endpoint or credentials naming the account")
        endpoint = f"https://{credentials.access_key_id}.blob.core.windows.net"
    url = f"{endpoint.rstrip('/')}/{container}/{_quote(blob, _UNRESERVED + '/')}"
    if credentials is None:
        return url
    return azure_sas_url(url, credentials, container=container, blob=blob)


def azure_sas_url(
    url: str,
    credentials: ObjectStoreCredentials,
    *,
    container: str,
    blob: str,
    now: datetime | None = None,
    expires_s: int = _EXPIRES_S,
) -> str:
    """`url` (the blob's, under any endpoint) with a service SAS that reads `blob` in
    `container` (sr=b, sp=r), signed with the account key."""
    try:
        key = base64.b64decode(credentials.secret_access_key, validate=True)
    except binascii.Error as exc:
        raise ValueError("an Azure storage account key must be base64") from exc
    expiry = ((now or datetime.now(UTC)) + timedelta(seconds=expires_s)).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    fields = {
        "sp": "r",
        "st": "",
        "se": expiry,
        "resource": f"/blob/{credentials.access_key_id}/{container}/{blob}",
        "si": "",
        "sip": "",
        "spr": "",
        "sv": _SAS_VERSION,
        "sr": "b",
        "snapshot": "",
        "ses": "",
        "rscc": "",
        "rscd": "",
        "rsce": "",
        "rscl": "",
        "rsct": "",
    }
    to_sign = "\n".join(fields.values())
    signature = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest())
    query = {"sv": _SAS_VERSION, "sr": "b", "sp": "r", "se": expiry, "sig": signature.decode()}
    return f"{url}?{urllib.parse.urlencode(query, quote_via=urllib.parse.quote, safe='')}"
