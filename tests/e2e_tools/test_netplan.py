"""e2e/node/netplan.py: the real node's ranges never overlap what the host already routes."""

from __future__ import annotations

import importlib.util
import ipaddress
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, REPO / "e2e" / "node" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


netplan = _load("netplan")
hostcheck = _load("hostcheck")


def _nets(*cidrs: str) -> list[ipaddress.IPv4Network]:
    return [ipaddress.ip_network(c) for c in cidrs]


def test_first_free_block_is_split_into_node_pods_and_services() -> None:
    chosen = netplan.plan(_nets("192.0.2.0/24", "127.0.0.0/8"))
    assert chosen == {
        "NODE_IP": "10.251.0.1",
        "POD_CIDR": "10.251.1.0/24",
        "POD_GATEWAY": "10.251.1.1",
        "SERVICE_CIDR": "10.251.16.0/24",
        "SERVICE_IP": "10.251.16.1",
    }


@pytest.mark.parametrize("taken", ["10.0.0.0/8", "10.251.3.0/24", "10.251.0.7/32"])
def test_a_block_that_overlaps_any_host_route_is_skipped(taken: str) -> None:
    chosen = netplan.plan(_nets(taken))
    for key in ("POD_CIDR", "SERVICE_CIDR"):
        assert not ipaddress.ip_network(chosen[key]).overlaps(ipaddress.ip_network(taken))
    assert ipaddress.ip_address(chosen["NODE_IP"]) not in ipaddress.ip_network(taken)


def test_no_free_block_is_an_error_naming_the_candidates() -> None:
    with pytest.raises(SystemExit, match="overlaps a host route"):
        netplan.plan(_nets("10.0.0.0/8", "172.16.0.0/12"))


def test_hostcheck_reports_leftovers_gone_items_and_changed_sysctls() -> None:
    before = {"links": ["lo", "eth0"], "sysctls": {"net/ipv4/ip_forward": "0"}}
    after = {"links": ["lo", "eth0", "kinfer0"], "sysctls": {"net/ipv4/ip_forward": "1"}}
    assert hostcheck.differences(before, after) == [
        "links: left behind: kinfer0",
        "sysctl net/ipv4/ip_forward: 0 before, 1 now",
    ]
    assert hostcheck.differences(after, after) == []


def test_iptables_rules_ignore_empty_accept_tables_but_not_chains_or_rules() -> None:
    empty = "*filter\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [9:9]\nCOMMIT\n"
    assert hostcheck.iptables_rules(empty) == []
    kubelet = (
        "*filter\n:INPUT ACCEPT [0:0]\n:KUBE-FIREWALL - [3:4]\n"
        "-A INPUT -j KUBE-FIREWALL\nCOMMIT\n*nat\n:OUTPUT DROP [0:0]\nCOMMIT\n"
    )
    assert hostcheck.iptables_rules(kubelet) == [
        "filter :KUBE-FIREWALL -",
        "filter -A INPUT -j KUBE-FIREWALL",
        "nat :OUTPUT DROP",
    ]
