"""The Ready activator pods, from the EndpointSlices of the activator's Service."""

from __future__ import annotations

from typing import Any

from kinfer_operator.world.activator import ActivatorEndpoints


def _slice(name: str, *endpoints: tuple[str, bool], ns: str = "kinfer-system") -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": "kinfer-activator"},
        },
        "endpoints": [
            {"addresses": [ip], "conditions": {"ready": ready}} for ip, ready in endpoints
        ],
    }


def test_only_ready_endpoints_count_and_changes_are_reported() -> None:
    held = ActivatorEndpoints("kinfer-system", "kinfer-activator")
    assert held.update(_slice("a", ("10.0.0.2", True), ("10.0.0.3", False))) is True
    assert held.ips() == ("10.0.0.2",)
    assert held.update(_slice("b", ("10.0.0.1", True))) is True
    assert held.ips() == ("10.0.0.1", "10.0.0.2")
    assert held.update(_slice("b", ("10.0.0.1", True))) is False  # nothing changed
    assert held.remove(_slice("a")) is True
    assert held.ips() == ("10.0.0.1",)
    assert held.replace([]) is True
    assert held.ips() == ()


def test_slices_of_other_services_or_namespaces_are_not_the_activators() -> None:
    held = ActivatorEndpoints("kinfer-system", "kinfer-activator")
    assert held.is_ours(_slice("a"))
    assert not held.is_ours(_slice("a", ns="team-a"))
    other = _slice("a")
    other["metadata"]["labels"]["kubernetes.io/service-name"] = "resnet"
    assert not held.is_ours(other)
