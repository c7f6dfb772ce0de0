"""The fair share of one source's leases, weighted by capacity: the instances serving it (from their
announcements), which free sids this instance takes on a reconcile tick, and which it sheds when it holds more than
its share (an instance joined), so that the demanded sids spread over the instances by their capacity.

Pure: no I/O, time passed in. Every instance computes the same targets from the same announcements, so they agree
on who sheds and who takes without talking to each other.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from tributary_common.control import SourceAnnouncement

# Shed first the reads that deliver nothing now (failing, then not yet started), then running ones.
SHED_ORDER = {"backoff": 0, "starting": 1, "running": 2}


@dataclass(frozen=True)
class Peer:
    until: float  # when its announcement lapses
    capacity: int
    leases: int


def targets(capacities: Mapping[str, int], demanded: int) -> dict[str, int]:
    """How many of `demanded` sids each instance should hold: proportional to its capacity, never over it, whole
    numbers by largest remainder (ties to the smaller instance id), summing to min(demanded, total capacity)."""
    total = sum(max(0, c) for c in capacities.values())
    if total <= 0:
        return dict.fromkeys(capacities, 0)
    wanted = min(max(0, demanded), total)
    ideal = {i: wanted * max(0, c) / total for i, c in capacities.items()}
    out = {i: math.floor(x) for i, x in ideal.items()}
    left = wanted - sum(out.values())
    # An instance with a fractional part is below its capacity, so the extra one fits.
    for i in sorted(ideal, key=lambda i: (out[i] - ideal[i], i))[:left]:
        out[i] += 1
    return out


def shed_choice(held: Mapping[str, str], count: int) -> list[str]:
    """Which `count` of the `held` sids (sid -> state of its read) to shed: the same ones for the same input."""
    order = sorted(held, key=lambda sid: (SHED_ORDER.get(held[sid], 3), sid))
    return order[: max(0, count)]


class FairShare:
    def __init__(self, instance_id: str, capacity: int, hold_off_s: float, patience_s: float) -> None:
        self.instance_id = instance_id
        self.capacity = capacity
        # Hysteresis: a shed sid is not taken back, and nothing more is shed, for this long.
        self.hold_off_s = hold_off_s
        # A free sid beyond this instance's share is left to the others this long (every live peer ticks in it and
        # takes it if under its share), then taken: peers full, stuck or gone.
        self.patience_s = patience_s
        self.peers: dict[str, Peer] = {}  # other instances serving this source
        self._skipped: dict[str, float] = {}  # free sids left to the others -> since when
        self._shed_at: dict[str, float] = {}  # sids shed lately -> when
        self._last_shed = -math.inf

    def on_announcement(self, announcement: SourceAnnouncement, now: float) -> None:
        if announcement.instance_id != self.instance_id:
            self.peers[announcement.instance_id] = Peer(
                now + announcement.ttl_s, max(0, announcement.capacity), max(0, announcement.leases)
            )

    def alive(self, now: float) -> list[str]:
        return sorted(p for p, peer in self.peers.items() if peer.until > now)

    def targets(self, demanded: int, now: float) -> dict[str, int]:
        """Every live instance's target (this one included) for `demanded` sids."""
        capacities = {p: self.peers[p].capacity for p in self.alive(now)}
        capacities[self.instance_id] = self.capacity
        return targets(capacities, demanded)

    def share(self, demanded: int, now: float) -> int:
        """This instance's target."""
        return self.targets(demanded, now)[self.instance_id]

    def choose(
        self, candidates: list[str], holders: dict[str, str], held: int, demanded: int, now: float
    ) -> tuple[list[str], dict[str, float]]:
        """Which `candidates` (free sids, with their lease `holders`) to take, `held` being the leases held now; and
        which are left to the others (for `end_tick`)."""
        share = self.share(demanded, now)
        wanted: list[str] = []
        skipped: dict[str, float] = {}
        for sid in candidates:
            if holders.get(sid, self.instance_id) != self.instance_id or self._recently_shed(sid, now):
                continue
            # Beyond our fair share, leave a sid to the others for a while; if nobody took it, take it.
            since = self._skipped.get(sid, now)
            if held + len(wanted) >= share and now - since < self.patience_s:
                skipped[sid] = since
                continue
            wanted.append(sid)
        return wanted, skipped

    def to_shed(self, held: Mapping[str, str], demanded: int, now: float) -> list[str]:
        """Which of the `held` sids (demanded ones, sid -> state of the read) to hand over now: none within
        `hold_off_s` of the last shedding; else down to the target, no more than the peers have room for (by their
        announced leases below their targets). One over the target is shed too when a peer is short: left there,
        9/8/7 of 24 sids over three instances stayed so for good."""
        if now - self._last_shed < self.hold_off_s:
            return []
        alive = self.alive(now)
        if not alive:
            return []
        goal = self.targets(demanded, now)
        mine = goal[self.instance_id]
        if len(held) <= mine:
            return []
        room = sum(max(0, goal[p] - self.peers[p].leases) for p in alive)
        shed = shed_choice(held, min(len(held) - mine, room))
        if shed:
            self._last_shed = now
            self._shed_at.update(dict.fromkeys(shed, now))
        return shed

    def _recently_shed(self, sid: str, now: float) -> bool:
        at = self._shed_at.get(sid)
        return at is not None and now - at < self.hold_off_s

    def end_tick(self, skipped: dict[str, float], now: float) -> None:
        """A tick completed: `skipped` (from `choose`) are taken once patience ran out, if nobody took them meanwhile;
        lapsed peers are forgotten."""
        self._skipped = skipped
        for peer in [p for p, v in self.peers.items() if v.until <= now]:
            del self.peers[peer]
        for sid in [s for s, at in self._shed_at.items() if now - at >= self.hold_off_s]:
            del self._shed_at[sid]
