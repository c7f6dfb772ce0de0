"""Hostile simulator params are rejected with a clear message instead of breaking the read. Failed on the code
before: rate_hz 1e-300 failed every read (OverflowError: the grid step overflowed timedelta), period_s 1e-300
failed every read (ValueError: sin(inf)), a seed of a thousand digits was accepted (formatted into the seed string of
every step level: 114 ms of the event loop per burst with 4,000 digits), and NaN or infinite amplitudes (a demand's
JSON may carry them) made every sample a refused non-finite value."""

from __future__ import annotations

import math
from typing import Any

from tests.ingest.helpers import engine, make_settings, sub
from tests.support.bus import Bus
from tests.support.polling import eventually
from tributary_ingest.connectors.simulator import SimulatorSource
from tributary_ingest.sdk import BadParams


async def test_tiny_rates_and_periods_and_huge_seeds_are_rejected(
    amqp_url: str, cache_namespace: str, amqp_bus: Bus
) -> None:
    good = sub("simulator", {"signal": "sine", "rate_hz": 10})
    bad = {
        "params.rate_hz: Input should be greater than or equal to 0.000001": sub(
            "simulator", {"signal": "sine", "rate_hz": 1e-300}
        ),
        "params.period_s: Input should be greater than or equal to 0.000001": sub(
            "simulator", {"signal": "sine", "period_s": 1e-300, "rate_hz": 10}
        ),
        "params.seed: Input should be less than or equal to 9223372036854775807": sub(
            "simulator", {"signal": "step", "seed": 10**1000, "rate_hz": 100_000, "period_s": 1e-5}
        ),
    }
    async with engine(make_settings(amqp_url, cache_namespace), {"simulator": SimulatorSource}) as e:
        amqp_bus.demand("simulator", [good, *bad.values()])
        await eventually(lambda: len(e.status()["sources"]["simulator"]["rejected"]) == 3, what="three rejections")
        await eventually(lambda: len(amqp_bus.values(good.sid)) >= 3, what="the good subscription read")
        status = e.status()["sources"]["simulator"]
        for message, s in bad.items():
            assert message in status["rejected"][s.sid]
        assert set(status["leases"]) == {good.sid} and status["failing"] == {}


def _reason(params: dict[str, Any]) -> str:
    try:
        SimulatorSource.parse_params(params)
    except BadParams as exc:
        return str(exc)
    raise AssertionError(f"{params} accepted")


def test_non_finite_params_are_rejected() -> None:
    for name in ("amplitude", "offset", "phase", "step", "period_s"):
        for value in (math.nan, math.inf, -math.inf):
            assert f"params.{name}: Input should be a finite number" in _reason({"signal": "sine", name: value})
    assert "params.seed" in _reason({"signal": "step", "seed": -(2**63) - 1})
    # The bounds themselves are fine.
    p = SimulatorSource.parse_params({"signal": "step", "seed": 2**63 - 1, "rate_hz": 1e-6, "period_s": 1e-6})
    assert p.seed == 2**63 - 1


def test_the_bounds_are_in_the_announced_schema() -> None:
    """The hub checks a unitop's items against the announced schema: with the bounds in it, a rate or period the
    read cannot keep is a 422 when the unitop is written, not a rejection found later in the ingest's status."""
    properties = SimulatorSource.params_model.model_json_schema()["properties"]
    assert properties["rate_hz"]["minimum"] == properties["period_s"]["minimum"] == 1e-6
    assert (properties["seed"]["minimum"], properties["seed"]["maximum"]) == (-(2**63), 2**63 - 1)
