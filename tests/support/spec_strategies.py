"""Hypothesis strategies for InferenceModel specs, generated from the CRD's schema.

Leaves (strings with their patterns and lengths, bounded integers, enums, string maps and
lists) come from hypothesis-jsonschema; objects are assembled here, field by field, so a
strategy is built once per schema node rather than once per draw, and lists keyed by
x-kubernetes-list-map-keys get unique keys as the API server demands. What JSON Schema cannot
say comes from this module: quantities (a CEL isQuantity rule) and the objects the schema
passes through unchecked (affinity, HPA metrics and behavior, Gateway parentRefs), which get a
few well-formed values. Other CEL rules are not evaluated: a caller filters the specs that
pydantic's InferenceModelSpec rejects, which mirrors the ones the operator relies on.
"""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st
from hypothesis_jsonschema import from_schema

from support.crd_schema import apply_defaults, spec_schema

__all__ = ["specs"]

_QUANTITY = st.one_of(
    st.integers(min_value=0, max_value=1_000_000),
    st.from_regex(r"\A[1-9][0-9]{0,4}(\.[0-9]{1,3})?(m|k|M|G|Ki|Mi|Gi|Ti)?\Z"),
)
"""A Kubernetes quantity such as 500m, 2 or 8Gi (the CRD checks the format with CEL)."""

_FREEFORM: dict[str, st.SearchStrategy[Any]] = {
    "scheduling.affinity": st.sampled_from(
        [
            {},
            {
                "nodeAffinity": {
                    "requiredDuringSchedulingIgnoredDuringExecution": {
                        "nodeSelectorTerms": [
                            {
                                "matchExpressions": [
                                    {"key": "zone", "operator": "In", "values": ["a", "b"]}
                                ]
                            }
                        ]
                    }
                }
            },
        ]
    ),
    "autoscaling.metrics[].raw": st.just(
        {
            "type": "Pods",
            "pods": {
                "metric": {"name": "requests_per_second"},
                "target": {"type": "AverageValue", "averageValue": "10"},
            },
        }
    ),
    "autoscaling.behavior": st.sampled_from(
        [{}, {"scaleDown": {"stabilizationWindowSeconds": 60}}]
    ),
    "rollout.traffic.gateway.parentRefs[]": st.just({"name": "gateway", "namespace": "infra"}),
}
"""Objects the CRD passes through unchecked, by path: a few well-formed values each."""

_RESOURCE_NAMES = st.sampled_from(["cpu", "memory", "ephemeral-storage", "example.com/fpga"])
_KEYS: dict[str, st.SearchStrategy[str]] = {
    "runtime.resources.requests": _RESOURCE_NAMES,
    "runtime.resources.limits": _RESOURCE_NAMES,
    "scheduling.nodeSelector": st.from_regex(
        r"\A([a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?\.){0,2}[a-z]{2,5}/[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}"
        r"[A-Za-z0-9])?\Z|\A[A-Za-z0-9]([-A-Za-z0-9_.]{0,20}[A-Za-z0-9])?\Z"
    ),
}
"""Map keys that CEL rules constrain (resource names, label keys), by the map's path."""


def _canary(canary: dict[str, Any]) -> dict[str, Any]:
    """Steps or stepWeight (up to maxWeight), steps by increasing weight: the CRD's CEL rules
    for spec.rollout.canary, which random drafts almost never meet by chance."""
    out = dict(canary)
    if "steps" in out:
        out.pop("stepWeight", None)
        by_weight = {step["weight"]: step for step in out["steps"]}
        out["steps"] = [by_weight[w] for w in sorted(by_weight)]
    else:
        out.setdefault("stepWeight", 10)
        out["maxWeight"] = max(out.get("maxWeight", 50), out["stepWeight"])
    return out


_REPAIRS = {"rollout.canary": _canary}
"""Drafts brought within CEL rules that would otherwise filter out nearly every one, by path."""


def _object(schema: dict[str, Any], path: str) -> st.SearchStrategy[dict[str, Any]]:
    props: dict[str, Any] = schema["properties"]
    required = set(schema.get("required") or [])
    fields = {key: _node(sub, f"{path}.{key}".lstrip(".")) for key, sub in props.items()}
    return st.fixed_dictionaries(
        {k: s for k, s in fields.items() if k in required},
        optional={k: s for k, s in fields.items() if k not in required},
    )


def _list(schema: dict[str, Any], path: str) -> st.SearchStrategy[list[Any]]:
    keys = schema.get("x-kubernetes-list-map-keys")
    unique_by = (lambda item: tuple(item.get(k) for k in keys)) if keys else None
    return st.lists(
        _node(schema["items"], f"{path}[]"),
        min_size=schema.get("minItems", 0),
        max_size=min(schema.get("maxItems", 4), 4),
        unique_by=unique_by,
        unique=schema.get("x-kubernetes-list-type") == "set",
    )


def _node(schema: dict[str, Any], path: str) -> st.SearchStrategy[Any]:
    if path in _FREEFORM:
        return _FREEFORM[path]
    if schema.get("x-kubernetes-int-or-string"):
        return _QUANTITY
    if schema.get("type") == "object" and "properties" in schema:
        drafts = _object(schema, path)
        return drafts.map(_REPAIRS[path]) if path in _REPAIRS else drafts
    if schema.get("type") == "array" and schema["items"].get("type") == "object":
        return _list(schema, path)
    if schema.get("type") == "object" and isinstance(schema.get("additionalProperties"), dict):
        values = _node(schema["additionalProperties"], f"{path}.*")
        keys = _KEYS.get(path, from_schema({"type": "string", "maxLength": 63}))
        return st.dictionaries(keys, values, max_size=min(schema.get("maxProperties", 3), 3))
    return from_schema(_leaf(schema))


def _leaf(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON Schema hypothesis-jsonschema accepts: Kubernetes' own keywords left out."""
    out = {k: v for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    out.pop("description", None)
    out.pop("default", None)
    if out.get("type") == "array":
        out["items"] = _leaf(out["items"])
        out["maxItems"] = min(out.get("maxItems", 4), 4)
    return out


def specs() -> st.SearchStrategy[dict[str, Any]]:
    """Specs the CRD's structural schema admits, with the CRD's defaults applied as the API
    server would apply them before the operator reads them."""
    schema = spec_schema()
    return _node(schema, "").map(lambda spec: apply_defaults(schema, spec))
