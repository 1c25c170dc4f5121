"""What a REST request body costs the byte budget, charged before and while it is read.

JSON tensors are decoded through Python objects (orjson builds a list of numbers before numpy
sees them), so their text costs several times its size; binary tensors become views of the body
and cost what they weigh. The binary extension's header says, before the body arrives, how much
of it is JSON.
"""

from collections.abc import Mapping
from typing import Final

from kinfer_runtime.dataplane.budget import BudgetCharge, ByteBudget
from kinfer_runtime.schemas.inference import HEADER_LENGTH, parse_header_length

__all__ = ["JSON_COST_FACTOR", "BodyCharge"]

JSON_COST_FACTOR: Final = 4
"""Bytes of memory held per byte of JSON text: the body, the decoded arrays, and this
request's share of the decoding scratch space (measured with bench/hostile.py)."""


class BodyCharge:
    """Charges a request body to the budget: its declared size before it is read (`read_body`
    does), a chunked one as it arrives, an inflated one once inflated."""

    __slots__ = ("_charge", "_json_length")

    def __init__(self, budget: ByteBudget, headers: Mapping[str, str]) -> None:
        self._json_length = parse_header_length(headers.get(HEADER_LENGTH))
        self._charge: BudgetCharge = budget.charge()

    def cost(self, body_bytes: int) -> int:
        """The memory a body of `body_bytes` bytes holds while it is served."""
        json_bytes = body_bytes if self._json_length is None else min(self._json_length, body_bytes)
        return body_bytes + (JSON_COST_FACTOR - 1) * json_bytes

    def cover(self, body_bytes: int) -> None:
        """Charge for `body_bytes` bytes received (or inflated); refuses past the budget."""
        self._charge.cover(self.cost(body_bytes))

    def release(self) -> None:
        self._charge.release()
