"""How many CPU threads a backend should use inside a container."""

import math
import os
from pathlib import Path

__all__ = ["available_cpus"]

_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


def _cgroup_quota() -> int | None:
    # cgroup v2 "quota period" (or "max period" when unlimited). os.cpu_count() and the
    # frameworks' defaults count the node's cores, so under a Kubernetes CPU limit they would
    # start far more threads than the pod may run and lose time to throttling.
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()[:2]
    except (OSError, ValueError):
        return None
    if quota == "max":
        return None
    return max(1, math.ceil(int(quota) / int(period)))


def available_cpus() -> int:
    """CPUs this process may use: affinity mask, capped by the cgroup CPU limit."""
    cpus = len(os.sched_getaffinity(0))
    quota = _cgroup_quota()
    return min(cpus, quota) if quota is not None else cpus
