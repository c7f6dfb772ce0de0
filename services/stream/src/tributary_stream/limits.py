"""Admission of connections (in all and per principal) and the inbound frame rate of one websocket.

Counting is atomic in the event loop's sense: every check and its increment run with no `await` in between, so
handshakes arriving at the same instant cannot all pass a check that only some of them fit.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

from tributary_common.close_codes import TRY_AGAIN_LATER


class Refused(Exception):
    """A connection refused by a limit: the SSE status, the websocket close code and an error code."""

    def __init__(self, code: str, message: str, *, status: int, close_code: int) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status
        self.close_code = close_code


class Admission:
    def __init__(self, max_total: int, max_per_principal: int) -> None:
        self.max_total = max_total
        self.max_per_principal = max_per_principal
        self.total = 0
        self.per_principal: dict[str, int] = {}

    def enter(self) -> Ticket:
        """A slot among all connections, taken before authentication (which may wait on the hub)."""
        if self.total >= self.max_total:
            raise Refused(
                "too_many_connections",
                f"at most {self.max_total} connections",
                status=503,
                close_code=TRY_AGAIN_LATER,
            )
        self.total += 1
        return Ticket(self)


class Ticket:
    """One admitted connection; `release` gives its slots back (once, however often it is called)."""

    def __init__(self, admission: Admission) -> None:
        self._admission = admission
        self._principal: str | None = None
        self._released = False

    def admit(self, principal: str) -> None:
        """Count the connection against its principal (the token's subject, an API key's id)."""
        a = self._admission
        n = a.per_principal.get(principal, 0)
        if n >= a.max_per_principal:
            raise Refused(
                "too_many_connections_for_principal",
                f"at most {a.max_per_principal} open websockets and SSE streams per principal",
                status=429,
                close_code=TRY_AGAIN_LATER,
            )
        a.per_principal[principal] = n + 1
        self._principal = principal

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        a = self._admission
        a.total -= 1
        if self._principal is not None:
            left = a.per_principal.get(self._principal, 1) - 1
            if left > 0:
                a.per_principal[self._principal] = left
            else:
                a.per_principal.pop(self._principal, None)


class Verdict(enum.Enum):
    OK = "ok"
    WARN = "warn"  # the first frame dropped in a run: tell the client
    DROP = "drop"
    CLOSE = "close"  # it keeps sending while throttled


class FrameRate:
    """A token bucket over one connection's inbound frames (`rate` per second, up to `burst` at once).

    Frames over the rate are dropped. A client that has `burst` frames dropped without pausing long enough to
    refill its bucket is abusing the connection: the verdict is then CLOSE.
    """

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.last = clock()
        self.strikes = 0

    def take(self) -> Verdict:
        now = self.clock()
        self.tokens = min(float(self.burst), self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= self.burst:
            self.strikes = 0
        if self.tokens >= 1:
            self.tokens -= 1
            return Verdict.OK
        self.strikes += 1
        if self.strikes > self.burst:
            return Verdict.CLOSE
        return Verdict.WARN if self.strikes == 1 else Verdict.DROP
