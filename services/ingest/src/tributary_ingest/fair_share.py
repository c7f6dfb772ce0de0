"""The fair share of one source's leases: the other instances serving it (from their announcements), and which
free sids this instance takes on a reconcile tick so that the demanded sids spread evenly over the instances."""

from __future__ import annotations

from tributary_common.control import SourceAnnouncement


class FairShare:
    def __init__(self, instance_id: str) -> None:
        self.instance_id = instance_id
        self.peers: dict[str, float] = {}  # other instances serving this source -> when their announcement lapses
        self._skipped: set[str] = set()  # left to the others on the last tick

    def on_announcement(self, announcement: SourceAnnouncement, now: float) -> None:
        if announcement.instance_id != self.instance_id:
            self.peers[announcement.instance_id] = now + announcement.ttl_s

    def alive(self, now: float) -> list[str]:
        return sorted(p for p, until in self.peers.items() if until > now)

    def share(self, demanded: int, now: float) -> int:
        """Demanded sids divided by the instances alive (by their announcements), rounded up."""
        alive = 1 + sum(1 for until in self.peers.values() if until > now)
        return -(-demanded // alive)

    def choose(
        self, candidates: list[str], holders: dict[str, str], held: int, demanded: int, now: float
    ) -> tuple[list[str], set[str]]:
        """Which `candidates` (free sids, with their lease `holders`) to take, `held` being the leases held now; and
        which to leave to the others on this tick (for `end_tick`)."""
        share = self.share(demanded, now)
        wanted: list[str] = []
        skipped: set[str] = set()
        for sid in candidates:
            if holders.get(sid, self.instance_id) != self.instance_id:
                continue
            # Beyond our fair share, leave a sid to the others for one tick; if nobody took it, take it.
            if held + len(wanted) >= share and sid not in self._skipped:
                skipped.add(sid)
                continue
            wanted.append(sid)
        return wanted, skipped

    def end_tick(self, skipped: set[str], now: float) -> None:
        """A tick completed: `skipped` are taken on the next one if nobody took them; lapsed peers are forgotten."""
        self._skipped = skipped
        for peer in [p for p, until in self.peers.items() if until <= now]:
            del self.peers[peer]
