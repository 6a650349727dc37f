"""The one-tick-per-message path (process_tick) against the batched path (process_ticks), the
write-behind writer's grouping and flushes, and the shared live-feed hub; real Redis."""
from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from tests.conftest import wait_until
from utils.data import keys
from utils.data.store import BarStore
from utils.data.timeutil import parse_times
from utils.realtime.bar_aggregator import BarAggregator
from utils.realtime.live_hub import LiveHub
from utils.realtime.symbol_state import SymbolStates
from utils.realtime.tick_processor import process_tick, process_ticks
from utils.realtime.tick_times import tick_time, tick_times
from utils.realtime.tick_writer import PendingTicks, TickWriter, by_symbol
from utils.redis_client import redis_from_settings

NAMES = ("sma_5", "sma_20", "ema_12", "rsi")
START = datetime(2026, 3, 2, 23, 59, 50, tzinfo=timezone.utc)  # the stream crosses midnight: new sessions


@pytest.fixture
def store(settings):
    return BarStore(redis_from_settings(settings, decode=False))


def ticks(symbols: int, n: int, seed: int = 5) -> list[tuple[str, str, float, float]]:
    """(symbol, timestamp, price, volume) round-robin over ``symbols``, with some bad ticks."""
    prices = np.round(50 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.002, n))), 4).tolist()
    rows = [(f"FP{i % symbols}", (START + timedelta(milliseconds=250 * i)).isoformat(), prices[i], 100.0 + i)
            for i in range(n)]
    rows[17] = (rows[17][0], rows[7][1], rows[17][2], rows[17][3])  # a duplicate time for its symbol
    rows[27] = (rows[27][0], rows[5][1], rows[27][2], rows[27][3])  # out of order for its symbol
    rows[11] = (rows[11][0], rows[11][1], -1.0, rows[11][3])
    rows[12] = (rows[12][0], "not a time", rows[12][2], rows[12][3])
    rows[13] = ("bad symbol!", rows[13][1], rows[13][2], rows[13][3])
    rows[14] = (rows[14][0], rows[14][1], rows[14][2], float("nan"))
    return rows


def one_by_one(store, rows):
    writer = TickWriter(store, store.redis, 100_000)
    states = SymbolStates(store, flush_pending=writer.flush)
    try:
        return [process_tick(states, writer, NAMES, *row) for row in rows], writer, states
    finally:
        writer.stop()


def test_tick_time_equals_parse_times():
    stamps = ["2026-03-02T09:30:00.123456+00:00", "2026-03-02T09:30:00Z", "2026-03-02 09:30", "2026-03-02",
              "2026-03-02T09:30:00.5", "2026-03-02T09:30:00+02:00", "2026-13-02T09:30:00", "1600-01-01",
              "garbage", "", "2026-03-02T25:00:00", "2026-03-02T09:30:00.1234567"]
    expected, ok = parse_times(stamps)
    for stamp, value, good in zip(stamps, expected.tolist(), ok.tolist()):
        assert tick_time(stamp) == (value if good else None), stamp


def test_one_tick_path_equals_the_batched_path_over_interleaved_symbols(redis_client, store):
    """Ten symbols round-robin (every tick a symbol switch), bad ticks among them: the same
    errors, the same values bit for bit, the same stored ticks as one batched message."""
    rows = ticks(10, 600)
    single, _, states = one_by_one(store, rows)

    redis_client.flushdb()
    writer = TickWriter(store, store.redis, 100_000)
    batched_states = SymbolStates(store, flush_pending=writer.flush)
    symbols, stamps, prices, volumes = (list(column) for column in zip(*rows))
    results = process_ticks(batched_states, writer, list(NAMES), symbols, stamps, prices, volumes)
    writer.stop()

    assert [error for error, _ in single] == results.errors
    assert sum(bool(error) for error, _ in single) == 6
    for index, (error, values) in enumerate(single):
        if error:
            assert values == {}
            continue
        assert values.keys() == results.values.keys()
        for key, value in values.items():
            assert np.array_equal(np.float64(value), results.values[key][index], equal_nan=True), (index, key)
    for symbol in {row[0] for row in rows if row[0] != "bad symbol!"}:
        assert states.get(symbol).last_time_ns == batched_states.get(symbol).last_time_ns


def test_write_behind_stores_every_accepted_tick_in_order_on_stop(store):
    rows = ticks(10, 600)
    results, writer, _ = one_by_one(store, rows)  # stop() flushed the writer
    assert writer.backlog == 0
    for symbol in {row[0] for row in rows if row[0] != "bad symbol!"}:
        accepted = [row for row, (error, _) in zip(rows, results) if row[0] == symbol and not error]
        stored = store.read_ticks(symbol)
        times, _ = parse_times([row[1] for row in accepted])
        assert stored.time.tolist() == times.tolist()
        assert stored.close.tolist() == [row[2] for row in accepted]
        assert stored.volume.tolist() == [row[3] for row in accepted]


