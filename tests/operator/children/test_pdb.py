"""build_pdb / wants_pdb: a budget only with more than one replica."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kinfer_operator.children import build_pdb
from kinfer_operator.children.pdb import wants_pdb
from kinfer_operator.model import InferenceModel

MakeModel = Callable[..., InferenceModel]


@pytest.mark.parametrize(("replicas", "expected"), [(1, False), (2, True), (5, True)])
def test_pdb_only_when_more_than_one_replica(
    make_model: MakeModel, replicas: int, expected: bool
) -> None:
    assert wants_pdb(make_model({"replicas": replicas})) is expected


def test_pdb_follows_autoscaling_floor(make_model: MakeModel) -> None:
    one = make_model({"replicas": None, "autoscaling": {"minReplicas": 1, "maxReplicas": 4}})
    two = make_model({"replicas": None, "autoscaling": {"minReplicas": 2, "maxReplicas": 4}})
    assert (wants_pdb(one), wants_pdb(two)) == (False, True)


def test_pdb_allows_one_disruption(make_model: MakeModel) -> None:
    assert build_pdb(make_model())["spec"]["maxUnavailable"] == 1
