"""`kinfer-operator`: run the operator (a thin wrapper over `kopf.run`)."""

from __future__ import annotations

import argparse
import logging
import os
import random
import time
from collections.abc import Sequence
from typing import Protocol

import kopf
from prometheus_client import REGISTRY, start_http_server

from kinfer_operator import __version__
from kinfer_operator._kube import Kube, load_config
from kinfer_operator.handlers import WORKERS, Controller, install
from kinfer_operator.reconcile import Reconciler
from kinfer_operator.reconcile.cluster import CachedCluster, relist
from kinfer_operator.reconcile.template_rolls import DEFAULT_MAX_TEMPLATE_ROLLS, TemplateRolls
from kinfer_operator.rollout.endpoints import ConfigError
from kinfer_operator.rollout.endpoints import load_config as load_prometheus
from kinfer_operator.world import Store
from kinfer_operator.world.cost_metric import GpuSecondsCollector
from kinfer_operator.world.store import ModelKey

__all__ = ["main", "parse_args"]


def _at_least_one(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {number}")
    return number


def _template_mark(value: str) -> str:
    if len(value) > 63:
        raise argparse.ArgumentTypeError(f"at most 63 characters, got {len(value)}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Flags, each defaulting from a KINFER_* environment variable (the chart sets those)."""
    env = os.environ.get
    parser = argparse.ArgumentParser(prog="kinfer-operator", description=__doc__)
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[n for n in env("KINFER_WATCH_NAMESPACES", "").split(",") if n],
        help="watch only this namespace (repeatable); default: the whole cluster",
    )
    parser.add_argument(
        "--peering",
        default=env("KINFER_PEERING", ""),
        help="kopf peering name: replicas sharing it elect one active operator",
    )
    parser.add_argument(
        "--priority",
        type=int,
        default=int(env("KINFER_PEERING_PRIORITY", "0")) or None,
        help="peering priority; the highest live priority acts and the others stand by. "
        "Default: random, because kopf pauses every operator that shares a priority",
    )
    parser.add_argument(
        "--peering-lifetime",
        type=int,
        default=int(env("KINFER_PEERING_LIFETIME", "60")),
        help="seconds a silent peer counts as alive; a standby takes over after this",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=int(env("KINFER_WORKERS", str(WORKERS))),
        help="reconcile workers draining the work queue (one model per worker at a time)",
    )
    parser.add_argument(
        "--max-template-rolls",
        type=_at_least_one,
        default=env("KINFER_MAX_TEMPLATE_ROLLS", str(DEFAULT_MAX_TEMPLATE_ROLLS)),
        help="models rolling a change of the operator's own pod template (after an operator "
        "upgrade) at once; spec changes are not limited by this",
    )
    parser.add_argument(
        "--template-mark",
        type=_template_mark,
        default=env("KINFER_TEMPLATE_MARK", ""),
        help="for tests only: an annotation value added to every pod template, so that the "
        "operator's template differs on demand",
    )
    parser.add_argument(
        "--gateway-api",
        choices=["auto", "true", "false"],
        default=env("KINFER_GATEWAY_API", "auto"),
        help="watch Gateway API HTTPRoutes; auto: when their CRD is installed at start and the "
        "operator's RBAC allows it (the chart sets it from gatewayAPI.enabled)",
    )
    parser.add_argument("--health-port", type=int, default=int(env("KINFER_HEALTH_PORT", "8080")))
    parser.add_argument("--metrics-port", type=int, default=int(env("KINFER_METRICS_PORT", "8081")))
    parser.add_argument(
        "--log-format", choices=["json", "plain"], default=env("KINFER_LOG_FORMAT", "json")
    )
    parser.add_argument("--verbose", action="store_true", default=bool(env("KINFER_VERBOSE")))
    parser.add_argument("--version", action="version", version=f"kinfer-operator {__version__}")
    return parser.parse_args(argv)


class Discovery(Protocol):
    """What the start-up asks the cluster (Kube answers it; tests fake it)."""

    def serves(self, kind: str) -> bool: ...

    def may_watch(self, group: str, resource: str, namespaces: Sequence[str] = ()) -> bool: ...


def routes_watched(mode: str, kube: Discovery, namespaces: list[str]) -> bool:
    """Whether to watch HTTPRoutes for `--gateway-api` `mode`. auto: only when their CRD is
    served now and RBAC allows it. kopf notices a CRD installed later only if API discovery
    has caught up when the CRD's last event arrives, which is a race; a GatewayAPI model then
    says in status to restart the operator, never waits silently."""
    if mode != "auto":
        return mode == "true"
    return kube.serves("HTTPRoute") and kube.may_watch(
        "gateway.networking.k8s.io", "httproutes", namespaces
    )


def main(argv: list[str] | None = None) -> None:
    """Configure logging, metrics and health, then hand over to kopf."""
    args = parse_args(argv)
    try:  # a bad endpoint list stops the operator at once, naming the problem
        prometheus = load_prometheus()
    except ConfigError as err:
        raise SystemExit(f"kinfer-operator: {err}") from err
    kopf.configure(
        verbose=args.verbose,
        log_format=kopf.LogFormat.JSON if args.log_format == "json" else kopf.LogFormat.PLAIN,
    )
    logging.getLogger("kinfer_operator").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    if args.metrics_port:
        start_http_server(args.metrics_port)
    kube = Kube(load_config(pool_size=args.workers + 4))
    store = Store()
    exact = [ns for ns in args.namespace if not set(ns) & set("*?[]!")]
    watch_routes = routes_watched(args.gateway_api, kube, exact)
    priority = args.priority or random.SystemRandom().randint(1, 1_000_000)
    peering_namespace = exact[0] if args.namespace and exact else None

    checked: list[tuple[float, bool | None]] = []  # (monotonic time, answer): a GET per 5 s

    def standby() -> bool:
        # Asked by every model's scheduled resync; the peering object changes far slower.
        # Not yet listed in the peering (or no peering object): nothing may act yet.
        if not args.peering:
            return False
        if not checked or time.monotonic() - checked[0][0] > 5:
            leads = kube.leads(args.peering, peering_namespace, priority)
            if leads is None and (not checked or checked[0][1] is not None):
                logging.getLogger("kinfer_operator").warning(
                    "peering %r not found: standing by until it exists", args.peering
                )
            checked[:] = [(time.monotonic(), leads)]
        return not checked[0][1]

    reconciler = Reconciler(
        CachedCluster(store, kube, routes_watched=watch_routes),
        prometheus=prometheus,
        template_rolls=TemplateRolls(args.max_template_rolls, lambda: store.all_of("Deployment")),
        template_mark=args.template_mark,
    )
    REGISTRY.register(GpuSecondsCollector(store, reconciler.costs))

    def relist_cache() -> set[ModelKey]:
        return relist(
            store,
            kube,
            args.namespace,
            with_routes=watch_routes,
            pod_vanished=controller.pod_vanished,
        )

    controller = Controller(
        reconciler, store, standby=standby, relist=relist_cache, workers=args.workers
    )
    install(controller, watch_routes=watch_routes)

    @kopf.on.startup()
    def peering_settings(settings: kopf.OperatorSettings, **_: object) -> None:
        settings.peering.lifetime = args.peering_lifetime
        settings.peering.mandatory = bool(args.peering)
        # Exact namespaces need no discovery; a namespaced install (Roles only) may not
        # list namespaces or watch CRDs cluster-wide. Glob patterns still need scanning.
        settings.scanning.disabled = bool(args.namespace) and not any(
            set(ns) & set("*?[]!") for ns in args.namespace
        )

    logging.getLogger("kinfer_operator").info(
        "starting kinfer-operator %s (peering %s, priority %d, HTTPRoutes %s)",
        __version__,
        args.peering or "off",
        priority,
        "watched" if watch_routes else "not watched",
    )
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace,
        standalone=not args.peering,
        peering_name=args.peering or None,
        priority=priority,
        liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz"
        if args.health_port
        else None,
    )


if __name__ == "__main__":
    main()
