"""Choose the real node's addresses: a private /16 that overlaps no route or address the host
already has, split into the node IP, the pod range and the Service range, plus a free
loopback port for the API server. Prints shell `KEY=value` lines (e2e/cluster.sh saves them).

    python3 e2e/node/netplan.py

Stdlib only (it runs before any venv exists).
"""

from __future__ import annotations

import ipaddress
import json
import socket
import subprocess
import sys

# Rarely used corners of the private ranges first; the first free /16 wins.
CANDIDATES = ("10.251.0.0/16", "10.237.0.0/16", "172.29.0.0/16", "10.173.0.0/16", "172.27.0.0/16")


def _taken() -> list[ipaddress.IPv4Network]:
    """Every IPv4 prefix the host routes or owns (all tables; the default route excluded)."""
    routes = json.loads(
        subprocess.run(
            ["ip", "-j", "-4", "route", "show", "table", "all"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        or "[]"
    )
    addrs = json.loads(
        subprocess.run(
            ["ip", "-j", "-4", "addr"], capture_output=True, text=True, check=True
        ).stdout
        or "[]"
    )
    nets = []
    for route in routes:
        dst = route.get("dst", "default")
        if dst != "default":
            nets.append(ipaddress.ip_network(dst, strict=False))
    for link in addrs:
        for info in link.get("addr_info", []):
            nets.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}", strict=False))
    return nets


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def plan(taken: list[ipaddress.IPv4Network]) -> dict[str, str]:
    for candidate in CANDIDATES:
        block = ipaddress.ip_network(candidate)
        if any(block.overlaps(net) for net in taken):
            continue
        base = block.network_address
        pods = ipaddress.ip_network(f"{base + 256}/24")  # x.y.1.0/24
        # x.y.16.0/24: 254 Services, small enough that e2e/test_failures.py can fill it.
        services = ipaddress.ip_network(f"{base + 16 * 256}/24")
        return {
            "NODE_IP": str(base + 1),
            "POD_CIDR": str(pods),
            "POD_GATEWAY": str(pods.network_address + 1),
            "SERVICE_CIDR": str(services),
            "SERVICE_IP": str(services.network_address + 1),  # the `kubernetes` Service
        }
    raise SystemExit(f"netplan: every candidate range overlaps a host route: {CANDIDATES}")


def main() -> int:
    chosen = plan(_taken())
    chosen["APISERVER_PORT"] = str(_free_port())
    for key, value in chosen.items():
        print(f"{key}={value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
