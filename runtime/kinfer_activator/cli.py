"""`kinfer-activator`: serve the routing table's ports until SIGTERM, then drain and exit."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
from pathlib import Path

import uvloop

from kinfer_activator.endpoints import EndpointSource, FileEndpoints, KubeEndpointSlices
from kinfer_activator.routes_watch import RouteConfigMap
from kinfer_activator.server import Activator, ActivatorSettings
from kinfer_activator.table import RouteFile
from kinfer_activator.waker import KubeWaker, Waker

__all__ = ["main"]

log = logging.getLogger("kinfer_activator")

DEFAULT_ROUTES = "/etc/kinfer/activator/routes.json"


class LoggingWaker:
    """--endpoints-file runs have no cluster: a wake is only logged."""

    async def wake(self, namespace: str, deployment: str, replicas: int) -> None:
        log.info(
            "wake %s/%s to %d replicas (no cluster: logged only)", namespace, deployment, replicas
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kinfer-activator", description=__doc__)
    parser.add_argument(
        "--routes-configmap",
        metavar="NAME",
        help="watch the routing table in this ConfigMap (in --namespace) through the API",
    )
    parser.add_argument(
        "--namespace",
        default=os.environ.get("POD_NAMESPACE", ""),
        help="the ConfigMap's namespace (default: $POD_NAMESPACE)",
    )
    parser.add_argument(
        "--routes",
        type=Path,
        default=Path(DEFAULT_ROUTES),
        help="read the routing table from this file instead (no --routes-configmap)",
    )
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--metrics-port", type=int, default=9090)
    parser.add_argument("--drain-delay", type=float, default=5.0)
    parser.add_argument(
        "--endpoints-file",
        type=Path,
        help="read endpoints from this JSON file instead of the cluster, and wake nothing",
    )
    parser.add_argument("--log-level", default="INFO")
    return parser


async def _serve(args: argparse.Namespace) -> None:
    endpoints: EndpointSource
    waker: Waker
    poll_endpoints = None
    if args.endpoints_file is not None:
        files = FileEndpoints(args.endpoints_file)
        files.poll()
        endpoints, waker, poll_endpoints = files, LoggingWaker(), files.poll
    else:
        slices = KubeEndpointSlices()
        slices.start()
        endpoints, waker = slices, KubeWaker()
    settings = ActivatorSettings(
        host=args.host, metrics_port=args.metrics_port, drain_delay_s=args.drain_delay
    )
    activator = Activator(endpoints, waker, settings)
    await activator.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    routes = _routes(args)
    first = routes.poll()
    if first is not None:
        await activator.apply(first)

    async def poll_files() -> None:
        while True:
            await asyncio.sleep(0.2)
            if poll_endpoints is not None:
                poll_endpoints()

    poller = asyncio.create_task(poll_files())
    log.info("activator serving; metrics on %d", activator.metrics_port)
    await activator.run(routes.poll, stop)
    poller.cancel()
    if isinstance(routes, RouteConfigMap):
        routes.stop()
    log.info("activator drained")


def _routes(args: argparse.Namespace) -> RouteConfigMap | RouteFile:
    if args.routes_configmap is None:
        return RouteFile(args.routes)
    if not args.namespace:
        raise SystemExit("--routes-configmap needs --namespace or $POD_NAMESPACE")
    watched = RouteConfigMap(args.namespace, args.routes_configmap)
    watched.start()
    return watched


def main(argv: list[str] | None = None) -> None:
    args = _parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    uvloop.run(_serve(args))
