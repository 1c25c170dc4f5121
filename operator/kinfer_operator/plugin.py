"""`kubectl kinfer`: promote, abort or retry a canary without editing git; show GPU cost.

Installed as the `kubectl-kinfer` console script, so kubectl finds it on PATH. Each command
writes one annotation on the InferenceModel (never its spec, so GitOps tools see no drift in
the fields they manage); the operator acts on it at its next pass. promote and abort name the
canary revision they apply to, so an annotation left behind can never act on a later rollout.
`cost` only reads: GPU-hours per revision, computed now from the facts in status.cost.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from kinfer_operator.api.status import RevisionCost
from kinfer_operator.rollout.machine import (
    ABORT_ANNOTATION,
    PROMOTE_ANNOTATION,
    RETRY_ANNOTATION,
)
from kinfer_operator.world.cost import live_gpu_seconds

__all__ = ["cost_table", "main"]


def _kubectl(args: list[str], namespace: str | None) -> str:
    ns = ["-n", namespace] if namespace else []
    proc = subprocess.run(["kubectl", *args, *ns], capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr.strip() or f"kubectl {' '.join(args)} failed")
    return proc.stdout


def _model(name: str, namespace: str | None) -> dict[str, Any]:
    return dict(json.loads(_kubectl(["get", "inferencemodel", name, "-o", "json"], namespace)))


def _annotate(name: str, namespace: str | None, key: str, value: str) -> None:
    _kubectl(["annotate", "inferencemodel", name, f"{key}={value}", "--overwrite"], namespace)


def _canary(model: dict[str, Any]) -> str:
    rollout = (model.get("status") or {}).get("rollout") or {}
    if rollout.get("phase") not in ("Progressing", "Promoting"):
        raise SystemExit(
            f"{model['metadata']['name']} has no canary in progress "
            f"(rollout phase: {rollout.get('phase', 'none')})"
        )
    return str(rollout["revision"])


def _status(model: dict[str, Any]) -> str:
    status = model.get("status") or {}
    rollout = status.get("rollout") or {}
    lines = [
        f"model:    {model['metadata']['name']} (phase {status.get('phase', '?')})",
        f"stable:   {status.get('stableRevision')} (model {status.get('stableModelVersion')})",
    ]
    if rollout:
        where = (
            f"shadow (stable mirrors {rollout['shadowPercent']}%)"
            if rollout.get("shadowPercent") is not None
            else f"step {rollout.get('step', 0) + 1}/{rollout.get('steps')}"
        )
        lines.append(
            f"rollout:  {rollout.get('phase')} {rollout.get('revision')} "
            f"{where} weight {rollout.get('weight')}%"
        )
        last = rollout.get("lastAnalysis")
        if last:
            lines.append(f"analysis: {last['decision']} at {last['time']}: {last['message']}")
            lines.extend(
                f"  {m['name']:<14} {m.get('value', '-'):>12} {m['threshold']:<16} {m['verdict']}"
                for m in last.get("metrics", [])
            )
        if rollout.get("reason"):
            lines.append(f"reason:   {rollout['reason']}: {rollout.get('message', '')}")
    return "\n".join(lines)


def cost_table(models: Sequence[dict[str, Any]], now: float) -> str:
    """One row per revision, grouped by model, with a total per model of several."""
    rows = [("NAMESPACE", "MODEL", "REVISION", "TRACK", "GPUS", "GPU-HOURS")]
    for model in sorted(models, key=lambda m: (m["metadata"]["namespace"], m["metadata"]["name"])):
        meta = model["metadata"]
        costs = [
            RevisionCost.model_validate(c) for c in (model.get("status") or {}).get("cost") or []
        ]
        hours = [live_gpu_seconds(c, now) / 3600 for c in costs]
        for cost, h in zip(costs, hours, strict=True):
            rows.append(
                (
                    meta["namespace"],
                    meta["name"],
                    cost.revision,
                    cost.track,
                    str(cost.running_gpus),
                    f"{h:.4f}",
                )
            )
        if len(costs) > 1:
            gpus = sum(c.running_gpus for c in costs)
            rows.append(
                (meta["namespace"], meta["name"], "(total)", "", str(gpus), f"{sum(hours):.4f}")
            )
        if not costs:
            rows.append((meta["namespace"], meta["name"], "-", "-", "0", "0.0000"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "   ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


def _models(namespace: str | None, all_namespaces: bool) -> list[dict[str, Any]]:
    scope = ["-A"] if all_namespaces else []
    listing = json.loads(
        _kubectl(
            ["get", "inferencemodel", "-o", "json", *scope], None if all_namespaces else namespace
        )
    )
    return list(listing.get("items") or [])


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `kubectl kinfer`."""
    parser = argparse.ArgumentParser(prog="kubectl kinfer", description=__doc__)
    parser.add_argument("command", choices=["status", "promote", "abort", "retry", "cost"])
    parser.add_argument(
        "name", nargs="?", help="InferenceModel name (im/NAME also accepted; cost: optional)"
    )
    parser.add_argument("-n", "--namespace", default=None)
    parser.add_argument("-A", "--all-namespaces", action="store_true", help="cost: every namespace")
    args = parser.parse_args(argv)
    if args.command == "cost":
        name = args.name.split("/", 1)[-1] if args.name else None
        models = (
            [_model(name, args.namespace)] if name else _models(args.namespace, args.all_namespaces)
        )
        print(cost_table(models, time.time()))
        sys.stdout.flush()
        return
    if not args.name:
        parser.error(f"{args.command} needs the InferenceModel's name")
    name = args.name.split("/", 1)[-1]
    model = _model(name, args.namespace)
    if args.command == "status":
        print(_status(model))
    elif args.command == "promote":
        revision = _canary(model)
        _annotate(name, args.namespace, PROMOTE_ANNOTATION, revision)
        print(f"promoting canary {revision} of {name}: remaining steps skipped")
    elif args.command == "abort":
        revision = _canary(model)
        _annotate(name, args.namespace, ABORT_ANNOTATION, revision)
        print(f"aborting canary {revision} of {name}: traffic returns to stable")
    else:
        _annotate(name, args.namespace, RETRY_ANNOTATION, str(int(time.time())))
        print(f"retrying the rolled-back revision of {name}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
