"""The real lane's Gateway API implementation: Traefik, built from the Go module proxy
(`build-binaries.sh traefik`), run beside the real node as a host process.

It listens only on the node's bridge address (never an external interface), reads the API
server with a ServiceAccount token (RBAC as its docs list, nothing more), and proxies to the
runtime pods' IPs from EndpointSlices, as it would in a cluster. Its state (config, token,
log) lives in the test's temporary directory and it is stopped by its PID. The standard
Gateway API CRDs come from the pinned sigs.k8s.io/gateway-api module (GATEWAY_API_VERSION);
Traefik 3.6's Gateway provider is built against the same v1 API.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml
from harness import free_port, kubectl, kubectl_json, wait_until

__all__ = ["CONTROLLER", "GATEWAY_NAMESPACE", "Traefik", "install_gateway_api_crds"]

CONTROLLER = "traefik.io/gateway-controller"
GATEWAY_NAMESPACE = "kinfer-gateway"
GATEWAY_CLASS = "kinfer-traefik"
_CRD_SCRIPT = Path(__file__).resolve().parent / "tools" / "gateway-api-crds.sh"
_RULES = [
    {
        "apiGroups": [""],
        "resources": ["namespaces", "services", "secrets", "configmaps"],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["discovery.k8s.io"],
        "resources": ["endpointslices"],
        "verbs": ["list", "watch"],
    },
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": [
            "gatewayclasses",
            "gateways",
            "httproutes",
            "grpcroutes",
            "referencegrants",
            "backendtlspolicies",
        ],
        "verbs": ["get", "list", "watch"],
    },
    {
        "apiGroups": ["gateway.networking.k8s.io"],
        "resources": [
            "gatewayclasses/status",
            "gateways/status",
            "httproutes/status",
            "grpcroutes/status",
            "backendtlspolicies/status",
        ],
        "verbs": ["update"],
    },
]


def install_gateway_api_crds() -> None:
    """Every standard-channel CRD of the pinned release (Traefik watches them all)."""
    crd_dir = subprocess.run(
        ["bash", str(_CRD_SCRIPT)], check=True, capture_output=True, text=True
    ).stdout.strip()
    kubectl("apply", "--server-side", "--force-conflicts", "-f", crd_dir)
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "-f", crd_dir)


def _apply(*docs: dict[str, Any]) -> None:
    kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))


class Traefik:
    """Traefik serving one Gateway (`kinfer-gateway/kinfer-gw`, HTTP on `host:port`) that
    admits routes from every namespace."""

    def __init__(self, workdir: Path, host: str) -> None:
        self.workdir, self.host = workdir, host
        self.port = free_port()
        self.url = f"http://{host}:{self.port}"
        self.parent_ref = {"name": "kinfer-gw", "namespace": GATEWAY_NAMESPACE}
        self.log_path = workdir / "traefik.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def _rbac_and_gateway(self) -> None:
        ns, sa = GATEWAY_NAMESPACE, "traefik"

        def not_terminating() -> bool:
            # An earlier lane's Traefik deletes the namespace without waiting: nothing can be
            # created in it until it is gone.
            found = kubectl("get", "namespace", ns, "-o", "jsonpath={.status.phase}", check=False)
            return found.stdout.strip() != "Terminating"

        wait_until(not_terminating, 180, f"namespace {ns} to finish terminating")
        kubectl("create", "namespace", ns, check=False)
        _apply(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": sa, "namespace": ns},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRole",
                "metadata": {"name": "kinfer-e2e-traefik"},
                "rules": _RULES,
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": "kinfer-e2e-traefik"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": "kinfer-e2e-traefik",
                },
                "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
            },
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "GatewayClass",
                "metadata": {"name": GATEWAY_CLASS},
                "spec": {"controllerName": CONTROLLER},
            },
            {
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "Gateway",
                "metadata": {"name": "kinfer-gw", "namespace": ns},
                "spec": {
                    "gatewayClassName": GATEWAY_CLASS,
                    "listeners": [
                        {
                            "name": "web",
                            "protocol": "HTTP",
                            "port": self.port,
                            "allowedRoutes": {"namespaces": {"from": "All"}},
                        }
                    ],
                },
            },
        )
        token = kubectl("create", "token", sa, "-n", ns, "--duration=3h").stdout.strip()
        (self.workdir / "token").write_text(token)

    def _config(self) -> Path:
        kubeconfig = kubectl_json("config", "view", "--raw", "--minify")
        cluster = kubeconfig["clusters"][0]["cluster"]
        ca = self.workdir / "ca.crt"
        ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
        config = {
            # No version check, no usage report: Traefik talks to the API server and pods only.
            "global": {"checkNewVersion": False, "sendAnonymousUsage": False},
            "entryPoints": {"web": {"address": f"{self.host}:{self.port}"}},
            "providers": {
                "kubernetesGateway": {
                    "endpoint": cluster["server"],
                    "token": str(self.workdir / "token"),
                    "certAuthFilePath": str(ca),
                    "statusAddress": {"ip": self.host},
                    "throttleDuration": "500ms",
                }
            },
            "log": {"level": "INFO"},
        }
        path = self.workdir / "traefik.yaml"
        path.write_text(json.dumps(config))
        return path

    def start(self) -> None:
        binary = shutil.which("traefik")
        if binary is None:
            raise RuntimeError("traefik not found on PATH: `make binaries` builds it")
        # The Gateway API CRDs are in place: e2e's session fixture installs them first.
        self._rbac_and_gateway()
        config = self._config()
        log = self.log_path.open("wb")
        # Without KUBECONFIG, Traefik uses the endpoint and the ServiceAccount token above
        # (with it, Traefik would take the admin kubeconfig and its RBAC would go untested).
        env = {k: v for k, v in os.environ.items() if k != "KUBECONFIG"}
        self.proc = subprocess.Popen(
            [binary, f"--configFile={config}"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
        wait_until(self._programmed, 60, "Traefik to program the Gateway")

    def _programmed(self) -> bool:
        assert self.proc is not None and self.proc.poll() is None, self.log_tail()
        gw = kubectl_json("get", "gateway", "kinfer-gw", "-n", GATEWAY_NAMESPACE)
        return any(
            c["type"] == "Programmed" and c["status"] == "True"
            for c in (gw.get("status") or {}).get("conditions") or []
        )

    def listening(self) -> set[str]:
        """Local addresses the Traefik process listens on (TCP), from `ss`."""
        assert self.proc is not None
        out = subprocess.run(["ss", "-H", "-ltnp"], capture_output=True, text=True).stdout
        return {line.split()[3] for line in out.splitlines() if f"pid={self.proc.pid}," in line}

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None
        kubectl("delete", "namespace", GATEWAY_NAMESPACE, "--wait=false", check=False)
        for kind in ("gatewayclass", "clusterrolebinding", "clusterrole"):
            name = GATEWAY_CLASS if kind == "gatewayclass" else "kinfer-e2e-traefik"
            kubectl("delete", kind, name, "--wait=false", check=False)
