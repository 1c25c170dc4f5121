"""The one place that loads the Kubernetes client's configuration (in cluster, or a kubeconfig),
and the list-then-watch loop the activator's two watches share."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from typing import Any

from kubernetes import config

__all__ = ["list_then_watch", "load_config"]

log = logging.getLogger(__name__)


def load_config() -> None:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]


def list_then_watch(
    api: Any,
    list_call: Callable[..., Any],
    on_list: Callable[[list[dict[str, Any]]], None],
    on_event: Callable[[str, dict[str, Any]], None],
    stop: threading.Event,
    *args: Any,
    **kwargs: Any,
) -> None:
    """List, hand over the items, then watch from that resourceVersion and hand over each
    event's type and object (as JSON-shaped dicts), until `stop`. Re-lists after any error
    or the watch's end: a level-based cache never trusts a broken stream."""
    from kubernetes import watch

    what = getattr(list_call, "__name__", "list")
    while not stop.is_set():
        try:
            listed = list_call(*args, _preload_content=False, timeout_seconds=30, **kwargs)
            data = json.loads(listed.data)
            on_list(data["items"])
            stream = watch.Watch().stream(  # type: ignore[no-untyped-call]
                list_call,
                *args,
                resource_version=data["metadata"].get("resourceVersion"),
                timeout_seconds=300,
                **kwargs,
            )
            for event in stream:
                if stop.is_set():
                    return
                obj = api.api_client.sanitize_for_serialization(event["object"])
                on_event(event["type"], obj)
        except Exception:
            log.exception("%s watch failed; re-listing in 1 s", what)
            stop.wait(1.0)
