"""`kinfer-operator`: run the operator (a thin wrapper over `kopf.run`)."""

from __future__ import annotations

import argparse
import logging
import os
import re
import secrets
import socket
from collections.abc import Sequence
from typing import Protocol

import kopf
from prometheus_client import REGISTRY, start_http_server

from kinfer_operator import __version__
from kinfer_operator._kube import Kube, load_config
from kinfer_operator.election import ElectionSettings, LeaderElector
from kinfer_operator.handlers import WORKERS, Controller, install
from kinfer_operator.metrics import LEADER
from kinfer_operator.reconcile import Reconciler
from kinfer_operator.reconcile.cluster import CachedCluster, relist
from kinfer_operator.reconcile.run import (
    ACTIVATOR_NAMESPACE_ENV,
    ACTIVATOR_SERVICE_ENV,
    DEFAULT_ACTIVATOR_NAMESPACE,
)
from kinfer_operator.reconcile.template_rolls import DEFAULT_MAX_TEMPLATE_ROLLS, TemplateRolls
from kinfer_operator.rollout.endpoints import ConfigError
from kinfer_operator.rollout.endpoints import load_config as load_prometheus
from kinfer_operator.tracing import install_tracing
from kinfer_operator.world import Store
from kinfer_operator.world.activator import ActivatorEndpoints
from kinfer_operator.world.cost_metric import GpuSecondsCollector
from kinfer_operator.world.store import ModelKey

__all__ = ["identity", "lease_namespace", "main", "parse_args"]


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
        "--leader-election",
        metavar="LEASE",
        default=env("KINFER_LEADER_ELECTION", ""),
        help="name of the coordination.k8s.io Lease replicas elect one active operator "
        "through; empty: standalone (one replica only)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=env("KINFER_LEADER_ELECTION_NAMESPACE", ""),
        help="namespace of the Lease; default: the pod's own namespace",
    )
    parser.add_argument(
        "--leader-election-lease-duration",
        type=float,
        default=float(env("KINFER_LEADER_ELECTION_LEASE_DURATION", "15")),
        help="seconds a standby waits for a silent holder before taking over",
    )
    parser.add_argument(
        "--leader-election-renew-deadline",
        type=float,
        default=float(env("KINFER_LEADER_ELECTION_RENEW_DEADLINE", "10")),
        help="seconds after its last successful renew at which the holder stops acting "
        "(less than the lease duration, so two replicas never act at once)",
    )
    parser.add_argument(
        "--leader-election-retry-period",
        type=float,
        default=float(env("KINFER_LEADER_ELECTION_RETRY_PERIOD", "2")),
        help="seconds between tries to take or renew the Lease",
    )
    parser.add_argument("--peering", help=argparse.SUPPRESS)  # removed: says what replaces it
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
    parser.add_argument(
        "--runtime-otlp-endpoint",
        default=env("KINFER_RUNTIME_OTLP_ENDPOINT", ""),
        help="OTLP (gRPC) collector that runtimes of models with spec.runtime.tracing export "
        "to; empty: their tracing stays off. The platform's choice, never a model's",
    )
    parser.add_argument("--health-port", type=int, default=int(env("KINFER_HEALTH_PORT", "8080")))
    parser.add_argument("--metrics-port", type=int, default=int(env("KINFER_METRICS_PORT", "8081")))
    parser.add_argument(
        "--log-format", choices=["json", "plain"], default=env("KINFER_LOG_FORMAT", "json")
    )
    parser.add_argument("--verbose", action="store_true", default=bool(env("KINFER_VERBOSE")))
    parser.add_argument("--version", action="version", version=f"kinfer-operator {__version__}")
    args = parser.parse_args(argv)
    if args.peering is not None:
        parser.error(
            "--peering was removed: use --leader-election LEASE (a Lease, not kopf peering)"
        )
    if args.leader_election and not _DNS_SUBDOMAIN.fullmatch(args.leader_election):
        parser.error(f"--leader-election {args.leader_election!r}: not a valid Lease name")
    try:
        args.election = ElectionSettings(
            args.leader_election_lease_duration,
            args.leader_election_renew_deadline,
            args.leader_election_retry_period,
        )
    except ValueError as err:
        parser.error(str(err))
    return args


_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?")
_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


def lease_namespace(flag: str, namespace_file: str = _NAMESPACE_FILE) -> str:
    """The Lease's namespace: the flag, else the pod's own (the service account's)."""
    if flag:
        return flag
    try:
        with open(namespace_file, encoding="utf-8") as f:
            own = f.read().strip()
    except OSError:
        own = ""
    if not own:
        raise SystemExit(
            "kinfer-operator: --leader-election-namespace is needed outside a pod "
            "(no service account namespace to default to)"
        )
    return own


