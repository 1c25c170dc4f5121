"""The informer cache: fed by watch events and write-through, read by passes."""

from __future__ import annotations

from typing import Any

from kinfer_operator.naming import MODEL_LABEL
from kinfer_operator.world import Store
from support.factories import model_body

OWNER = {
    "apiVersion": "serving.kinfer.io/v1alpha1",
    "kind": "InferenceModel",
    "name": "resnet50",
    "uid": "uid-1",
    "controller": True,
}


def _child(
    kind: str, name: str, rv: str = "10", uid: str | None = None, **extra: Any
) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": "ml",
        "resourceVersion": rv,
        "labels": {MODEL_LABEL: "resnet50"},
        "ownerReferences": [OWNER],
        "managedFields": [{"manager": "kinfer-operator", "fieldsV1": {"f:spec": {}}}],
    }
    if uid is not None:
        meta["uid"] = uid
    return {"kind": kind, "metadata": meta, **extra}


def test_a_pass_reads_owned_children_and_pods_of_its_model_only() -> None:
    store = Store()
    store.upsert("Deployment", _child("Deployment", "resnet50-a", spec={"replicas": 2}))
    store.upsert("Service", _child("Service", "resnet50"))
    stranger = _child("Service", "resnet50-copy")
    stranger["metadata"]["ownerReferences"] = [{**OWNER, "uid": "someone-else"}]
    store.upsert("Service", stranger)
    store.upsert("Pod", _child("Pod", "resnet50-a-x", status={"phase": "Running"}))
    other = _child("Pod", "bert-a-x")
    other["metadata"]["labels"] = {MODEL_LABEL: "bert"}
    store.upsert("Pod", other)

    observed = store.observe("ml", "resnet50", "uid-1")
    assert [d["metadata"]["name"] for d in observed.deployments] == ["resnet50-a"]
    assert [s["metadata"]["name"] for s in observed.services] == ["resnet50"]
    assert [p["metadata"]["name"] for p in observed.pods] == ["resnet50-a-x"]


def test_objects_are_trimmed_to_what_a_pass_reads() -> None:
    store = Store()
    template = {"spec": {"containers": [{"name": "runtime", "env": [{"name": "X"}] * 50}]}}
    store.upsert(
        "Deployment",
        _child("Deployment", "resnet50-a", spec={"replicas": 3, "template": template}),
    )
    gpu = {"limits": {"nvidia.com/gpu": "2"}}
    containers = [{**template["spec"]["containers"][0], "resources": gpu}]
    store.upsert("Pod", _child("Pod", "p", spec={"nodeName": "n1", "containers": containers}))
    observed = store.observe("ml", "resnet50", "uid-1")
    dep, pod = observed.deployments[0], observed.pods[0]
    assert dep["spec"] == {"replicas": 3}
    assert "managedFields" not in dep["metadata"]
    assert pod["spec"] == {"nodeName": "n1", "containers": [{"resources": gpu}]}
    assert observed.views[0].spec_replicas == 3


def test_an_older_version_never_replaces_a_newer_one() -> None:
    store = Store()
    store.upsert("Deployment", _child("Deployment", "d", rv="20", spec={"replicas": 4}))
    store.upsert("Deployment", _child("Deployment", "d", rv="19", spec={"replicas": 1}))
    assert store.observe("ml", "resnet50", "uid-1").deployments[0]["spec"]["replicas"] == 4
    store.upsert("Deployment", _child("Deployment", "d", rv="21", spec={"replicas": 5}))
    assert store.observe("ml", "resnet50", "uid-1").deployments[0]["spec"]["replicas"] == 5


def test_scale_and_delete_write_through() -> None:
    store = Store()
    store.upsert("Deployment", _child("Deployment", "d", rv="20", spec={"replicas": 2}))
    store.scaled("ml", "d", {"metadata": {"resourceVersion": "25"}, "spec": {"replicas": 6}})
    dep = store.observe("ml", "resnet50", "uid-1").deployments[0]
    assert (dep["spec"]["replicas"], dep["metadata"]["resourceVersion"]) == (6, "25")
    store.deleted("ml", "Deployment", "d")
    assert store.observe("ml", "resnet50", "uid-1").deployments == ()


def test_deleting_everything_leaves_nothing_held() -> None:
    store = Store()
    store.upsert("InferenceModel", model_body())
    store.upsert("Deployment", _child("Deployment", "d"))
    store.upsert("Pod", _child("Pod", "p"))
    store.remove("Pod", _child("Pod", "p"))
    store.remove("Deployment", _child("Deployment", "d"))
    store.remove("InferenceModel", model_body())
    assert store.counts() == {"InferenceModel": 0}
    assert store.model("ml", "resnet50") is None
    assert store._children == {} and store._owners == {}


