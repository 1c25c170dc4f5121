"""The byte budget: what it admits, what it refuses and why, and the container-limit default."""

from pathlib import Path

import pytest
from kinfer_runtime.dataplane.budget import (
    DEFAULT_BUDGET_BYTES,
    ByteBudget,
    container_memory_limit,
    default_budget,
)
from kinfer_runtime.errors import MemoryBudgetFull, PayloadTooLarge


def test_charges_add_up_to_the_capacity_and_release_gives_them_back() -> None:
    budget = ByteBudget(100)
    first, second = budget.charge(60), budget.charge(40)
    assert budget.in_use == 100
    first.release()
    assert budget.in_use == 40
    with budget.charge(60):
        assert budget.in_use == 100
    assert budget.in_use == 40
    second.release()
    second.release()  # twice is harmless
    assert budget.in_use == 0


def test_a_charge_that_would_overdraw_is_refused_as_full_and_takes_nothing() -> None:
    budget = ByteBudget(100)
    held = budget.charge(70)
    with pytest.raises(MemoryBudgetFull, match="70 of 100 bytes") as info:
        budget.charge(40)
    assert info.value.retry_after_s == 1
    assert budget.in_use == 70
    held.release()
    assert budget.charge(40).held == 40


def test_a_request_above_the_whole_budget_is_too_large_not_full() -> None:
    budget = ByteBudget(100)
    with pytest.raises(PayloadTooLarge, match="needs 101 bytes"):
        budget.charge(101)
    assert budget.in_use == 0


def test_growing_a_charge_takes_only_the_difference_and_never_shrinks() -> None:
    budget = ByteBudget(100)
    charge = budget.charge(10)
    charge.cover(30)
    charge.cover(20)
    assert (charge.held, budget.in_use) == (30, 30)
    with pytest.raises(PayloadTooLarge):
        charge.cover(101)
    assert budget.in_use == 30


def test_a_budget_must_be_positive() -> None:
    with pytest.raises(ValueError, match="must be > 0"):
        ByteBudget(0)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("1073741824\n", 1 << 30),  # cgroup v2 or v1 with a limit
        ("max\n", None),  # v2 without a limit
        ("9223372036854771712\n", None),  # v1 without a limit
        ("garbage", None),
    ],
)
def test_the_container_limit_is_read_from_the_cgroup(
    tmp_path: Path, content: str, expected: int | None
) -> None:
    path = tmp_path / "memory.max"
    path.write_text(content)
    assert container_memory_limit((tmp_path / "absent", path)) == expected


def test_no_cgroup_file_means_no_limit(tmp_path: Path) -> None:
    assert container_memory_limit((tmp_path / "absent",)) is None


def test_the_default_is_a_quarter_of_the_limit_or_a_fixed_size_without_one() -> None:
    assert default_budget(1 << 30) == 256 << 20
    assert default_budget(None) == DEFAULT_BUDGET_BYTES
