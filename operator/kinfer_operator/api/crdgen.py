"""Generate the InferenceModel CustomResourceDefinition from the pydantic API.

Pydantic emits JSON Schema; Kubernetes wants a *structural* OpenAPI v3 schema (no $ref, no
nullable anyOf, a type on every node). This module does that translation and adds what JSON
Schema cannot say: printer columns, subresources, names and categories. `make crds` runs it, and
a unit test fails when the checked-in file differs from its output.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from kinfer_operator.api.spec import GROUP, KIND, PLURAL, VERSION, InferenceModelSpec
from kinfer_operator.api.status import InferenceModelStatus

__all__ = [
    "CRD_FILENAME",
    "PEERING_FILENAME",
    "SHORT_NAMES",
    "build_crd",
    "build_peering_crds",
    "main",
    "render_crd",
    "render_peering_crds",
    "structural",
]

CRD_FILENAME = f"{PLURAL}.{GROUP}.yaml"
PEERING_FILENAME = "kopf-peering.yaml"
SHORT_NAMES = ["im", "kim"]
"""`im` and `kim`: the Gateway API Inference Extension's InferenceModel declares no short
names, so these never make `kubectl get` ambiguous when both CRDs are installed."""

_KEEP = (
    "type",
    "description",
    "default",
    "enum",
    "format",
    "pattern",
    "minimum",
    "maximum",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "items",
    "properties",
    "required",
    "additionalProperties",
    "anyOf",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
)
"""Schema keywords Kubernetes accepts, in the order they are written out."""


class _DefaultsFromFactories(GenerateJsonSchema):
    """Also publish defaults that come from `default_factory`.

    A nested object defaulted to `{}` lets the API server apply the defaults inside it, so
    `kubectl get -o yaml` shows the batching and resource settings actually in force.
    """

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        factory = schema.get("default_factory")
        if factory is None:
            return super().default_schema(schema)
        inner = self.generate_inner(schema["schema"])
        value = factory()  # type: ignore[call-arg]
        if isinstance(value, BaseModel):
            return {**inner, "default": {}}
        if isinstance(value, list) and value:
            encoded = [v.model_dump(by_alias=True, exclude_defaults=True) for v in value]
            return {**inner, "default": encoded}
        return inner


def _describe(text: str) -> str:
    """Join docstring lines into paragraphs, as `kubectl explain` re-wraps them anyway."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)