def test_bars_from_one_tick_messages_equal_bars_from_a_batch(redis_client, store):
    rows = [row for row in ticks(3, 300) if row[0] != "bad symbol!"]
    writer = TickWriter(store, store.redis, 100_000, aggregator=BarAggregator(("1s", "1m")))
    states = SymbolStates(store, flush_pending=writer.flush)
    for row in rows:
        process_tick(states, writer, NAMES, *row)
    writer.stop()
    single_bars = {(s, i): store.read_interval_bars(s, i) for s in ("FP0", "FP1", "FP2") for i in ("1s", "1m")}

    redis_client.flushdb()
    writer = TickWriter(store, store.redis, 100_000, aggregator=BarAggregator(("1s", "1m")))
    symbols, stamps, prices, volumes = (list(column) for column in zip(*rows))
    process_ticks(SymbolStates(store, flush_pending=writer.flush), writer, list(NAMES), symbols, stamps, prices,
                  volumes)
    writer.stop()
    for (symbol, interval), bars in single_bars.items():
        expected = store.read_interval_bars(symbol, interval)
        assert bars.time.tolist() == expected.time.tolist()
        for column in ("open", "high", "low", "close", "volume"):
            assert getattr(bars, column).tolist() == getattr(expected, column).tolist(), (symbol, interval, column)


def test_states_stay_hot_across_symbol_switches(redis_client, store):
    """After a symbol's first tick, switching between symbols reads nothing from Redis."""
    rows = [row for row in ticks(10, 200) if row[0] != "bad symbol!"]
    writer = TickWriter(store, store.redis, 100_000)
    states = SymbolStates(store, flush_pending=writer.flush)
    try:
        for row in rows[:20]:
            process_tick(states, writer, NAMES, *row)
        writer.flush()
        redis_client.config_resetstat()
        for row in rows[20:]:
            process_tick(states, writer, NAMES, *row)
        reads = {name: stats["calls"] for name, stats in redis_client.info("commandstats").items()
                 if name in ("cmdstat_hgetall", "cmdstat_xrange", "cmdstat_xrevrange", "cmdstat_get")}
        assert reads == {}
    finally:
        writer.stop()


def test_by_symbol_keeps_each_symbols_order_and_folds_single_ticks():
    a1 = ("A", "t1", 1, 10.0, 1.0, {"x": 1.0})
    b1 = ("B", "t2", 2, 20.0, 1.0, {"x": 2.0})
    a2 = ("A", "t3", 3, 11.0, 1.0, {"x": 3.0})
    batch = PendingTicks("A", ["t4", "t5"], np.array([4, 5]), np.array([12.0, 13.0]), np.array([1.0, 1.0]),
                         {"x": np.array([4.0, 5.0])})
    a3 = ("A", "t6", 6, 14.0, 1.0, {"y": 6.0})  # another stream's feature set: its own run
    grouped = by_symbol([a1, b1, a2, batch, a3])
    assert list(grouped) == ["A", "B"]
    assert [run.timestamps for run in grouped["A"]] == [["t1", "t3"], ["t4", "t5"], ["t6"]]
    assert grouped["A"][0].indicators["x"].tolist() == [1.0, 3.0]
    assert grouped["A"][2].indicators == {"y": np.array([6.0])}
    assert grouped["B"][0].price.tolist() == [20.0]


def test_live_hub_shares_one_connection_and_delivers_to_every_follower(redis_client):
    hub = LiveHub(redis_client)
    first, second, other = hub.add(["HUB.A"]), hub.add(["HUB.A", "HUB.B"]), hub.add(["HUB.C"])
    for follower in (first, second, other):
        assert follower.ready.wait(10)
    redis_client.publish(keys.live_channel("HUB.A"), '{"price": [1.5]}')
    redis_client.publish(keys.live_channel("HUB.B"), '{"price": [2.5]}')
    assert first.updates.get(timeout=5) == ("HUB.A", {"price": [1.5]})
    assert second.updates.get(timeout=5) == ("HUB.A", {"price": [1.5]})
    assert second.updates.get(timeout=5) == ("HUB.B", {"price": [2.5]})
    assert other.updates.empty()
    channels = redis_client.pubsub_numsub(*(keys.live_channel(s) for s in ("HUB.A", "HUB.B", "HUB.C")))
    assert [count for _, count in channels] == [1, 1, 1]  # one connection however many follow

    for follower in (first, second, other):
        hub.remove(follower)
    wait_until(lambda: all(count == 0 for _, count in redis_client.pubsub_numsub(keys.live_channel("HUB.A"))))
    wait_until(lambda: not hub.running)  # nobody follows: the hub's thread ends


def test_live_hub_cuts_off_a_follower_that_falls_too_far_behind(redis_client):
    hub = LiveHub(redis_client, max_queued=3)
    slow = hub.add(["HUB.SLOW"])
    assert slow.ready.wait(10)
    for price in range(5):
        redis_client.publish(keys.live_channel("HUB.SLOW"), f'{{"price": [{price}]}}')
    wait_until(lambda: slow.overflowed)
    assert slow.updates.qsize() == 3
    hub.remove(slow)
    wait_until(lambda: not hub.running)


