"""kinfer_gpu_seconds_total from a real Store and ledger, at scrape time."""

from __future__ import annotations

from kinfer_operator.world import Store
from kinfer_operator.world.cost import CostLedger, revision_costs
from kinfer_operator.world.cost_metric import GpuSecondsCollector
from prometheus_client import CollectorRegistry, generate_latest
from support.gpu_pods import GPU, T0, gpu_pod, model


def _scrape(collector: GpuSecondsCollector) -> dict[str, float]:
    registry = CollectorRegistry()
    registry.register(collector)
    out = {}
    for line in generate_latest(registry).decode().splitlines():
        if line.startswith("kinfer_gpu_seconds_total{"):
            series, value = line.rsplit(" ", 1)
            out[series.split('revision="')[1].rstrip('"}')] = float(value)
    return out


def _store(*pods: dict) -> Store:
    store = Store()
    store.upsert("InferenceModel", model())
    for pod in pods:
        store.upsert("Pod", {**pod, "metadata": {**pod["metadata"], "namespace": "ml"}})
    return store


def test_counter_is_gpus_times_lifetime_per_revision() -> None:
    now = [T0 + 100.5]
    store = _store(gpu_pod("a", 2, started=0, uid="1"), gpu_pod("b", 1, started=40, uid="2"))
    collector = GpuSecondsCollector(store, CostLedger(), clock=lambda: now[0])
    assert _scrape(collector) == {"a": 200.0, "b": 60.0}  # whole seconds, like the ledger
    now[0] += 10
    assert _scrape(collector) == {"a": 220.0, "b": 70.0}


def test_deleted_pod_moves_to_the_ledger_without_a_jump_or_a_drop() -> None:
    pod = gpu_pod("a", 2, started=0, uid="1")
    store = _store(pod)
    ledger = CostLedger()
    now = [T0 + 50.0]
    collector = GpuSecondsCollector(store, ledger, clock=lambda: now[0])
    assert _scrape(collector) == {"a": 100.0}
    gone = gpu_pod("a", 2, started=0, uid="1", deleting=60)
    gone["metadata"]["namespace"] = "ml"
    store.remove("Pod", gone)
    now[0] = T0 + 200.0
    ledger.retire(model(), gone, now[0])
    assert _scrape(collector) == {"a": 120.0}
    now[0] += 100
    assert _scrape(collector) == {"a": 120.0}


def test_a_restarted_operator_rebuilds_the_same_counter() -> None:
    running = gpu_pod("a", 1, started=100, uid="live")
    ledger = CostLedger()
    ledger.retire(model(), gpu_pod("a", 4, started=0, deleting=50, uid="gone"), T0 + 70)
    now = T0 + 400.0
    before = _scrape(GpuSecondsCollector(_store(running), ledger, clock=lambda: now))
    costs = revision_costs([running], GPU, ledger.retired(model()), "a", None)
    assert costs is not None
    restarted = _store(running)
    restarted.upsert(
        "InferenceModel",
        {**model(), "status": {"cost": [c.model_dump(by_alias=True) for c in costs]}},
    )
    after = _scrape(GpuSecondsCollector(restarted, CostLedger(), clock=lambda: now))
    assert before == after == {"a": 200.0 + 300.0}


def test_cpu_models_export_nothing() -> None:
    store = _store(gpu_pod("a", 0, started=0))
    assert _scrape(GpuSecondsCollector(store, CostLedger(), clock=lambda: T0 + 10.0)) == {}
