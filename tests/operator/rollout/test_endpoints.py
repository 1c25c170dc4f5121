"""The operator's Prometheus endpoints: loaded from its configuration, picked by name."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from kinfer_operator.rollout.endpoints import (
    ConfigError,
    PrometheusConfig,
    UnknownEndpoint,
    load_config,
)

CONFIG = """
url: http://prometheus.monitoring:9090
endpoints:
  thanos:
    url: https://thanos.monitoring:10902
    caFile: /etc/kinfer/thanos/ca.crt
    bearerTokenFile: {token}
  mimir:
    url: https://mimir.example/prometheus
    basicAuth: {{username: tenant-a, passwordFile: {password}}}
"""


def _config(tmp_path: Path) -> PrometheusConfig:
    token, password = tmp_path / "token", tmp_path / "password"
    token.write_text("s3cret-token\n")
    password.write_text("pa55\n")
    path = tmp_path / "prometheus.yaml"
    path.write_text(CONFIG.format(token=token, password=password))
    return load_config({"KINFER_PROMETHEUS_CONFIG": str(path)})


def test_named_endpoints_are_loaded_with_their_auth(tmp_path: Path) -> None:
    config = _config(tmp_path)
    name, thanos = config.resolve("thanos")
    assert (name, thanos.url, thanos.ca_file) == (
        "thanos",
        "https://thanos.monitoring:10902",
        "/etc/kinfer/thanos/ca.crt",
    )
    assert thanos.headers() == {"Authorization": "Bearer s3cret-token"}
    _, mimir = config.resolve("mimir")
    assert mimir.headers() == {
        "Authorization": "Basic " + base64.b64encode(b"tenant-a:pa55").decode()
    }


def test_no_name_picks_the_default(tmp_path: Path) -> None:
    name, endpoint = _config(tmp_path).resolve(None)
    assert (name, endpoint.url) == ("default", "http://prometheus.monitoring:9090")
    assert endpoint.headers() == {}


def test_the_url_variable_alone_sets_the_default() -> None:
    config = load_config({"KINFER_PROMETHEUS_URL": "http://prom:9090"})
    assert config.resolve(None)[1].url == "http://prom:9090"
    assert config.endpoints == {}


def test_an_unknown_endpoint_is_named_and_only_names_are_listed(tmp_path: Path) -> None:
    with pytest.raises(UnknownEndpoint) as caught:
        _config(tmp_path).resolve("elsewhere")
    message = str(caught.value)
    assert "'elsewhere'" in message and "spec.rollout.analysis.prometheus" in message
    assert "'thanos'" in message and "'mimir'" in message
    assert "http" not in message and "token" not in message and "/etc" not in message


def test_without_any_default_a_model_must_name_an_endpoint() -> None:
    with pytest.raises(UnknownEndpoint, match="no default Prometheus endpoint"):
        PrometheusConfig().resolve(None)


@pytest.mark.parametrize(
    "text",
    [
        "url: file:///etc/passwd",
        "endpoints: {Bad_Name: {url: 'http://x'}}",
        "endpoints: {a: {url: 'http://x', headers: {X: y}}}",
        "- a list",
    ],
)
def test_a_bad_configuration_stops_the_operator(tmp_path: Path, text: str) -> None:
    path = tmp_path / "prometheus.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_config({"KINFER_PROMETHEUS_CONFIG": str(path)})