def test_concurrent_streams_on_one_symbol_keep_its_order(store):
    """Two threads feeding one symbol: whatever interleaving wins, the stored ticks rise."""
    writer = TickWriter(store, store.redis, 100_000)
    states = SymbolStates(store, flush_pending=writer.flush)
    stamps = [(START + timedelta(milliseconds=i)).isoformat() for i in range(2000)]

    def feed(offset: int) -> None:
        for stamp in stamps[offset::2]:
            process_tick(states, writer, NAMES, "RACE", stamp, 10.0, 1.0)
    threads = [threading.Thread(target=feed, args=(k,)) for k in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    writer.stop()
    stored = store.read_ticks("RACE").time
    assert stored.size > 0 and bool(np.all(np.diff(stored) > 0))


@pytest.mark.parametrize("form", ["%Y-%m-%dT%H:%M:%S.%f+00:00", "%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%d %H:%M:%S",
                                  "%Y-%m-%dT%H:%M", "%Y-%m-%d", "%Y-%m-%dT%H:%M:%S.%f"])
def test_tick_times_of_a_uniform_message_equal_parse_times(form):
    rng = np.random.default_rng(11)
    seconds = rng.integers(-2_000_000_000, 8_000_000_000, 500)  # 1906..2223, leap days included
    micros = rng.integers(0, 1_000_000, 500)
    stamps = [(datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(seconds=int(s), microseconds=int(m)))
              .strftime(form) for s, m in zip(seconds, micros)]
    stamps += ["2024-02-29T23:59:59.999999+00:00"[:len(stamps[0])]] if form.endswith("+00:00") else []
    fast, ok = tick_times(stamps)
    expected, expected_ok = parse_times(stamps)
    assert ok.all() and expected_ok.all()
    assert fast.tolist() == expected.tolist()


@pytest.mark.parametrize("odd", ["2026-02-30T09:30:00.000000+00:00", "2026-13-01T09:30:00.000000+00:00",
                                 "2026-03-01T24:00:00.000000+00:00", "1600-03-01T09:30:00.000000+00:00",
                                 "2026-03-01T09:30:00.00000a+00:00", "2026-03-01T09:30:00.000000+01:00",
                                 "2026-03-01X09:30:00.000000+00:00", "2026-03-01T09:30:00.000000+00:0é"])
def test_tick_times_hands_a_message_with_an_odd_stamp_to_parse_times(odd):
    stamps = ["2026-03-01T09:30:00.000001+00:00", odd, "2026-03-01T09:30:00.000002+00:00"]
    fast, ok = tick_times(stamps)
    expected, expected_ok = parse_times(stamps)
    assert ok.tolist() == expected_ok.tolist()
    assert fast[ok].tolist() == expected[expected_ok].tolist()


def test_tick_times_of_isoformat_stamps_with_and_without_a_fraction():
    """``isoformat`` leaves out a zero fraction: one message holds stamps of two lengths."""
    stamps = [(START + timedelta(milliseconds=250 * i)).isoformat() for i in range(40)] + ["bad", "2026-02-30"]
    fast, ok = tick_times(stamps)
    expected, expected_ok = parse_times(stamps)
    assert ok.tolist() == expected_ok.tolist() and fast[ok].tolist() == expected[expected_ok].tolist()


def test_a_stream_that_ends_has_its_ticks_stored(settings_factory, redis_client, store):
    """Write-behind, but a finished stream's ticks are in Redis when the client sees its end,
    even with a flush interval far longer than the stream."""
    import grpc
    from api_proto import realtime_pb2, realtime_pb2_grpc
    from services.server import create_server
    running = create_server(settings_factory(tick_flush_ms=1000.0, warm_up_indicators="none"))
    try:
        rows = [row for row in ticks(4, 40) if row[0] != "bad symbol!"]
        requests = [realtime_pb2.StreamDataRequest(stock_code=s, timestamp=t, price=p, volume=v) for s, t, p, v in rows]
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            responses = list(realtime_pb2_grpc.RealTimeServiceStub(channel).StreamMarketData(iter(requests), timeout=30))
        accepted = [row for row, response in zip(rows, responses) if not response.error]
        assert len(accepted) == len(rows) - 5
        stored = sum(len(store.read_ticks(symbol)) for symbol in {row[0] for row in accepted})
        assert stored == len(accepted)
    finally:
        running.stop(grace=0)


@pytest.mark.parametrize("form", ["%Y-%m-%dT%H:%M:%S.%f+00:00", "%Y-%m-%d %H:%M:%SZ", "%Y-%m-%dT%H:%M", "%Y-%m-%d"])
def test_tick_times_of_a_one_day_message_equal_parse_times(form):
    day = datetime(2024, 2, 29, tzinfo=timezone.utc)
    offsets = np.random.default_rng(5).integers(0, 86_400_000_000, 300)
    stamps = [(day + timedelta(microseconds=int(us))).strftime(form) for us in offsets]
    fast, ok = tick_times(stamps)
    expected, expected_ok = parse_times(stamps)
    assert ok.all() and expected_ok.all() and fast.tolist() == expected.tolist()