def structural(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Translate one JSON Schema node into a structural OpenAPI v3 node."""
    node = dict(schema)
    if "$ref" in node:
        target = defs[node.pop("$ref").split("/")[-1]]
        merged = {**target, **node}  # the field's own description wins over the class's
        return structural(merged, defs)
    if "anyOf" in node and not node.get("x-kubernetes-int-or-string"):
        branches = [b for b in node.pop("anyOf") if b.get("type") != "null"]
        if len(branches) != 1:
            raise ValueError(f"unions are not structural: {branches}")
        if node.get("default", 0) is None:
            node.pop("default")
        return structural({**branches[0], **node}, defs)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    # Kubernetes' OpenAPI v3 keeps draft-4 semantics: exclusive bounds are booleans.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(exclusive), int | float) and not isinstance(
            node.get(exclusive), bool
        ):
            node[bound] = node.pop(exclusive)
            node[exclusive] = True
    out: dict[str, Any] = {k: node[k] for k in _KEEP if k in node}
    if "description" in out:
        out["description"] = _describe(out["description"])
    if "properties" in out:
        out["properties"] = {k: structural(v, defs) for k, v in out["properties"].items()}
        out.setdefault("type", "object")
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = structural(out["additionalProperties"], defs)
    elif out.get("additionalProperties") is False:
        del out["additionalProperties"]  # structural schemas prune unknown fields already
    if "items" in out:
        out["items"] = structural(out["items"], defs)
    return out


def _model_schema(model: type[BaseModel]) -> dict[str, Any]:
    raw = model.model_json_schema(by_alias=True, schema_generator=_DefaultsFromFactories)
    return structural(raw, raw.get("$defs", {}))


def _status_schema() -> dict[str, Any]:
    schema = _model_schema(InferenceModelStatus)
    conditions = schema["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    return schema


def _printer_columns() -> list[dict[str, Any]]:
    def col(name: str, path: str, kind: str = "string", priority: int = 0) -> dict[str, Any]:
        c: dict[str, Any] = {"name": name, "type": kind, "jsonPath": path}
        if priority:
            c["priority"] = priority
        return c

    return [
        col("Ready", '.status.conditions[?(@.type=="Ready")].status'),
        col("Phase", ".status.phase"),
        col("Stable", ".status.stableRevision"),
        col("Canary", ".status.canaryRevision"),
        col("Weight", ".status.canaryWeight", "integer"),
        col("Replicas", ".status.replicas", "integer"),
        col("GPU", ".spec.runtime.gpu.count", "integer"),
        # What to fix, without -o wide: ChildRejected, QuotaExceeded, ServiceAccountNotFound...
        col("Reason", '.status.conditions[?(@.type=="Ready")].reason'),
        col("Age", ".metadata.creationTimestamp", "date"),
        col("Version", ".status.stableModelVersion", priority=1),
        col("Endpoint", ".status.endpoint", priority=1),
        col("Message", ".status.message", priority=1),
    ]


def build_crd() -> dict[str, Any]:
    """The complete CustomResourceDefinition object."""
    spec = _model_schema(InferenceModelSpec)
    spec["description"] = _describe(InferenceModelSpec.__doc__ or "")
    root = {
        "type": "object",
        "description": "An InferenceModel serves one model over the Open Inference Protocol "
        "(KServe v2) on GPU or CPU replicas that kinfer creates and owns.",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string", "description": "API version of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            "metadata": {"type": "object"},
            "spec": spec,
            "status": _status_schema(),
        },
        "x-kubernetes-validations": [
            {
                "rule": "self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') "
                "&& size(self.metadata.name) <= 40",
                "message": "metadata.name must be a DNS-1035 label of at most 40 characters "
                "(it prefixes the names of the Deployments and Services kinfer creates)",
            }
        ],
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "kinfer"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": KIND,
                "listKind": f"{KIND}List",
                "plural": PLURAL,
                "singular": KIND.lower(),
                "shortNames": SHORT_NAMES,
                "categories": ["kinfer"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": root},
                    "subresources": {
                        "status": {},
                        "scale": {
                            "specReplicasPath": ".spec.replicas",
                            "statusReplicasPath": ".status.replicas",
                            "labelSelectorPath": ".status.selector",
                        },
                    },
                    "additionalPrinterColumns": _printer_columns(),
                }
            ],
        },
    }


def build_peering_crds() -> list[dict[str, Any]]:
    """kopf's peering CRDs, through which operator replicas elect the one that acts."""

    def crd(kind: str, plural: str, scope: str) -> dict[str, Any]:
        return {
            "apiVersion": "apiextensions.k8s.io/v1",
            "kind": "CustomResourceDefinition",
            "metadata": {
                "name": f"{plural}.kopf.dev",
                "labels": {"app.kubernetes.io/part-of": "kinfer"},
            },
            "spec": {
                "group": "kopf.dev",
                "scope": scope,
                "names": {"kind": kind, "plural": plural, "singular": kind.lower()},
                "versions": [
                    {
                        "name": "v1",
                        "served": True,
                        "storage": True,
                        "schema": {
                            "openAPIV3Schema": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                ],
            },
        }

    return [
        crd("ClusterKopfPeering", "clusterkopfpeerings", "Cluster"),
        crd("KopfPeering", "kopfpeerings", "Namespaced"),
    ]


_HEADER = "# Generated by `make crds` from kinfer_operator.api. Do not edit by hand.\n"


def render_crd() -> str:
    """The CRD as the YAML text checked in under crds/."""
    return _HEADER + yaml.safe_dump(build_crd(), sort_keys=False, width=100)


def render_peering_crds() -> str:
    """kopf's peering CRDs as the YAML text checked in under crds/."""
    return _HEADER + yaml.safe_dump_all(build_peering_crds(), sort_keys=False, width=100)


def main(argv: list[str] | None = None) -> None:
    """Write the CRD into the output directory."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=Path("crds"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in ((CRD_FILENAME, render_crd()), (PEERING_FILENAME, render_peering_crds())):
        target = args.out / name
        target.write_text(text)
        print(f"wrote {target}")


if __name__ == "__main__":
    main()
