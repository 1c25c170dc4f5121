"""The Prometheus endpoints canary analysis may query: operator configuration, never spec.

A model only names one (`spec.rollout.analysis.prometheus`), so a tenant cannot make the
operator send requests anywhere the platform did not configure. The configuration is a
small YAML file (`KINFER_PROMETHEUS_CONFIG`, the chart renders it from `prometheus:` in its
values); `KINFER_PROMETHEUS_URL` stays the simple way to set just the default endpoint.
Credentials are files (mounted Secrets), read at each query so rotated tokens are used.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError
from pydantic.alias_generators import to_camel

__all__ = [
    "CONFIG_ENV",
    "DEFAULT_ENDPOINT",
    "URL_ENV",
    "BasicAuth",
    "ConfigError",
    "Endpoint",
    "PrometheusConfig",
    "UnknownEndpoint",
    "load_config",
]

CONFIG_ENV = "KINFER_PROMETHEUS_CONFIG"
URL_ENV = "KINFER_PROMETHEUS_URL"
DEFAULT_ENDPOINT = "default"
"""The name under which the default endpoint appears in messages."""

_Name = Annotated[str, StringConstraints(max_length=63, pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")]
_Url = Annotated[str, StringConstraints(max_length=2048, pattern=r"^https?://\S+$")]
_File = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class _Config(BaseModel):
    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class ConfigError(Exception):
    """The operator's Prometheus configuration is unusable (the operator refuses to start)."""


class UnknownEndpoint(LookupError):
    """A model names an endpoint the operator does not have."""


class BasicAuth(_Config):
    """HTTP basic auth; the password is read from a file."""

    username: Annotated[str, StringConstraints(min_length=1, max_length=256)]
    password_file: _File


class Endpoint(_Config):
    """One Prometheus-compatible HTTP API (Prometheus, Thanos, Cortex, Mimir, managed)."""

    url: _Url
    """Base URL; /api/v1/query is appended."""
    bearer_token_file: _File | None = None
    """Sent as `Authorization: Bearer <token>`."""
    ca_file: _File | None = None
    """PEM bundle that verifies an https endpoint's certificate."""
    basic_auth: BasicAuth | None = None
    """Sent as `Authorization: Basic ...` (not together with a bearer token)."""

    def headers(self) -> dict[str, str]:
        """Authorization headers, with credentials read now (mounted Secrets rotate)."""
        if self.bearer_token_file is not None:
            token = Path(self.bearer_token_file).read_text().strip()
            return {"Authorization": f"Bearer {token}"}
        if self.basic_auth is not None:
            password = Path(self.basic_auth.password_file).read_text().rstrip("\n")
            pair = f"{self.basic_auth.username}:{password}".encode()
            return {"Authorization": f"Basic {base64.b64encode(pair).decode()}"}
        return {}


class PrometheusConfig(_Config):
    """The default endpoint (top-level fields) plus optional named ones."""

    url: _Url | None = None
    bearer_token_file: _File | None = None
    ca_file: _File | None = None
    basic_auth: BasicAuth | None = None
    endpoints: dict[_Name, Endpoint] = Field(default_factory=dict, max_length=64)

    def default(self) -> Endpoint | None:
        if self.url is None:
            return None
        return Endpoint(
            url=self.url,
            bearer_token_file=self.bearer_token_file,
            ca_file=self.ca_file,
            basic_auth=self.basic_auth,
        )

    def resolve(self, name: str | None) -> tuple[str, Endpoint]:
        """(name, endpoint) a model's `prometheus` field selects; UnknownEndpoint with a
        message naming it and the endpoints there are (names only, never URLs)."""
        if name is None or (name == DEFAULT_ENDPOINT and name not in self.endpoints):
            default = self.default()
            if default is None:
                raise UnknownEndpoint(
                    "no default Prometheus endpoint is configured: set the operator's "
                    f"{URL_ENV} or prometheus.url in its chart, or name one of "
                    f"{self._names()} in spec.rollout.analysis.prometheus"
                )
            return DEFAULT_ENDPOINT, default
        if name not in self.endpoints:
            raise UnknownEndpoint(
                f"spec.rollout.analysis.prometheus: unknown Prometheus endpoint {name!r}; "
                f"the operator has {self._names()}"
            )
        return name, self.endpoints[name]

    def _names(self) -> str:
        names = ([DEFAULT_ENDPOINT] if self.url else []) + sorted(self.endpoints)
        return ", ".join(repr(n) for n in names) if names else "none"


def load_config(env: Mapping[str, str] = os.environ) -> PrometheusConfig:
    """The configuration from `KINFER_PROMETHEUS_CONFIG` (a YAML file), with
    `KINFER_PROMETHEUS_URL` as the default endpoint when the file sets no `url`."""
    data: dict[str, object] = {}
    path = env.get(CONFIG_ENV)
    if path:
        try:
            loaded = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{CONFIG_ENV}={path}: {err}") from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"{CONFIG_ENV}={path}: expected a mapping")
        data = loaded
    if not data.get("url") and env.get(URL_ENV):
        data = {**data, "url": env[URL_ENV]}
    try:
        return PrometheusConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"Prometheus configuration: {err}") from err
