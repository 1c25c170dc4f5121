"""The routing table the operator writes (ConfigMap `kinfer-activator-routes`, key `routes.json`),
which the activator watches through the API (routes_watch.py) or, without a cluster, reads from
a file.

Every field is bounded: the table is written by the operator, but it carries names and numbers
copied from tenant specs, and the activator must never size a queue or a scale request from an
unbounded value.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel

__all__ = [
    "Route",
    "RouteFile",
    "RoutesTable",
    "TableReader",
    "Track",
    "WakeReplicas",
    "parse_table",
]

log = logging.getLogger(__name__)

_Name = Annotated[
    str, Field(min_length=1, max_length=253, pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
]
_Port = Annotated[int, Field(ge=1024, le=65535)]
MAX_TABLE_BYTES = 8 * 1024 * 1024
"""A ConfigMap holds at most 1 MiB; anything much larger is not a table we wrote."""


class _Frozen(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore"
    )


class Track(_Frozen):
    """One revision: its track Service (whose EndpointSlices list its pods) and Deployment."""

    revision: Annotated[str, Field(min_length=1, max_length=63)]
    service: _Name
    deployment: _Name


class WakeReplicas(_Frozen):
    max: Annotated[int, Field(ge=1, le=1000)]
    """Never wake more than this (the model's autoscaling.maxReplicas)."""


class Route(_Frozen):
    """One model, reached on `http_port` (and `grpc_port`) of every activator pod."""

    namespace: _Name
    model: _Name
    http_port: _Port
    grpc_port: _Port | None = None
    stable: Track
    canary: Track | None = None
    canary_weight: Annotated[int, Field(ge=0, le=100)] = 0
    at_zero: bool = False
    least_queue: bool = False
    target_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 8
    max_held_requests: Annotated[int, Field(ge=1, le=100_000)] = 1000
    max_hold_seconds: Annotated[float, Field(gt=0, le=3600)] = 600
    wake_replicas: WakeReplicas = WakeReplicas(max=1)

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.model)


class RoutesTable(_Frozen):
    version: Literal[1]
    routes: Annotated[dict[str, Route], Field(max_length=10_000)] = {}

    @model_validator(mode="after")
    def _keys_are_http_ports(self) -> RoutesTable:
        used: set[int] = set()
        for key, route in self.routes.items():
            if key != str(route.http_port):
                raise ValueError(f"route {key!r} has httpPort {route.http_port}")
            ports = {route.http_port} | ({route.grpc_port} if route.grpc_port else set())
            if used & ports or route.grpc_port == route.http_port:
                raise ValueError(f"route {key!r} reuses a port")
            used |= ports
        return self

    def by_port(self) -> dict[int, Route]:
        return {route.http_port: route for route in self.routes.values()}


def parse_table(raw: bytes) -> RoutesTable:
    """The table in `raw`; raises ValueError (pydantic's ValidationError is one) when invalid."""
    if len(raw) > MAX_TABLE_BYTES:
        raise ValueError(f"routing table of {len(raw)} bytes exceeds {MAX_TABLE_BYTES}")
    return RoutesTable.model_validate_json(raw)


class TableReader:
    """Turns successive raw tables into the new valid ones. An invalid table keeps the last good
    one (a bad write must not drop every model's listener)."""

    def __init__(self, source: str) -> None:
        self._source = source
        self._last: bytes | None = None

    def offer(self, raw: bytes) -> RoutesTable | None:
        """The table in `raw` when it differs from the last one offered and is valid, else None."""
        if raw == self._last:
            return None
        self._last = raw
        try:
            return parse_table(raw)
        except (ValidationError, ValueError) as exc:
            log.error("routing table %s invalid, keeping the last one: %s", self._source, exc)
            return None

    @property
    def seen(self) -> bool:
        return self._last is not None


class RouteFile:
    """Polls a file holding the table (runs without a cluster: the benchmark, local tries)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._reader = TableReader(str(path))

    def poll(self) -> RoutesTable | None:
        """Read the file once: the table when it changed to a new valid one, else None."""
        try:
            raw = self._path.read_bytes()
        except OSError as exc:
            if self._reader.seen:
                log.warning(
                    "routing table %s unreadable, keeping the last one: %s", self._path, exc
                )
            return None
        return self._reader.offer(raw)
