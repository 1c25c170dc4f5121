"""What a REST request body costs the byte budget, charged before and while it is read.

JSON tensors are decoded through Python objects (orjson builds a list of numbers before numpy
sees them), so their text costs many times its size while it is decoded; binary tensors
become views of the body and cost what they weigh. The binary extension's header says, before
the body arrives, how much of it is JSON.
"""

from collections.abc import Mapping
from typing import Final

from kinfer_runtime.dataplane.budget import BudgetCharge, ByteBudget
from kinfer_runtime.schemas.inference import HEADER_LENGTH, parse_header_length

__all__ = ["JSON_COST_FACTOR", "BodyCharge"]

JSON_COST_FACTOR: Final = 32
"""Bytes of memory held per byte of JSON text: the body and its decoding's peak. Measured
(orjson, then numpy) on 20 MiB bodies: 3.5x for floats as clients print them, 10x for `0`,
14x for `1e0`, 30x for one-element nested lists (`[[0],[0],...]`). Charging the worst case
caps a JSON body at 1/32 of the budget (8 MiB in a 1 GiB pod); larger tensors go in binary
(the binary extension or gRPC), which costs what it weighs."""


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
