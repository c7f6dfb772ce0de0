"""Which sids of one source are demanded right now: pure bookkeeping of demand heartbeats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Demanded:
    params: Any  # the validated subscription model
    expires_at: float  # monotonic time after which demand lapses without a new heartbeat


class DemandTracker:
    """A sid stays demanded until `ttl_s` passes without a heartbeat naming it (from any requester)."""

    def __init__(self) -> None:
        self._sids: dict[str, Demanded] = {}

    def heartbeat(self, sid: str, params: Any, ttl_s: float, now: float) -> bool:
        """Record a heartbeat; True when the sid was not demanded before."""
        entry = self._sids.get(sid)
        if entry is None or entry.expires_at <= now:
            self._sids[sid] = Demanded(params, now + ttl_s)
            return True
        entry.expires_at = max(entry.expires_at, now + ttl_s)
        return False

    def knows(self, sid: str) -> bool:
        return sid in self._sids

    def active(self, now: float) -> dict[str, Any]:
        return {sid: d.params for sid, d in self._sids.items() if d.expires_at > now}

    def lapsed_since(self, sid: str, now: float) -> float | None:
        """Seconds since demand for `sid` lapsed (None while demanded; +inf when never demanded)."""
        entry = self._sids.get(sid)
        if entry is None:
            return float("inf")
        return None if entry.expires_at > now else now - entry.expires_at

    def params(self, sid: str) -> Any:
        entry = self._sids.get(sid)
        return None if entry is None else entry.params

    def forget_lapsed(self, now: float, older_than_s: float, keep: set[str]) -> None:
        for sid in [s for s, d in self._sids.items() if now - d.expires_at > older_than_s and s not in keep]:
            del self._sids[sid]
