"""Operator upgrades without a herd: a change of the operator-built pod template rolls a few
models at a time.

A new operator version may change the pod template it builds (an env var, a probe, a label)
for every model at once; applied as it comes, every model's pods would reload at the same
moment. A Deployment of the same revision whose template digest differs from the desired one
is such a change (a spec change makes a new revision, hence a new Deployment, and is never
held here). It is applied only while fewer than `limit` models roll one; the others keep
their old template and wait.

Level-based: a Deployment given a template this way carries TEMPLATE_ROLL_ANNOTATION (the
digest it was given); while its rollout has not settled it holds a slot. The count is read
from the informer cache each time, so a restarted operator resumes with the right count.
Slots granted but not yet visible in the cache are remembered under a lock until the pass
that took them has written.

Waiting models are woken, oldest first, when a slot frees: the pass of a model whose roll has
just settled (its Deployment's status event brings it) tells the keeper, which hands the
oldest waiters to `wake` (the operator's work queue), one per free slot. A slower requeue
(TEMPLATE_WAIT_SECONDS) remains as a safety net for a slot freed where no pass sees it (a
rolling model deleted).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from kinfer_operator.naming import TEMPLATE_HASH_ANNOTATION, TEMPLATE_ROLL_ANNOTATION
from kinfer_operator.reconcile.plan import Plan
from kinfer_operator.world import DeploymentView

__all__ = [
    "DEFAULT_MAX_TEMPLATE_ROLLS",
    "TEMPLATE_WAIT_SECONDS",
    "Gate",
    "Grant",
    "TemplateRolls",
    "decide_slot",
    "gate_template",
    "is_rolling",
    "template_changed",
]

DEFAULT_MAX_TEMPLATE_ROLLS = 2
TEMPLATE_WAIT_SECONDS = 30.0
"""How soon a model waiting for a slot looks again on its own. A roll settling elsewhere wakes
the oldest waiters at once (TemplateRolls.settled); this only bounds the wait when a slot
frees unseen (a rolling model deleted with its Deployment)."""

SNAPSHOT_SECONDS = 1.0
"""How long a count of the rolls read from the cache serves slot requests."""

DeploymentKey = tuple[str, str]
"""(namespace, Deployment name)."""
ModelKey = tuple[str, str]
"""(namespace, InferenceModel name)."""
Find = Callable[[str, str], Mapping[str, Any] | None]


def _annotations(obj: Mapping[str, Any]) -> Mapping[str, str]:
    return obj.get("metadata", {}).get("annotations") or {}


def template_changed(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> bool:
    """The Deployment exists and its pod template is not the one the operator builds now.

    A Deployment without a recorded digest (written by an older operator) counts as changed:
    whether its template differs cannot be told, and holding it back costs only time.
    """
    if observed is None:
        return False
    want = _annotations(desired).get(TEMPLATE_HASH_ANNOTATION)
    return _annotations(observed).get(TEMPLATE_HASH_ANNOTATION) != want


def is_rolling(deployment: Mapping[str, Any]) -> bool:
    """The Deployment rolls a template change the gate let through, and has not finished.

    Not finished: the controller has not observed its latest generation, fewer replicas run
    the new template than wanted, or old pods remain (maxUnavailable 0 removes an old pod
    only once a new one is available, so this also covers unready new pods). Availability
    lost later (a node gone) is not a roll and takes no slot.
    """
    annotations = _annotations(deployment)
    mark = annotations.get(TEMPLATE_ROLL_ANNOTATION)
    if not mark or mark != annotations.get(TEMPLATE_HASH_ANNOTATION):
        return False
    # Read directly, not through DeploymentView: every slot request reads every Deployment.
    meta, status = deployment.get("metadata", {}), deployment.get("status") or {}
    want = int(deployment.get("spec", {}).get("replicas", 1))
    updated = int(status.get("updatedReplicas", 0))
    return bool(
        int(status.get("observedGeneration", 0)) < int(meta.get("generation", 0))
        or updated < want
        or int(status.get("replicas", 0)) > updated
    )


def _key(deployment: Mapping[str, Any]) -> DeploymentKey:
    meta = deployment.get("metadata", {})
    return str(meta.get("namespace", "")), str(meta.get("name", ""))


@dataclass(frozen=True)
class Grant:
    """The answer to one request for a slot."""

    granted: bool
    in_use: int
    """Slots in use, counting this one when granted."""
    limit: int


def decide_slot(
    key: DeploymentKey, rolling: set[DeploymentKey], pending: set[DeploymentKey], limit: int
) -> Grant:
    """Pure: a Deployment already rolling keeps its slot; another gets one if one is free."""
    busy = rolling | pending
    if key in busy:
        return Grant(True, len(busy), limit)
    if len(busy) < limit:
        return Grant(True, len(busy) + 1, limit)
    return Grant(False, len(busy), limit)


class TemplateRolls:
    """The slots for template-only rolls, shared by every reconcile worker.

    Reading every Deployment costs milliseconds per thousand, and every waiting model asks
    again every few seconds: the count is read from the cache at most once per
    `snapshot_seconds`. Slots taken meanwhile are counted until a snapshot read after their
    write shows them, so the snapshot's age only delays freeing a slot, never adds one.
    """

    def __init__(
        self,
        limit: int,
        deployments: Callable[[], Iterable[Mapping[str, Any]]],
        monotonic: Callable[[], float] = time.monotonic,
        snapshot_seconds: float = SNAPSHOT_SECONDS,
        wake: Callable[[ModelKey], None] | None = None,
    ) -> None:
        """`deployments()`: every kinfer Deployment the cache holds; `wake(model)` asks for a
        pass of a waiting model soon (None: waiters only look again on their own)."""
        if limit < 1:
            raise ValueError(f"at least one template roll must be allowed, got {limit}")
        self.limit = limit
        self._deployments = deployments
        self._monotonic = monotonic
        self._snapshot_seconds = snapshot_seconds
        self._pending: set[DeploymentKey] = set()
        self._released: dict[DeploymentKey, float] = {}
        """Slots whose write is done, by when: counted until a later snapshot."""
        self._snapshot: tuple[float, set[DeploymentKey]] | None = None
        self._known: set[DeploymentKey] = set()
        """Deployments seen rolling (granted here, or in a snapshot): one of them settling
        frees a slot."""
        self._waiters: dict[ModelKey, None] = {}
        """Models refused a slot, oldest first (a dict keeps insertion order)."""
        self.wake = wake
        self._lock = threading.Lock()

    def rolling(self) -> set[DeploymentKey]:
        """Deployments rolling a template change, as the cache shows them now."""
        return {_key(d) for d in self._deployments() if is_rolling(d)}

    def _busy_locked(self) -> set[DeploymentKey]:
        now = self._monotonic()
        if self._snapshot is None or now - self._snapshot[0] >= self._snapshot_seconds:
            self._snapshot = (now, self.rolling())  # taken, then read: later writes are newer
            self._known |= self._snapshot[1]
        taken, rolling = self._snapshot
        self._released = {k: t for k, t in self._released.items() if t >= taken}
        return rolling | set(self._released)

    def acquire(self, key: DeploymentKey, model: ModelKey | None = None) -> Grant:
        """A slot for `key`, or why not; a granted slot is held until `release`. A refused
        `model` waits in line to be woken when a slot frees."""
        with self._lock:
            grant = decide_slot(key, self._busy_locked(), self._pending, self.limit)
            if grant.granted:
                self._pending.add(key)
                self._known.add(key)
            elif model is not None:
                self._waiters.setdefault(model, None)
            return grant

    def not_waiting(self, model: ModelKey) -> None:
        """The model's pass held nothing back (or the model is gone): out of the line."""
        with self._lock:
            self._waiters.pop(model, None)

    def waiters(self) -> list[ModelKey]:
        """The models waiting for a slot, oldest first."""
        with self._lock:
            return list(self._waiters)

    def settled(self, key: DeploymentKey) -> list[ModelKey]:
        """A pass saw `key`'s template roll finished. If it held a slot, the slot is free:
        the oldest waiters, one per free slot, are handed to `wake` (and returned)."""
        with self._lock:
            if key not in self._known:
                return []
            self._known.discard(key)
            self._snapshot = None  # the cache shows the roll settled: count again now
            free = self.limit - len(self._busy_locked() | self._pending)
            woken = list(self._waiters)[: max(free, 0)]
        if self.wake is not None:
            for model in woken:
                self.wake(model)
        return woken

    def release(self, key: DeploymentKey) -> None:
        """The pass that took the slot has written: the cache shows the roll (or, if the write
        failed, no roll), and the next snapshot will count it."""
        with self._lock:
            if key in self._pending:
                self._pending.discard(key)
                self._released[key] = self._monotonic()