def identity() -> str:
    """This replica's name in the Lease: the pod's name and a random suffix, unique even
    for two processes on one host or a restarted container."""
    return f"{os.environ.get('POD_ID') or socket.gethostname()}_{secrets.token_hex(4)}"


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


def grpc_routes_watched(mode: str, kube: Discovery, namespaces: list[str]) -> bool:
    """Whether to watch GRPCRoutes: unless `--gateway-api false`, when their CRD is served
    and RBAC allows it. Never forced on: a cluster whose Gateway API lacks GRPCRoute still
    routes HTTP, and its GatewayAPI models say in status that gRPC has no route."""
    if mode == "false":
        return False
    return kube.serves("GRPCRoute") and kube.may_watch(
        "gateway.networking.k8s.io", "grpcroutes", namespaces
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
    if install_tracing():
        logging.getLogger("kinfer_operator").info("tracing reconcile passes (OTLP)")
    if args.metrics_port:
        start_http_server(args.metrics_port)
    kube = Kube(load_config(pool_size=args.workers + 4))
    store = Store()
    exact = [ns for ns in args.namespace if not set(ns) & set("*?[]!")]
    watch_routes = routes_watched(args.gateway_api, kube, exact)
    watch_grpc = watch_routes and grpc_routes_watched(args.gateway_api, kube, exact)
    elector: LeaderElector | None = None
    if args.leader_election:
        elector = LeaderElector(
            kube,
            lease_namespace(args.leader_election_namespace),
            args.leader_election,
            identity(),
            args.election,
            on_change=lambda leading: controller.took_over() if leading else None,
        )
        LEADER.set_function(lambda: 1.0 if elector is not None and elector.leading() else 0.0)
    else:
        LEADER.set(1)

    def standby() -> bool:
        # Hot standby: the watches and the cache stay current, nothing acts.
        return elector is not None and not elector.leading()

    activator_service = os.environ.get(ACTIVATOR_SERVICE_ENV, "")
    activator = (
        ActivatorEndpoints(
            os.environ.get(ACTIVATOR_NAMESPACE_ENV) or DEFAULT_ACTIVATOR_NAMESPACE,
            activator_service,
        )
        if activator_service
        else None
    )
    cluster = CachedCluster(
        store,
        kube,
        routes_watched=watch_routes,
        grpc_routes_watched=watch_grpc,
        activator=activator,
    )
    reconciler = Reconciler(
        cluster,
        prometheus=prometheus,
        template_rolls=TemplateRolls(
            args.max_template_rolls,
            lambda: store.all_of("Deployment"),
            # A slot freed: the oldest waiting models' passes run now, not at their requeue.
            wake=lambda key: controller.enqueue(key, "template-slot"),
        ),
        template_mark=args.template_mark,
        otlp_endpoint=args.runtime_otlp_endpoint,
    )
    REGISTRY.register(GpuSecondsCollector(store, reconciler.costs))

    def relist_cache() -> set[ModelKey]:
        return relist(
            store,
            kube,
            args.namespace,
            with_routes=watch_routes,
            with_grpc_routes=watch_grpc,
            pod_vanished=controller.pod_vanished,
        )

    controller = Controller(
        reconciler,
        store,
        standby=standby,
        relist=relist_cache,
        workers=args.workers,
        activator_refresh=cluster.refresh_activator if activator is not None else None,
    )
    install(
        controller, watch_routes=watch_routes, watch_grpc_routes=watch_grpc, activator=activator
    )

    @kopf.on.startup()
    def scanning_settings(settings: kopf.OperatorSettings, **_: object) -> None:
        # Exact namespaces need no discovery; a namespaced install (Roles only) may not
        # list namespaces or watch CRDs cluster-wide. Glob patterns still need scanning.
        settings.scanning.disabled = bool(args.namespace) and not any(
            set(ns) & set("*?[]!") for ns in args.namespace
        )

    @kopf.on.cleanup()
    def step_down(**_: object) -> None:
        # Release only once no pass runs here any more, so a standby may take over at once.
        controller.stop()
        if elector is not None:
            elector.stop()

    logging.getLogger("kinfer_operator").info(
        "starting kinfer-operator %s (leader election %s, HTTPRoutes %s, GRPCRoutes %s)",
        __version__,
        f"on Lease {elector.namespace}/{elector.name} as {elector.identity}"
        if elector is not None
        else "off",
        "watched" if watch_routes else "not watched",
        "watched" if watch_grpc else "not watched",
    )
    if elector is not None:
        elector.start()  # at once: a fresh install acts as soon as the cache is filled
    try:
        kopf.run(
            clusterwide=not args.namespace,
            namespaces=args.namespace,
            standalone=True,  # kopf's own peering is not used: the Lease decides who acts
            liveness_endpoint=f"http://0.0.0.0:{args.health_port}/healthz"
            if args.health_port
            else None,
        )
    finally:
        if elector is not None:
            elector.stop()


if __name__ == "__main__":
    main()
