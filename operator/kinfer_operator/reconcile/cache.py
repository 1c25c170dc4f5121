"""The model cache's hook into a pass: fill before a new revision's pods exist.

A revision's Deployment is created only once its version is in the cache, so no pod (first
replica, canary or scale-up) ever waits on a download that another one already made. A
Deployment that already exists is never held back: the pods' own download is the fallback.
"""

from __future__ import annotations

from dataclasses import replace

from kinfer_operator.children.modelcache import build_fill_job, cache_key, fill_job_name
from kinfer_operator.model import InferenceModel
from kinfer_operator.naming import CACHE_KEY_ANNOTATION, deployment_name
from kinfer_operator.reconcile.plan import Delete, Plan, stamped
from kinfer_operator.world import Observed
from kinfer_operator.world.fills import fill_state

__all__ = ["FILL_POLL_SECONDS", "gate_on_cache", "live_cache_keys"]

FILL_POLL_SECONDS = 2.0
"""How often a pass re-reads a running fill's progress (no watch event carries it)."""


def live_cache_keys(model: InferenceModel, observed: Observed, plan: Plan) -> set[str]:
    """Versions that a revision this pass keeps may load: never evicted, their Jobs kept."""
    deleted = {d.name for d in plan.deletes if d.kind == "Deployment"}
    keys = {
        v.annotations[CACHE_KEY_ANNOTATION]
        for v in observed.views
        if v.name not in deleted and CACHE_KEY_ANNOTATION in v.annotations
    }
    if model.spec.model.sha256:
        keys.add(cache_key(model.spec.model.sha256))
    return keys


def gate_on_cache(model: InferenceModel, observed: Observed, plan: Plan) -> tuple[Plan, bool]:
    """The plan with the fill Job added and the new revision held back until it is cached;
    and whether a fill is running (the pass then comes back for its progress)."""
    source = model.spec.model
    if source.cache is None or source.sha256 is None:
        return plan, False
    key = cache_key(source.sha256)
    live = live_cache_keys(model, observed, plan)
    name = fill_job_name(model, key)
    applies = list(plan.applies)
    if observed.find("Job", name) is None:
        applies.append(stamped(build_fill_job(model, live)))
    deletes = list(plan.deletes)
    deletes.extend(
        Delete("Job", j["metadata"]["name"])
        for j in observed.jobs
        if (j["metadata"].get("labels") or {}).get(CACHE_KEY_ANNOTATION) not in live
    )
    state = fill_state(observed, name)
    held = deployment_name(model, plan.desired_revision)
    if (state is None or state.phase != "Filled") and observed.find("Deployment", held) is None:
        applies = [
            a for a in applies if not (a["kind"] == "Deployment" and a["metadata"]["name"] == held)
        ]
    filling = state is None or state.phase == "Filling"
    return replace(plan, applies=applies, deletes=deletes), filling