def test_a_relist_drops_what_was_deleted_unseen_and_names_the_models_it_touched() -> None:
    store = Store()
    store.upsert("Pod", _child("Pod", "gone"))
    store.upsert("Pod", _child("Pod", "stays"))
    changed = store.replace("Pod", [_child("Pod", "stays")])
    assert changed == {("ml", "resnet50")}
    assert [p["metadata"]["name"] for p in store.observe("ml", "resnet50", "uid-1").pods] == [
        "stays"
    ]
    assert store.replace("Pod", [_child("Pod", "stays")]) == set()


def _pod_names(store: Store) -> list[str]:
    return sorted(p["metadata"]["name"] for p in store.observe("ml", "resnet50", "uid-1").pods)


def test_a_relist_keeps_what_was_written_after_the_listing_was_taken() -> None:
    store = Store()
    store.upsert("Pod", _child("Pod", "deleted-unseen", rv="20"))
    store.upsert("Pod", _child("Pod", "created-meanwhile", rv="31"))
    dropped: list[str] = []
    changed = store.replace(
        "Pod", [], version="30", dropped=lambda pod: dropped.append(pod["metadata"]["name"])
    )
    assert changed == {("ml", "resnet50")}
    assert _pod_names(store) == ["created-meanwhile"]
    assert dropped == ["deleted-unseen"]
    assert store.replace("Pod", [], version=None) == {("ml", "resnet50")}  # no version: all go
    assert _pod_names(store) == []


def test_a_relist_does_not_bring_back_what_was_deleted_while_it_was_in_flight() -> None:
    store = Store()
    pod = _child("Pod", "p", rv="20", uid="uid-p")
    store.upsert("Pod", pod)
    store.remove("Pod", pod)  # its DELETED event, after the listing below was taken
    assert store.replace("Pod", [pod], version="25") == set()
    assert _pod_names(store) == []


def test_a_relist_names_a_model_whose_child_was_replaced_under_the_same_name() -> None:
    store = Store()
    store.upsert("Service", _child("Service", "s", rv="20", uid="uid-old"))
    new = _child("Service", "s", rv="30", uid="uid-new")  # deleted, re-created in a watch gap
    assert store.replace("Service", [new], version="30") == {("ml", "resnet50")}
    assert store.observe("ml", "resnet50", "uid-1").services[0]["metadata"]["uid"] == "uid-new"


def test_a_relist_takes_the_newer_of_the_listed_and_the_held_version() -> None:
    store = Store()
    store.upsert("Deployment", _child("Deployment", "d", rv="20", spec={"replicas": 2}))
    listed = _child("Deployment", "d", rv="24", spec={"replicas": 5})  # its event is late
    assert store.replace("Deployment", [listed], version="24") == set()  # nothing came or went
    assert store.observe("ml", "resnet50", "uid-1").deployments[0]["spec"]["replicas"] == 5
    store.upsert("Deployment", _child("Deployment", "d", rv="40", spec={"replicas": 7}))
    assert store.replace("Deployment", [listed], version="24") == set()  # stale listing
    assert store.observe("ml", "resnet50", "uid-1").deployments[0]["spec"]["replicas"] == 7


def test_a_relist_of_models_names_only_those_that_changed() -> None:
    store = Store()
    kept, gone = model_body(name="kept"), model_body(name="gone", uid="uid-2")
    for body in (kept, gone):
        body["metadata"]["resourceVersion"] = "10"
        store.upsert("InferenceModel", body)
    assert store.replace("InferenceModel", [kept], version="12") == {("ml", "gone")}
    assert store.models() == [("ml", "kept")]


def test_objects_without_a_model_label_are_not_held() -> None:
    store = Store()
    obj = _child("Service", "kubernetes")
    obj["metadata"]["labels"] = {}
    assert store.upsert("Service", obj) is None
    assert store.counts() == {"InferenceModel": 0}


def test_a_late_event_of_a_child_we_deleted_does_not_bring_it_back() -> None:
    store = Store()
    old = _child("Deployment", "d-old", rv="20", spec={"replicas": 2})
    old["metadata"]["uid"] = "uid-old"
    store.upsert("Deployment", old)
    store.deleted("ml", "Deployment", "d-old")  # our own delete, at promotion
    late = _child("Deployment", "d-old", rv="21", spec={"replicas": 2})  # sent before it
    late["metadata"]["uid"] = "uid-old"
    store.upsert("Deployment", late)
    assert store.observe("ml", "resnet50", "uid-1").deployments == ()
    store.remove("Deployment", late)  # its DELETED event ends the tombstone
    reborn = _child("Deployment", "d-old", rv="30")  # same name, a new object
    reborn["metadata"]["uid"] = "uid-new"
    store.upsert("Deployment", reborn)
    assert [d["metadata"]["uid"] for d in store.observe("ml", "resnet50", "uid-1").deployments] == [
        "uid-new"
    ]
