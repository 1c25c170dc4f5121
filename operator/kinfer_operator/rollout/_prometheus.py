"""A minimal Prometheus HTTP API client: one instant query, one value.

The stdlib is enough for a GET with a timeout; a client library would add dependencies for
no behaviour we need.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request

__all__ = ["PrometheusError", "query_value"]


class PrometheusError(Exception):
    """Prometheus could not answer: unreachable, erroring, or an unusable result."""


def query_value(base_url: str, promql: str, timeout: float = 5.0) -> float | None:
    """The single value of an instant query; None when it returns no series or NaN."""
    url = f"{base_url.rstrip('/')}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = json.loads(response.read())
    except urllib.error.HTTPError as err:
        detail = err.read().decode(errors="replace")[:300]
        raise PrometheusError(f"HTTP {err.code} from Prometheus: {detail}") from err
    except (OSError, ValueError) as err:
        raise PrometheusError(f"Prometheus unreachable at {base_url}: {err}") from err
    if payload.get("status") != "success":
        raise PrometheusError(f"query failed: {payload.get('error', payload)}")
    data = payload.get("data", {})
    result = data.get("result")
    if data.get("resultType") == "scalar":
        value = float(result[1])
    elif not result:
        return None
    elif len(result) > 1:
        raise PrometheusError(f"query returned {len(result)} series; a check needs one: {promql}")
    else:
        value = float(result[0]["value"][1])
    return None if math.isnan(value) else value
