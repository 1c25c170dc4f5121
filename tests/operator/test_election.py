"""Leader election on a Lease: who acts, when a standby takes over, and that two replicas
never act at once (against a fake store with the API server's compare-and-swap)."""

from __future__ import annotations

import random
import time

import pytest
from kinfer_operator.election import ElectionSettings, LeaderElector, LeaseRecord

from tests.support.clock import Clock
from tests.support.fake_lease import FakeLeaseStore

SETTINGS = ElectionSettings(lease_duration=15, renew_deadline=10, retry_period=2)


def _elector(
    store: FakeLeaseStore, clock: Clock, who: str, changes: list[bool] | None = None
) -> LeaderElector:
    return LeaderElector(
        store,
        "ops",
        "kinfer",
        who,
        SETTINGS,
        clock=clock.monotonic,
        now=clock.now,
        on_change=(changes.append if changes is not None else lambda leading: None),
    )


def test_the_first_replica_creates_the_lease_and_acts_at_once() -> None:
    store, clock = FakeLeaseStore(), Clock()
    a = _elector(store, clock, "a")
    assert not a.leading()
    assert a.try_once()
    assert a.leading()
    lease = store.leases[("ops", "kinfer")]
    assert (lease.holder, lease.duration_s, lease.transitions) == ("a", 15, 0)


def test_a_standby_does_not_take_a_lease_that_is_being_renewed() -> None:
    store, clock = FakeLeaseStore(), Clock()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    a.try_once()
    for _ in range(30):  # a minute
        clock.t += 2
        assert a.try_once()
        assert not b.try_once()
    assert store.holder() == "a"


def test_renewing_keeps_the_acquire_time_and_moves_the_renew_time() -> None:
    store, clock = FakeLeaseStore(), Clock()
    a = _elector(store, clock, "a")
    a.try_once()
    first = store.leases[("ops", "kinfer")]
    clock.t += 2
    a.try_once()
    renewed = store.leases[("ops", "kinfer")]
    assert renewed.acquired == first.acquired
    assert renewed.renewed is not None and first.renewed is not None
    assert renewed.renewed > first.renewed
    assert renewed.version != first.version


def test_a_standby_takes_over_once_the_silent_holder_s_lease_has_run_out() -> None:
    store, clock = FakeLeaseStore(), Clock()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    a.try_once()
    b.try_once()  # b sees a's lease at t=0; a then dies without a word
    clock.t = 14.9
    assert not b.try_once()
    clock.t = 15
    assert b.try_once()
    lease = store.leases[("ops", "kinfer")]
    assert (lease.holder, lease.transitions) == ("b", 1)


def test_the_lease_s_own_duration_counts_from_when_the_standby_saw_it_change() -> None:
    store, clock = FakeLeaseStore(), Clock()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    a.try_once()
    clock.t = 100  # b starts late; the lease's renew time is old, but b only trusts its clock
    assert not b.try_once()
    clock.t = 114
    assert not b.try_once()
    clock.t = 115
    assert b.try_once()


def test_a_released_lease_is_taken_at_the_next_try_without_waiting() -> None:
    store, clock = FakeLeaseStore(), Clock()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    a.try_once()
    b.try_once()
    a.release()
    assert not a.leading()
    assert store.holder() == ""
    clock.t += 2
    assert b.try_once()
    assert store.holder() == "b"


def test_releasing_a_lease_someone_else_holds_writes_nothing() -> None:
    store, clock = FakeLeaseStore(), Clock()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    a.try_once()
    b.try_once()
    writes = store.writes
    b.release()
    assert store.writes == writes
    assert store.holder() == "a"


def test_losing_the_compare_and_swap_means_the_lease_is_lost() -> None:
    store, clock = FakeLeaseStore(), Clock()
    a = _elector(store, clock, "a")
    a.try_once()
    clock.t += 2
    store.race.append(LeaseRecord("b", 15, clock.now(), clock.now(), 1))
    assert not a.try_once()
    assert not a.leading()
    assert store.holder() == "b"


