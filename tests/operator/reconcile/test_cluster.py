"""CachedCluster: the reads a pass makes beyond the informer cache stay rare."""

from __future__ import annotations

from kinfer_operator.reconcile.cluster import REFERENCE_TTL_SECONDS, CachedCluster
from kinfer_operator.references import Reference
from kinfer_operator.world import Store

CLAIM = Reference("PersistentVolumeClaim", "models", "spec.model.cache.claimName")


class _Kube:
    """Answers `missing` from a script and counts the API reads."""

    def __init__(self) -> None:
        self.answer: str | None = None
        self.reads = 0

    def missing(self, namespace: str, ref: Reference) -> str | None:
        self.reads += 1
        return self.answer


def test_a_present_reference_is_asked_again_only_after_its_ttl() -> None:
    kube, now = _Kube(), [0.0]
    cluster = CachedCluster(Store(), kube, routes_watched=False, monotonic=lambda: now[0])  # type: ignore[arg-type]
    assert cluster.missing("ml", CLAIM) is None
    now[0] = REFERENCE_TTL_SECONDS - 1
    assert cluster.missing("ml", CLAIM) is None
    assert kube.reads == 1  # the steady state read nothing
    now[0] = REFERENCE_TTL_SECONDS + 1
    kube.answer = (
        "spec.model.cache.claimName: PersistentVolumeClaim 'models' not found in namespace ml"
    )
    assert cluster.missing("ml", CLAIM) == kube.answer  # a deleted claim is noticed
    assert kube.reads == 2


def test_a_missing_reference_is_asked_on_every_pass_until_it_appears() -> None:
    kube = _Kube()
    kube.answer = (
        "spec.model.cache.claimName: PersistentVolumeClaim 'models' not found in namespace ml"
    )
    cluster = CachedCluster(Store(), kube, routes_watched=False, monotonic=lambda: 0.0)  # type: ignore[arg-type]
    assert cluster.missing("ml", CLAIM) is not None
    kube.answer = None  # the user created it
    assert cluster.missing("ml", CLAIM) is None
    assert kube.reads == 2