@dataclass(frozen=True)
class Gate:
    """A plan after the gate, and what status should say about it."""

    plan: Plan
    note: str | None = None
    """The OperatorUpgrade message for status, while the model waits for or rolls a change."""
    waiting: bool = False
    """A Deployment was held back: look again soon."""
    held: tuple[DeploymentKey, ...] = ()
    """Slots taken by this pass, to release once its writes are done."""


def _marked(desired: Mapping[str, Any]) -> dict[str, Any]:
    """The desired Deployment marked as rolling its template. Added after stamping, so the
    mark changes neither the applied hash nor whether the next pass applies."""
    meta = desired["metadata"]
    digest = meta["annotations"][TEMPLATE_HASH_ANNOTATION]
    annotations = {**meta["annotations"], TEMPLATE_ROLL_ANNOTATION: digest}
    return {**desired, "metadata": {**meta, "annotations": annotations}}


def _progress(observed: Mapping[str, Any]) -> str:
    view = DeploymentView.of(observed)
    return (
        f"rolling the operator's new pod template: {view.updated}/{view.spec_replicas} "
        f"replicas updated, {view.available} available"
    )


def gate_template(
    namespace: str, decided: Plan, find: Find, rolls: TemplateRolls, model: str = ""
) -> Gate:
    """Hold back Deployments whose only change is the operator's template, unless a slot is
    free; everything else in the plan goes ahead. `model` (the plan's model) waits in line
    for a slot when one is held back."""
    applies: list[dict[str, Any]] = []
    notes: list[str] = []
    held: list[DeploymentKey] = []
    waiting = False
    for desired in decided.applies:
        current = (
            find("Deployment", desired["metadata"]["name"])
            if (desired["kind"] == "Deployment")
            else None
        )
        if current is None:
            applies.append(desired)
            continue
        mark = _annotations(current).get(TEMPLATE_ROLL_ANNOTATION)
        if not template_changed(desired, current):
            if mark == _annotations(desired).get(TEMPLATE_HASH_ANNOTATION):
                desired = _marked(desired)  # a re-apply keeps the mark while it means something
                if is_rolling(current):
                    notes.append(_progress(current))
                else:
                    rolls.settled((namespace, desired["metadata"]["name"]))
            applies.append(desired)
            continue
        key = (namespace, desired["metadata"]["name"])
        grant = rolls.acquire(key, (namespace, model) if model else None)
        if not grant.granted:
            waiting = True
            notes.append(
                "waiting to roll the operator's new pod template: "
                f"{grant.in_use} of {grant.limit} slots in use"
            )
            continue
        held.append(key)
        notes.append(
            "rolling the operator's new pod template "
            f"({grant.in_use} of {grant.limit} slots in use)"
        )
        applies.append(_marked(desired))
    if model and not waiting:
        rolls.not_waiting((namespace, model))
    return Gate(
        dataclasses.replace(decided, applies=applies),
        "; ".join(notes) or None,
        waiting,
        tuple(held),
    )
