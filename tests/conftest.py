"""Hypothesis settings for the whole suite: deterministic and bounded in CI, long on request.

KINFER_FUZZ_EXAMPLES=5000 runs that many examples per property, with fresh random inputs
on each run instead of the fixed, derandomized ones CI replays.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_LONG = os.environ.get("KINFER_FUZZ_EXAMPLES")

settings.register_profile(
    "kinfer",
    max_examples=int(_LONG or 200),
    deadline=None,  # a whole reconcile pass per example; wall time depends on the machine
    derandomize=not _LONG,
    database=None,  # nothing written into the work tree
    suppress_health_check=[HealthCheck.too_slow],
    print_blob=True,
)
settings.load_profile("kinfer")
