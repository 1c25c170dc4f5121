"""Reports a fatal error where a person will see it: stderr and the Kubernetes termination log."""

import contextlib
import sys
from pathlib import Path
from typing import Final

__all__ = ["one_line", "report_fatal"]

# Kubernetes reads at most 4096 bytes of the termination message.
_MAX_MESSAGE_BYTES: Final = 4096


def one_line(message: str) -> str:
    """Frameworks put newlines in their errors; a container status wants one line."""
    return " ".join(message.split())


def report_fatal(message: str, termination_log: Path | None) -> str:
    """Writes `kinfer-runtime: error: ...` to stderr and to the termination log (best effort)."""
    line = f"kinfer-runtime: error: {one_line(message)}"
    print(line, file=sys.stderr, flush=True)
    if termination_log is not None:
        # Outside Kubernetes the default /dev/termination-log is usually not writable.
        with contextlib.suppress(OSError):
            termination_log.write_bytes(line.encode()[:_MAX_MESSAGE_BYTES])
    return line
