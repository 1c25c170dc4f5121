"""`kubectl kinfer`: promote, abort or retry a canary without editing git.

Installed as the `kubectl-kinfer` console script, so kubectl finds it on PATH. Each command
writes one annotation on the InferenceModel (never its spec, so GitOps tools see no drift in
the fields they manage); the operator acts on it at its next pass. promote and abort name the
canary revision they apply to, so an annotation left behind can never act on a later rollout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from typing import Any

from kinfer_operator.rollout.machine import (
    ABORT_ANNOTATION,
    PROMOTE_ANNOTATION,
    RETRY_ANNOTATION,
)

__all__ = ["main"]


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


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of `kubectl kinfer`."""
    parser = argparse.ArgumentParser(prog="kubectl kinfer", description=__doc__)
    parser.add_argument("command", choices=["status", "promote", "abort", "retry"])
    parser.add_argument("name", help="InferenceModel name (im/NAME also accepted)")
    parser.add_argument("-n", "--namespace", default=None)
    args = parser.parse_args(argv)
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