def test_two_replicas_starting_together_on_a_fresh_install_elect_exactly_one() -> None:
    store, clock = FakeLeaseStore(), Clock()
    a, b = _elector(store, clock, "a"), _elector(store, clock, "b")
    # b's create lands between a's read (nothing there) and a's create.
    store.race.append(LeaseRecord("b", 15, clock.now(), clock.now(), 0))
    assert not a.try_once()
    assert b.try_once()
    assert [a.leading(), b.leading()] == [False, True]


def test_a_holder_that_cannot_renew_stops_acting_at_its_renew_deadline() -> None:
    store, clock = FakeLeaseStore(), Clock()
    changes: list[bool] = []
    a = _elector(store, clock, "a", changes)
    a.try_once()
    store.down = True  # the API server is unreachable from a
    clock.t = 9.9
    assert a.try_once()  # an error does not end the lease early...
    clock.t = 10
    assert not a.leading()  # ...but the deadline does, with no call needed
    assert not a.try_once()
    assert changes == [True, False]


def test_a_holder_cut_off_and_back_before_anyone_took_over_resumes() -> None:
    store, clock = FakeLeaseStore(), Clock()
    a = _elector(store, clock, "a")
    a.try_once()
    store.down = True
    clock.t = 12
    assert not a.try_once()
    store.down = False
    assert a.try_once()  # the lease still names a at the version a wrote: nobody took it


def test_an_api_error_never_escapes_a_try() -> None:
    store, clock = FakeLeaseStore(), Clock()
    store.down = True
    assert not _elector(store, clock, "a").try_once()


@pytest.mark.parametrize("seed", range(8))
def test_two_replicas_never_act_at_once_through_outages_and_releases(seed: int) -> None:
    rng = random.Random(seed)
    store, clock = FakeLeaseStore(), Clock()
    names = ("a", "b", "c")
    electors = [_elector(store, clock, who) for who in names]
    cut_off: set[int] = set()
    acted = 0

    def attempt(i: int) -> None:
        store.down = i in cut_off
        electors[i].try_once()
        store.down = False

    for _ in range(1000):
        clock.t += rng.choice((0.25, 0.5, 1.0))
        event = rng.random()
        if event < 0.03:
            cut_off ^= {rng.randrange(3)}
        elif event < 0.04:
            j = rng.randrange(3)
            if electors[j].leading():
                electors[j].release()
        for i in rng.sample(range(3), 3):
            if rng.random() < 0.5:
                attempt(i)
        leading = [e.leading() for e in electors]
        assert sum(leading) <= 1, f"two act at t={clock.t}: {leading}"
        acted += sum(leading)
    assert acted > 0


def test_started_together_one_leads_at_once_and_a_stopped_holder_hands_over_at_once() -> None:
    """The threads on the real clock: what a fresh install and a rolling update do."""
    store = FakeLeaseStore()
    fast = ElectionSettings(lease_duration=3, renew_deadline=2, retry_period=0.05)
    electors = [LeaderElector(store, "ops", "kinfer", who, fast) for who in ("a", "b")]
    for e in electors:
        e.start()
    try:
        deadline = time.monotonic() + 1
        while not any(e.leading() for e in electors) and time.monotonic() < deadline:
            time.sleep(0.01)
        leading = [e.leading() for e in electors]
        assert sum(leading) == 1, leading
        holder, standby = (electors[0], electors[1]) if leading[0] else (electors[1], electors[0])
        stopped = time.monotonic()
        holder.stop()
        assert not holder.leading()
        while not standby.leading() and time.monotonic() - stopped < 2:
            time.sleep(0.01)
        # At the standby's next try, far sooner than the lease duration.
        assert standby.leading()
        assert time.monotonic() - stopped < 1
    finally:
        for e in electors:
            e.stop()
    assert store.holder() == ""


def test_a_fractional_lease_duration_is_written_rounded_up_never_below_the_deadline() -> None:
    store, clock = FakeLeaseStore(), Clock()
    settings = ElectionSettings(lease_duration=2.4, renew_deadline=2.2, retry_period=1)
    LeaderElector(store, "ops", "kinfer", "a", settings, clock.monotonic, clock.now).try_once()
    assert store.leases[("ops", "kinfer")].duration_s == 3
