"""Write the JSON schemas kubeconform validates against, without the network.

kubeconform's default schema registry lives on GitHub, which CI cannot reach. The built-in
kinds come from the `kubernetes-validate` package instead, which ships the Kubernetes OpenAPI
as one JSON schema per kind; our own CRDs are converted from their openAPIV3Schema, like
kubeconform's openapi2jsonschema.py does. The output directory has the layout of kubeconform's
`-schema-location 'DIR/{{ .ResourceKind }}{{ .KindSuffix }}.json'` template.

    python tests/packaging/kubeconform_schemas.py --kubernetes-version 1.36.3 --out DIR crds/*.yaml
"""

from __future__ import annotations

import argparse
import copy
import json
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft4Validator, SchemaError

__all__ = [
    "InvalidCRDSchema",
    "crd_schemas",
    "kind_suffix",
    "main",
    "strict",
    "write_builtin_schemas",
]


def kind_suffix(api_version: str) -> str:
    """kubeconform's {{ .KindSuffix }}: the group's first label and the version."""
    group, _, version = api_version.rpartition("/")
    return f"-{group.split('.')[0]}-{version}".lower() if group else f"-{version}".lower()


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields rejected wherever the API server would prune them.

    Objects that declare properties get `additionalProperties: false`, unless they keep unknown
    fields on purpose (x-kubernetes-preserve-unknown-fields) or already say what extra keys hold.
    """
    out = copy.deepcopy(schema)

    def visit(node: Any) -> None:
        if isinstance(node, dict):
            if (
                "properties" in node
                and "additionalProperties" not in node
                and not node.get("x-kubernetes-preserve-unknown-fields")
            ):
                node["additionalProperties"] = False
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for item in node:
                visit(item)

    visit(out)
    return out


class InvalidCRDSchema(ValueError):
    """A CRD whose openAPIV3Schema the API server would reject."""


def _check_openapi_v3_0(crd: str, schema: dict[str, Any]) -> None:
    """Kubernetes schemas are OpenAPI 3.0, i.e. draft-4 keywords (exclusiveMinimum is a bool).

    kubeconform reports a schema that fails to compile only as "could not find schema", so
    name the CRD and the keyword here instead.
    """
    try:
        Draft4Validator.check_schema(schema)
    except SchemaError as err:
        where = "/".join(str(p) for p in err.absolute_path)
        raise InvalidCRDSchema(f"{crd}: openAPIV3Schema/{where}: {err.message}") from err


def crd_schemas(documents: Iterable[dict[str, Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(file name, JSON schema) for every served version of every CRD among the documents."""
    for doc in documents:
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        kind = spec["names"]["kind"]
        for version in spec["versions"]:
            api_version = f"{spec['group']}/{version['name']}"
            raw = version["schema"]["openAPIV3Schema"]
            _check_openapi_v3_0(f"{doc['metadata']['name']} {version['name']}", raw)
            schema = strict(raw)
            # apiVersion and kind must name this CRD, as kubeconform's own conversion demands.
            props = schema.setdefault("properties", {})
            props["apiVersion"] = {"type": "string", "enum": [api_version]}
            props["kind"] = {"type": "string", "enum": [kind]}
            yield f"{kind.lower()}{kind_suffix(api_version)}.json", schema


def _builtin_dir(kubernetes_version: str) -> Path:
    major, minor, *_ = kubernetes_version.lstrip("v").split(".")
    root = resources.files("kubernetes_validate") / "kubernetes-json-schema"
    path = Path(str(root)) / f"v{major}.{minor}.0-local-strict"
    if not path.is_dir():
        raise SystemExit(f"kubernetes-validate has no schemas for Kubernetes {major}.{minor}")
    return path


def write_builtin_schemas(kubernetes_version: str, out: Path) -> int:
    """Copy the built-in kinds' strict schemas, made self-contained for kubeconform.

    kubernetes-validate's files point at "/api/_definitions.json" under an https $id that its
    own loader maps; kubeconform resolves references relative to the file, so the ids go and
    the references become relative.
    """
    count = 0
    for src in sorted(_builtin_dir(kubernetes_version).glob("*.json")):
        schema = json.loads(src.read_text())
        schema.pop("$id", None)
        text = json.dumps(schema).replace('"/api/_definitions.json#', '"_definitions.json#')
        (out / src.name).write_text(text)
        count += 1
    return count


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--kubernetes-version", required=True, help="e.g. 1.36.3")
    parser.add_argument("--out", type=Path, required=True, help="directory to write into")
    parser.add_argument("crds", nargs="+", type=Path, help="CRD manifests (crds/*.yaml)")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    builtin = write_builtin_schemas(args.kubernetes_version, args.out)
    docs = [doc for path in args.crds for doc in yaml.safe_load_all(path.read_text())]
    names = []
    try:
        for name, schema in crd_schemas(docs):
            (args.out / name).write_text(json.dumps(schema, indent=1))
            names.append(name)
    except InvalidCRDSchema as err:
        raise SystemExit(f"invalid CRD schema: {err}") from err
    print(f"{builtin} built-in schemas and {', '.join(names)} in {args.out}")


if __name__ == "__main__":
    main()
