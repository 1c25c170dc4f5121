"""Every InferenceModel in examples/ is accepted by the current CRD's schema and the API, and
by the previous release's CRD: what users applied before an upgrade stays valid after it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator
from kinfer_operator.api import InferenceModelSpec
from kinfer_operator.api.crdgen import build_crd
from support.factories import EXAMPLES

REPO = Path(__file__).resolve().parents[3]
PREVIOUS_CRD = REPO / "e2e" / "upgrade" / "crd-previous.yaml"


def _models() -> list[tuple[str, dict[str, Any]]]:
    found = []
    for path in sorted(Path(EXAMPLES).rglob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "InferenceModel":
                name = doc.get("metadata", {}).get("name", "?")
                found.append((f"{path.relative_to(EXAMPLES)}:{name}", doc))
    return found


MODELS = _models()


def _validator(crd: dict[str, Any]) -> Draft4Validator:
    """OpenAPI v3.0 schemas are JSON Schema draft 4 as to exclusiveMinimum and friends."""
    (version,) = crd["spec"]["versions"]
    return Draft4Validator(version["schema"]["openAPIV3Schema"])


def _problems(validator: Draft4Validator, doc: dict[str, Any]) -> list[str]:
    return [
        f"{'.'.join(str(p) for p in e.absolute_path)}: {e.message}"
        for e in validator.iter_errors(doc)
    ]


def test_the_examples_hold_inference_models() -> None:
    assert len(MODELS) >= 5


@pytest.mark.parametrize("doc", [d for _, d in MODELS], ids=[n for n, _ in MODELS])
def test_the_current_crd_and_the_api_accept_every_example(doc: dict[str, Any]) -> None:
    assert _problems(_validator(build_crd()), doc) == []
    InferenceModelSpec.model_validate(doc["spec"])


@pytest.mark.parametrize("doc", [d for _, d in MODELS], ids=[n for n, _ in MODELS])
def test_the_previous_release_crd_accepts_every_example(doc: dict[str, Any]) -> None:
    assert _problems(_validator(yaml.safe_load(PREVIOUS_CRD.read_text())), doc) == []


def test_the_schema_check_can_refuse() -> None:
    _, doc = MODELS[0]
    bad = {**doc, "spec": {**doc["spec"], "replicas": "two"}}
    assert any(p.startswith("spec.replicas") for p in _problems(_validator(build_crd()), bad))
