"""The gateway's message parsing, interests and per-connection outbox (no sockets)."""
from __future__ import annotations

import asyncio

import pytest

from services.gateway.outbox import Outbox
from services.gateway.protocol import Interests, ProtocolError, parse_subscription, push


def subscribe(**fields):
    return parse_subscription({"type": "subscribe", **fields})


def test_subscriptions_are_validated_with_messages_naming_the_problem():
    for fields, needle in [({"channel": "nope"}, "unknown channel"),
                           ({"channel": "task_status"}, "exactly one of job_id or task_type"),
                           ({"channel": "task_status", "job_id": "a", "task_type": "backtest"}, "exactly one"),
                           ({"channel": "task_status", "task_type": "astrology"}, "unknown task_type"),
                           ({"channel": "task_status", "job_id": "../etc"}, "invalid job_id"),
                           ({"channel": "market_data"}, "symbols must be"),
                           ({"channel": "market_data", "symbols": ["A B"]}, "invalid symbol"),
                           ({"channel": "market_data", "symbols": ["X"] * 501}, "at most 500")]:
        with pytest.raises(ProtocolError, match=needle):
            subscribe(**fields)


def test_interests_follow_and_forget():
    wants = Interests()
    wants.apply(subscribe(channel="task_status", task_type="backtest"))
    wants.apply(subscribe(channel="task_status", job_id="tr-1"))
    wants.apply(subscribe(channel="calc_result", symbols=["A", "A", "B"]))
    wants.apply(subscribe(channel="market_data", symbols=["C"]))
    assert wants.wants_status("bt-9", "backtest") and wants.wants_status("tr-1", "training")
    assert not wants.wants_status("tr-2", "training") and not wants.wants_result("bt-9", "backtest")
    assert wants.symbols == {"A", "B", "C"}
    wants.apply(parse_subscription({"type": "unsubscribe", "channel": "calc_result", "symbols": ["A"]}))
    wants.apply(parse_subscription({"type": "unsubscribe", "channel": "task_status", "task_type": "backtest"}))
    assert wants.symbols == {"B", "C"} and not wants.wants_status("bt-9", "backtest")
    wants.apply(subscribe(channel="task_status", task_type="*"))
    assert wants.wants_status("fc-1", "factor")


def test_a_full_outbox_drops_the_oldest_market_data_first_and_overflows_on_status_only():
    async def scenario():
        dropped = []
        box = Outbox(3, lambda channel, reason: dropped.append((channel, reason)))
        status = push("task_status", job_id="bt-1", status="RUNNING")
        box.put(push("market_data", symbol="A", n=1))
        box.put(status)
        box.put(push("calc_result", kind="indicators", symbol="A", n=2))
        box.put(push("market_data", symbol="A", n=3))  # full: the oldest market data goes
        assert dropped == [("market_data", "slow_consumer")]
        assert [m.get("n") for m in [await box.get() for _ in range(3)]] == [None, 2, 3]
        for n in range(3):
            box.put(push("alert", kind="job_failed", n=n))
        box.put(push("market_data", symbol="A", n=9))  # nothing droppable queued: the newcomer goes
        assert dropped[-1] == ("market_data", "slow_consumer") and not box.overflowed
        box.put(push("alert", kind="job_failed", n=3))  # an alert cannot be dropped: overflow
        assert box.overflowed and dropped[-1] == ("alert", "overflow_closed")
    asyncio.run(scenario())
