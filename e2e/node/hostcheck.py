"""What the real node may change on the host, captured before `up` and compared after `down`.

    python3 e2e/node/hostcheck.py snapshot FILE     record the host's state
    python3 e2e/node/hostcheck.py compare FILE      exit 1, listing each difference, when the
                                                    host differs from the snapshot

Stdlib only: it runs before any venv exists. Covers processes, mounts, network links,
addresses and routes, netfilter rules (iptables nft and legacy, nftables), the sysctls that
kubelet, kube-proxy and the node script touch, cgroups, and the host paths that no flag moves.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

SYSCTLS = (
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
    "net/netfilter/nf_conntrack_tcp_timeout_established",
    "net/netfilter/nf_conntrack_tcp_timeout_close_wait",
    # kubelet's kernel tunables (it sets them unless protectKernelDefaults makes it fail).
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
HOST_PATHS = (
    "/var/lib/kubelet",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/cni",
    "/run/containerd",
    "/var/run/netns",
    "/etc/cni",
    "/opt/cni",
    "/var/lib/containers",
    "/run/containers",
    "/etc/kubernetes",
)
# Processes of the node and control plane, by executable name: anything new is a leak.
NODE_PROGRAMS = re.compile(
    r"^(kubelet|kube-proxy|containerd|containerd-shim-runc-v2|runc|pause|socat|etcd|"
    r"kube-apiserver|kube-controller-manager|kube-scheduler|kwok|metrics-server|prometheus)$"
)


COUNTERS = re.compile(r" \[\d+:\d+\]$")
BUILTIN_ACCEPT = re.compile(r":(INPUT|OUTPUT|FORWARD|PREROUTING|POSTROUTING) ACCEPT")


def _run(*cmd: str) -> str:
    if shutil.which(cmd[0]) is None:
        return f"<{cmd[0]} not installed>"
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return proc.stdout if proc.returncode == 0 else f"<{' '.join(cmd)} failed: {proc.stderr}>"


def iptables_rules(saved: str) -> list[str]:
    """Rules and custom chains of an iptables-save dump, counters dropped. Empty tables with
    ACCEPT policies filter nothing, so they do not count (the kernel keeps such tables once
    they were listed, and they cannot be unloaded)."""
    out, table = [], ""
    for line in saved.splitlines():
        if line.startswith("*"):
            table = line[1:]
        elif line.startswith("-A") or (line.startswith(":") and not BUILTIN_ACCEPT.match(line)):
            out.append(table + " " + COUNTERS.sub("", line))
    return out


def _processes() -> list[str]:
    names = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
        except OSError:
            continue
        name = os.path.basename(exe.removesuffix(" (deleted)"))
        if NODE_PROGRAMS.match(name):
            names.append(f"{name} {exe}")
    return sorted(names)


def _mounts() -> list[str]:
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    # mount id, parent id and device numbers change between boots of the same mount.
    return sorted(" ".join(line.split()[4:5] + line.split(" - ")[1].split()[:2]) for line in lines)


def _cgroups() -> list[str]:
    root = Path("/sys/fs/cgroup")
    found = []
    for hierarchy in sorted(root.iterdir()) if root.is_dir() else []:
        for depth1 in sorted(hierarchy.iterdir()) if hierarchy.is_dir() else []:
            if depth1.is_dir():
                found.append(str(depth1.relative_to(root)))
    return found


def _sysctls() -> dict[str, str]:
    values = {}
    for key in SYSCTLS:
        try:
            values[key] = Path("/proc/sys", key).read_text().strip()
        except OSError:
            values[key] = "<absent>"
    return values


def snapshot() -> dict[str, object]:
    # "5: kinferbr0: <...>" or "7: veth1@if2: <...>": the name alone.
    links = re.findall(r"^\d+: ([^:@\s]+)", _run("ip", "-o", "link"), re.M)
    return {
        "processes": _processes(),
        "mounts": _mounts(),
        "links": sorted(links),
        "addresses": sorted(
            " ".join(line.split()[1:4]) for line in _run("ip", "-o", "addr").splitlines()
        ),
        "routes": sorted(_run("ip", "route", "show", "table", "all").splitlines()),
        "routes6": sorted(_run("ip", "-6", "route", "show", "table", "all").splitlines()),
        "iptables": iptables_rules(_run("iptables-nft-save") + _run("ip6tables-nft-save")),
        "iptables-legacy": iptables_rules(
            _run("iptables-legacy-save") + _run("ip6tables-legacy-save")
        ),
        "nftables": _run("nft", "-s", "list", "ruleset").splitlines(),
        "sysctls": _sysctls(),
        "cgroups": _cgroups(),
        "paths": [p for p in HOST_PATHS if os.path.lexists(p)],
    }


def differences(before: dict[str, object], after: dict[str, object]) -> list[str]:
    found = []
    for key, old in before.items():
        new = after.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            found += [
                f"sysctl {k}: {old[k]} before, {new.get(k)} now"
                for k in old
                if old[k] != new.get(k)
            ]
        elif isinstance(old, list) and isinstance(new, list):
            found += [f"{key}: left behind: {item}" for item in new if item not in old]
            found += [f"{key}: gone: {item}" for item in old if item not in new]
    return found


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] not in ("snapshot", "compare"):
        print(__doc__, file=sys.stderr)
        return 2
    path = Path(argv[2])
    if argv[1] == "snapshot":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(snapshot(), indent=1))
        return 0
    found = differences(json.loads(path.read_text()), snapshot())
    for line in found:
        print(line)
    print(f"hostcheck: {len(found)} difference(s) from the snapshot in {path}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
