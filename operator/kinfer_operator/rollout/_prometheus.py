"""A minimal Prometheus HTTP API client: one instant query, one value.

The stdlib is enough for a GET with a timeout, and it lets us refuse what a hostile or
misconfigured endpoint could use against the operator: redirects are never followed (a
custom opener turns every 3xx into an error naming only the status), answers are read up to
MAX_RESPONSE_BYTES, and error bodies reach status only as a short, printable excerpt. No
well-kept HTTP client is an operator dependency yet; adding one would buy nothing here.
"""

from __future__ import annotations

import json
import math
import re
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import IO, Any

from kinfer_operator.rollout.endpoints import Endpoint

__all__ = ["MAX_RESPONSE_BYTES", "PrometheusError", "excerpt", "query_value"]

MAX_RESPONSE_BYTES = 1 << 20
"""Largest answer read; a check needs one series, so anything bigger is refused."""
EXCERPT_CHARS = 120
"""How much of an error body may reach status."""


class PrometheusError(Exception):
    """Prometheus could not answer: unreachable, erroring, or an unusable result."""


def excerpt(text: str, limit: int = EXCERPT_CHARS) -> str:
    """`text` as one short line of printable ASCII: safe to show in status and Events."""
    flat = " ".join(re.sub(r"[^\x20-\x7e]", " ", text).split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """Turn every redirect into an HTTPError: an endpoint must not send the operator on."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener(endpoint: Endpoint) -> urllib.request.OpenerDirector:
    context = ssl.create_default_context(cafile=endpoint.ca_file)
    return urllib.request.build_opener(_NoRedirects(), urllib.request.HTTPSHandler(context=context))


def _read_bounded(stream: IO[bytes]) -> bytes:
    body = stream.read(MAX_RESPONSE_BYTES + 1)
    if len(body) > MAX_RESPONSE_BYTES:
        raise PrometheusError(f"Prometheus answer larger than {MAX_RESPONSE_BYTES} bytes")
    return body


def query_value(
    endpoint: Endpoint, promql: str, timeout: float = 5.0, name: str = "default"
) -> float | None:
    """The single value of an instant query; None when it returns no series or NaN.

    Errors name the endpoint by `name`, never by URL (a URL may carry credentials).
    """
    url = f"{endpoint.url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        headers = endpoint.headers()
    except OSError as err:
        raise PrometheusError(
            f"Prometheus endpoint {name!r}: cannot read its credentials ({err.strerror})"
        ) from err
    request = urllib.request.Request(url, headers={"Accept": "application/json", **headers})
    try:
        with _opener(endpoint).open(request, timeout=timeout) as response:
            payload = json.loads(_read_bounded(response))
    except urllib.error.HTTPError as err:
        if 300 <= err.code < 400:
            raise PrometheusError(
                f"Prometheus endpoint {name!r} answered HTTP {err.code}: redirects are not followed"
            ) from err
        detail = excerpt(err.read(EXCERPT_CHARS * 4).decode(errors="replace"))
        raise PrometheusError(
            f"HTTP {err.code} from Prometheus endpoint {name!r}: {detail}"
        ) from err
    except PrometheusError:
        raise
    except (OSError, ValueError) as err:
        reason = excerpt(str(getattr(err, "reason", None) or err))
        raise PrometheusError(f"Prometheus endpoint {name!r} unreachable: {reason}") from err
    if not isinstance(payload, dict):
        raise PrometheusError("Prometheus answered something other than a JSON object")
    if payload.get("status") != "success":
        raise PrometheusError(
            f"query failed: {excerpt(str(payload.get('error', 'no error given')))}"
        )
    data = payload.get("data") or {}
    result: Any = data.get("result")
    try:
        if data.get("resultType") == "scalar":
            value = float(result[1])
        elif not result:
            return None
        elif len(result) > 1:
            raise PrometheusError(f"query returned {len(result)} series; a check needs one")
        else:
            value = float(result[0]["value"][1])
    except (TypeError, KeyError, IndexError, ValueError) as err:
        raise PrometheusError("Prometheus answered an unusable result") from err
    return None if math.isnan(value) else value
