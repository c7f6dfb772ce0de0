"""The fair share of leases (pure): capacity-weighted targets, who sheds how many and which, hysteresis."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from tributary_common.control import SourceAnnouncement
from tributary_ingest.fair_share import FairShare, shed_choice, targets

HOLD_OFF = 3.0
PATIENCE = 0.75


def announce(instance: str, capacity: int, leases: int = 0, ttl_s: float = 3.0) -> SourceAnnouncement:
    return SourceAnnouncement(
        source="simulator",
        instance_id=instance,
        subscription_schema={},
        capacity=capacity,
        free=max(0, capacity - leases),
        leases=leases,
        ttl_s=ttl_s,
        sent_at=datetime.now(UTC),
    )


def running(n: int, prefix: str = "s") -> dict[str, str]:
    return {f"{prefix}{i:03d}": "running" for i in range(n)}


# -- targets ---------------------------------------------------------------------------------------------------


def test_targets_split_equal_capacities_evenly() -> None:
    assert targets({"a": 100, "b": 100, "c": 100}, 60) == {"a": 20, "b": 20, "c": 20}
    assert targets({"a": 100, "b": 100}, 60) == {"a": 30, "b": 30}


def test_targets_weight_by_capacity() -> None:
    assert targets({"a": 120, "b": 60, "c": 60}, 60) == {"a": 30, "b": 15, "c": 15}
    assert targets({"a": 120, "b": 60}, 60) == {"a": 40, "b": 20}


def test_targets_never_exceed_capacity_and_cover_what_fits() -> None:
    assert targets({"a": 5, "b": 5}, 12) == {"a": 5, "b": 5}
    assert targets({"a": 10, "b": 0}, 4) == {"a": 4, "b": 0}
    assert targets({"a": 0}, 4) == {"a": 0}
    assert targets({}, 4) == {}


def test_targets_remainder_goes_by_largest_fraction_then_instance_id() -> None:
    assert targets({"a": 50, "b": 50, "c": 50}, 10) == {"a": 4, "b": 3, "c": 3}
    assert targets({"c": 50, "b": 50, "a": 50}, 11) == {"a": 4, "b": 4, "c": 3}
    # 7 by 3:1 is 5.25 / 1.75: the larger fraction (b's .75) gets the extra one.
    assert targets({"a": 30, "b": 10}, 7) == {"a": 5, "b": 2}


def test_targets_properties_on_random_inputs() -> None:
    rng = random.Random(15)
    for _ in range(2000):
        caps = {f"i{n}": rng.choice([0, 1, 3, 10, 50, 1000]) for n in range(rng.randint(1, 6))}
        demanded = rng.randint(0, 200)
        got = targets(caps, demanded)
        total = sum(caps.values())
        assert sum(got.values()) == min(demanded, total)
        for i, c in caps.items():
            assert 0 <= got[i] <= c
            if total:
                assert abs(got[i] - min(demanded, total) * c / total) < 1  # within one of the exact share
        assert got == targets(dict(reversed(list(caps.items()))), demanded)  # order of the input does not matter


# -- which sids are shed -------------------------------------------------------------------------------------------


def test_shed_choice_is_deterministic_and_prefers_reads_that_deliver_nothing() -> None:
    held = {"s3": "running", "s1": "running", "s9": "backoff", "s2": "starting", "s0": "running"}
    assert shed_choice(held, 3) == ["s9", "s2", "s0"]
    assert shed_choice(dict(reversed(list(held.items()))), 3) == ["s9", "s2", "s0"]
    assert shed_choice(held, 0) == [] and shed_choice(held, -1) == []
    assert shed_choice(held, 10) == ["s9", "s2", "s0", "s1", "s3"]


# -- shedding ---------------------------------------------------------------------------------------------------


def test_alone_never_sheds() -> None:
    fair = FairShare("a", 100, HOLD_OFF, PATIENCE)
    assert fair.to_shed(running(60), 60, 0.0) == []


def test_joined_peers_make_the_holder_shed_down_to_its_target() -> None:
    fair = FairShare("a", 100, HOLD_OFF, PATIENCE)
    fair.on_announcement(announce("b", 100), 0.0)
    fair.on_announcement(announce("c", 100), 0.0)
    shed = fair.to_shed(running(60), 60, 1.0)
    assert len(shed) == 40
    assert shed == sorted(running(60))[:40]


def test_shedding_is_weighted_by_capacity() -> None:
    fair = FairShare("a", 120, HOLD_OFF, PATIENCE)
    fair.on_announcement(announce("b", 60), 0.0)
    fair.on_announcement(announce("c", 60), 0.0)
    assert len(fair.to_shed(running(60), 60, 1.0)) == 30  # a keeps 30, b and c take 15 each


def test_one_over_the_target_is_shed_only_to_a_peer_short_of_its_own() -> None:
    """Before, one over was never shed: 31/29 of 60 (or 9/8/7 of 24 over three) stayed so for good."""
    fair = FairShare("a", 100, HOLD_OFF, PATIENCE)
    fair.on_announcement(announce("b", 100, leases=30), 0.0)
    assert fair.to_shed(running(31), 60, 1.0) == []  # target 30, but b is at its own: nobody would take it
    fair.on_announcement(announce("b", 100, leases=29), 0.0)
    assert len(fair.to_shed(running(31), 60, 1.0)) == 1
    again = FairShare("a", 100, HOLD_OFF, PATIENCE)
    again.on_announcement(announce("b", 100, leases=28), 0.0)
    assert len(again.to_shed(running(32), 60, 1.0)) == 2


def test_no_more_is_shed_than_the_peers_have_room_for() -> None:
    fair = FairShare("a", 100, HOLD_OFF, PATIENCE)
    fair.on_announcement(announce("b", 100, leases=25), 0.0)
    assert len(fair.to_shed(running(35), 60, 1.0)) == 5  # b's target 30, it holds 25
    full = FairShare("a", 100, HOLD_OFF, PATIENCE)
    full.on_announcement(announce("b", 100, leases=30), 0.0)
    assert full.to_shed(running(40), 60, 1.0) == []  # b is at its target: nobody would take them


def test_a_leaving_peer_capacity_zero_has_no_room_and_no_share() -> None:
    fair = FairShare("a", 100, HOLD_OFF, PATIENCE)
    fair.on_announcement(announce("b", 100, leases=30), 0.0)
    assert fair.share(60, 1.0) == 30
    fair.on_announcement(announce("b", 0, leases=30), 1.0)  # b shuts down
    assert fair.share(60, 1.5) == 60
    assert fair.to_shed(running(30), 60, 1.5) == []


def test_hysteresis_one_shedding_per_hold_off() -> None:
    fair = FairShare("a", 100, HOLD_OFF, PATIENCE)
    fair.on_announcement(announce("b", 100), 0.0)
    first = fair.to_shed(running(60), 60, 1.0)
    assert len(first) == 30
    # Stale announcements still say b holds nothing; a third instance shows up: no second shedding yet.
    fair.on_announcement(announce("c", 100), 1.2)
    assert fair.to_shed(running(30), 60, 1.5) == []
    assert fair.to_shed(running(30), 60, 1.0 + HOLD_OFF - 0.01) == []
    fair.on_announcement(announce("b", 100, leases=30), HOLD_OFF)
    fair.on_announcement(announce("c", 100, leases=0), HOLD_OFF)
    assert len(fair.to_shed(running(30), 60, 1.0 + HOLD_OFF)) == 10  # now down to 20 of 60 over three


def test_a_shed_sid_is_not_taken_back_within_the_hold_off() -> None:
    fair = FairShare("a", 100, HOLD_OFF, PATIENCE)
    fair.on_announcement(announce("b", 100), 0.0)
    shed = fair.to_shed(running(4), 4, 1.0)
    assert shed == ["s000", "s001"]
    # Nobody took them: not even left "for later" while the hold-off lasts (they wait for b).
    for t in (1.1, 1.0 + PATIENCE + 0.1, 1.0 + HOLD_OFF - 0.1):
        wanted, skipped = fair.choose(shed, {}, 2, 4, t)
        assert wanted == [] and skipped == {}
        fair.end_tick(skipped, t)
    # After the hold-off they are fair game again: left to the others for the patience, then taken if still free.
    fair.on_announcement(announce("b", 100, leases=2), 2.0)
    start = 1.0 + HOLD_OFF
    wanted, skipped = fair.choose(shed, {}, 2, 4, start)
    assert wanted == [] and skipped == dict.fromkeys(shed, start)
    fair.end_tick(skipped, start)
    wanted, skipped = fair.choose(shed, {}, 2, 4, start + PATIENCE - 0.01)
    assert wanted == [] and skipped == dict.fromkeys(shed, start)
    fair.end_tick(skipped, start + PATIENCE - 0.01)
    assert fair.choose(shed, {}, 2, 4, start + PATIENCE)[0] == shed


def test_free_sids_under_the_share_are_taken_at_once_beyond_it_after_the_patience() -> None:
    fair = FairShare("a", 100, HOLD_OFF, PATIENCE)
    fair.on_announcement(announce("b", 100), 0.0)
    free = [f"s{i}" for i in range(6)]
    wanted, skipped = fair.choose(free, {}, 0, 6, 0.5)
    assert wanted == free[:3] and set(skipped) == set(free[3:])
    fair.end_tick(skipped, 0.5)
    # b took two of them meanwhile; the third is still free after the patience: ours.
    holders = {"s3": "b", "s4": "b"}
    assert fair.choose(free[3:], holders, 3, 6, 0.5 + PATIENCE / 2)[0] == []
    fair.end_tick(fair.choose(free[3:], holders, 3, 6, 0.5 + PATIENCE / 2)[1], 0.5 + PATIENCE / 2)
    assert fair.choose(free[3:], holders, 3, 6, 0.5 + PATIENCE)[0] == ["s5"]


def test_simulated_start_of_three_at_once_moves_nothing() -> None:
    for seed in range(20):
        rng = random.Random(seed)
        cluster = Cluster(60)
        for name in "abc":
            cluster.join(name, 100)
        for _ in range(int(3 * HOLD_OFF / 0.25)):
            cluster.tick(rng)
        assert cluster.moves == 0 and sorted(cluster.shares().values()) == [20, 20, 20], (seed, cluster.shares())


def test_lapsed_peers_are_forgotten_and_do_not_count() -> None:
    fair = FairShare("a", 100, HOLD_OFF, PATIENCE)
    fair.on_announcement(announce("b", 100, ttl_s=3.0), 0.0)
    assert fair.alive(1.0) == ["b"] and fair.share(60, 1.0) == 30
    assert fair.alive(3.0) == [] and fair.share(60, 3.0) == 60
    assert fair.to_shed(running(60), 60, 3.0) == []
    fair.end_tick({}, 3.0)
    assert fair.peers == {}


def test_own_announcements_are_ignored() -> None:
    fair = FairShare("a", 100, HOLD_OFF, PATIENCE)
    fair.on_announcement(announce("a", 100), 0.0)
    assert fair.peers == {} and fair.share(60, 0.5) == 60


# -- the whole cluster, simulated tick by tick ------------------------------------------------------------------


class Cluster:
    """Instances ticking in turn against one lease table: shed, then take free sids as `choose` says."""

    def __init__(self, demanded: int) -> None:
        self.sids = [f"s{i:03d}" for i in range(demanded)]
        self.lease: dict[str, str] = {}
        self.fair: dict[str, FairShare] = {}
        self.capacity: dict[str, int] = {}
        self.now = 0.0
        self.moves = 0

    def join(self, name: str, capacity: int) -> None:
        self.fair[name] = FairShare(name, capacity, HOLD_OFF, PATIENCE)
        self.capacity[name] = capacity

    def leave(self, name: str) -> None:
        del self.fair[name]
        self.lease = {s: o for s, o in self.lease.items() if o != name}

    def held(self, name: str) -> dict[str, str]:
        return {s: "running" for s, o in self.lease.items() if o == name}

    def tick(self, rng: random.Random) -> None:
        for name in self.fair:  # announcements (every tick: the simulation's announce interval)
            heard = announce(name, self.capacity[name], len(self.held(name)))
            for fair in self.fair.values():
                fair.on_announcement(heard, self.now)
        names = list(self.fair)
        rng.shuffle(names)
        for name in names:
            fair = self.fair[name]
            for sid in fair.to_shed(self.held(name), len(self.sids), self.now):
                del self.lease[sid]
                self.moves += 1
            free = [s for s in self.sids if s not in self.lease]
            rng.shuffle(free)
            room = self.capacity[name] - len(self.held(name))
            wanted, skipped = fair.choose(free, dict(self.lease), len(self.held(name)), len(self.sids), self.now)
            for sid in wanted[: max(0, room)]:
                self.lease[sid] = name
            fair.end_tick(skipped, self.now)
        self.now += 0.25

    def shares(self) -> dict[str, int]:
        return {n: len(self.held(n)) for n in self.fair}


@pytest.mark.parametrize("seed", range(20))
def test_simulated_cluster_converges_to_the_targets_and_stays(seed: int) -> None:
    rng = random.Random(seed)
    cluster = Cluster(60)
    cluster.join("a", 120)
    for _ in range(8):
        cluster.tick(rng)
    assert cluster.shares() == {"a": 60}
    for step, expected in (("join", {"a": 30, "b": 15, "c": 15}), ("leave", {"a": 40, "b": 20})):
        if step == "join":
            cluster.join("b", 60)
            cluster.join("c", 60)
        else:
            cluster.leave("c")
        for _ in range(int(3 * HOLD_OFF / 0.25)):  # 3 x TTL
            cluster.tick(rng)
        shares = cluster.shares()
        assert shares == expected, (step, shares)  # within one before: 31/29 and the like stayed
        assert sum(shares.values()) == 60
        # No flapping: once there, nothing moves any more.
        moves = cluster.moves
        for _ in range(40):
            cluster.tick(rng)
        assert cluster.moves == moves and cluster.shares() == shares


def test_simulated_cluster_each_sid_held_once() -> None:
    rng = random.Random(1)
    cluster = Cluster(50)
    for name, cap in zip("abcde", [10, 20, 30, 40, 50], strict=True):
        cluster.join(name, cap)
        for _ in range(20):
            cluster.tick(rng)
    shares = cluster.shares()
    assert sum(shares.values()) == 50 and set(cluster.lease) == set(cluster.sids)
    expected = targets(cluster.capacity, 50)
    assert shares == expected, (shares, expected)


@pytest.mark.parametrize("seed", range(10))
def test_simulated_nine_eight_seven_ends_even_and_stays(seed: int) -> None:
    """24 sids held 9/8/7 by three instances: what a loaded machine leaves when one instance ticks late and another's
    patience runs out first (the three-process test timed out on it once in five CI runs). Before, it stayed so: one
    over the target was never shed. Now 8/8/8, with one move, and then nothing moves."""
    rng = random.Random(seed)
    cluster = Cluster(24)
    for name in "abc":
        cluster.join(name, 100)
    cluster.lease = {sid: "a" if i < 9 else "b" if i < 17 else "c" for i, sid in enumerate(cluster.sids)}
    for _ in range(int(3 * HOLD_OFF / 0.25)):
        cluster.tick(rng)
    assert cluster.shares() == {"a": 8, "b": 8, "c": 8} and cluster.moves == 1
    for _ in range(40):
        cluster.tick(rng)
    assert cluster.moves == 1
