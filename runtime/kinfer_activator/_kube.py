"""The one place that loads the Kubernetes client's configuration (in cluster, or a kubeconfig)."""

from __future__ import annotations

from kubernetes import config


def load_config() -> None:
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
