"""The parquet bar store over a real Redis (catalogue) and a local directory (files); through
gRPC with BAR_STORE=parquet: import, streamed import, intervals, migration, and backtests that
read bars after Redis lost them."""
from __future__ import annotations

import json
import threading

import numpy as np
import pyarrow.parquet as pq
import pytest

from api_proto import backtest_pb2, backtest_pb2_grpc, market_data_pb2, market_data_pb2_grpc
from tests.conftest import wait_until
from utils.data import keys
from utils.data.parquet_store import ParquetBarStore, catalogue_key
from utils.data.store import Bars, BarStore, SymbolNotFound
from utils.redis_client import make_redis

DAY_NS = 86_400 * 10**9
T0 = 1_704_067_200 * 10**9  # 2024-01-01


def bars(symbol: str, count: int, start: int = T0, step: int = DAY_NS, price: float = 10.0) -> Bars:
    time = start + step * np.arange(count, dtype=np.int64)
    close = np.full(count, price)
    return Bars(symbol, time, close, close + 1, close - 1, close, np.full(count, 100.0))


@pytest.fixture
def store(redis_server, redis_client, tmp_path) -> ParquetBarStore:  # redis_client: a flushed server
    return ParquetBarStore(make_redis("127.0.0.1", redis_server.port, decode=False), str(tmp_path / "market"),
                           row_group_rows=1000)


def test_write_read_merge_versions_and_layout(store, tmp_path):
    assert store.write(bars("AAA", 5), replace=False) == (5, 1)
    assert store.write(bars("AAA", 3, start=T0 + 5 * DAY_NS, price=11), replace=False) == (8, 2)
    read = store.read("AAA")
    assert len(read) == 8 and read.version == 2 and np.all(np.diff(read.time) > 0)
    assert read.close.tolist() == [10.0] * 5 + [11.0] * 3
    assert store.versions(["AAA", "NOPE"]) == [2, None] and store.version("AAA") == 2
    info = store.info("AAA")
    assert (info.rows, info.first_time, info.last_time, info.version) == (8, T0, T0 + 7 * DAY_NS, 2)
    assert [i.symbol for i in store.list_symbols()] == ["AAA"]
    folder = tmp_path / "market" / "interval=1d" / "symbol=AAA"
    assert sorted(p.name for p in folder.iterdir()) == ["part-000000000001.parquet", "part-000000000002.parquet"]
    meta = pq.read_metadata(folder / "part-000000000002.parquet")
    assert meta.row_group(0).column(0).compression == "ZSTD" and meta.row_group(0).column(0).statistics.has_min_max
    assert store.write(bars("AAA", 2), replace=True) == (2, 3)
    assert sorted(p.name for p in folder.iterdir()) == ["part-000000000002.parquet", "part-000000000003.parquet"]
    columns = store.read_columns_many(["AAA"], ("close",), start_ns=T0 + DAY_NS)["AAA"]
    assert columns.version == 3 and columns.time.tolist() == [T0 + DAY_NS] and columns.values["close"].tolist() == [10.0]
    with pytest.raises(SymbolNotFound):
        store.read("NOPE")


def test_time_range_reads_return_exactly_the_range(store):
    count = 20_000  # 20 row groups of 1000 rows
    store.write(bars("MIN", count, step=60 * 10**9), replace=True)
    path = store._part("MIN", "1d", 1)
    assert pq.read_metadata(path).num_row_groups == 20
    start, end = T0 + 60 * 10**9 * 4321, T0 + 60 * 10**9 * 5678
    read = store.read("MIN", start, end)
    assert read.time[0] == start and read.time[-1] == end and len(read) == 5678 - 4321 + 1
    assert store.read("MIN", start, end) is read  # the hot cache (same version and range)
    assert len(store.read("MIN", None, T0 - 1)) == 0 and len(store.read("MIN", T0 + 10**18, None)) == 0


def test_store_survives_a_flushed_redis_and_intervals_stay_apart(store, redis_client):
    store.write(bars("AAA", 4), replace=True)
    store.write(bars("AAA", 30, step=60 * 10**9, price=20), replace=True, interval="1m")
    redis_client.flushall()
    store.cache.entries.clear()
    assert store.read("AAA").close.tolist() == [10.0] * 4 and store.version("AAA") == 1
    assert len(store.read_interval("AAA", "1m")) == 30 and len(store.read_interval_bars("AAA", "1m")) == 30
    assert [i.symbol for i in store.list_symbols()] == ["AAA"]
    assert store.write(bars("AAA", 1), replace=False) == (4, 2)


def test_migration_from_redis_is_once_and_versions_move_past_redis(store, redis_server):
    legacy = BarStore(make_redis("127.0.0.1", redis_server.port, decode=False))
    for _ in range(3):
        legacy.write(bars("OLD", 6), replace=True, synthetic=True, source="sample")
    assert store.migrate_from_redis() == ["OLD"]
    assert store.migrate_from_redis() == []
    info = store.info("OLD")
    assert (info.rows, info.version, info.synthetic, info.source) == (6, 4, True, "sample")
    store.redis.delete(keys.bars("OLD"))  # the Redis copy is no longer needed
    assert len(store.read("OLD")) == 6


def test_bars_written_to_redis_after_start_migrate_on_first_use(store, redis_server):
    legacy = BarStore(make_redis("127.0.0.1", redis_server.port, decode=False))
    legacy.write(bars("LATE", 7, price=30.0), replace=True, source="old tool")
    assert store.read("LATE").close.tolist() == [30.0] * 7 and store.read("LATE").version == 2
    assert (store.info("LATE").source, store.versions(["LATE"])) == ("old tool", [2])
    assert store._stored_versions("LATE", "1d") == [2]
    with pytest.raises(SymbolNotFound):
        store.read("NEVER")


def test_concurrent_writers_of_one_symbol_never_give_a_torn_read(store, redis_server):
    other = ParquetBarStore(make_redis("127.0.0.1", redis_server.port, decode=False), store.uri)
    store.write(bars("HOT", 500, price=15.0), replace=True)
    errors: list[str] = []
    done = threading.Event()

    def writer(target: ParquetBarStore, prices: range) -> None:
        for price in prices:
            target.write(bars("HOT", 500 + int(price) % 7, price=float(price)), replace=True)

    def reader() -> None:
        last = 0
        while not done.is_set():
            read = other.read("HOT")
            full = 500 if read.close[0] == 15.0 else 500 + int(read.close[0]) % 7  # the rows its writer wrote
            if not (np.all(read.close == read.close[0]) and len(read) == full and read.version >= last):
                errors.append(f"torn read: version {read.version}, {len(read)} rows")
            last = read.version

    writers = [threading.Thread(target=writer, args=(store, range(2, 14))),
               threading.Thread(target=writer, args=(other, range(20, 32)))]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for thread in writers + readers:
        thread.start()
    for thread in writers:
        thread.join()
    done.set()
    for thread in readers:
        thread.join()
    assert not errors, errors[:3]
    assert store.version("HOT") == 25  # 1 + 24 writes, each its own version


def serve(settings):
    """The server and one in-process worker on ``settings``; yields a channel to them."""
    import grpc

    from services.server import create_server
    from tests.conftest import InProcessWorker
    running = create_server(settings)
    worker = InProcessWorker(settings).start()
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    yield channel
    channel.close()
    worker.stop()
    running.stop(grace=0)


@pytest.fixture
def parquet_settings(settings_factory, redis_client):
    return settings_factory()  # BAR_STORE=parquet is the default


@pytest.fixture
def parquet_channel(parquet_settings):
    yield from serve(parquet_settings)


@pytest.fixture
def redis_store_channel(settings_factory, redis_client):
    yield from serve(settings_factory(bar_store="redis"))


def daily_messages(count: int, price: float) -> list[market_data_pb2.Bar]:
    days = np.datetime64("2023-01-02") + np.arange(count)
    return [market_data_pb2.Bar(time=str(day), open=price + i * 0.01, high=price + i * 0.01 + 1,
                                low=price + i * 0.01 - 1, close=price + i * 0.01, volume=1000)
            for i, day in enumerate(days)]


def test_stream_import_then_backtests_read_the_store_after_redis_loses_the_bars(parquet_channel, redis_client):
    market = market_data_pb2_grpc.MarketDataServiceStub(parquet_channel)
    chunks = [market_data_pb2.ImportBarsRequest(symbol="PQA", bars=daily_messages(400, 50)[:200], replace=True),
              market_data_pb2.ImportBarsRequest(symbol="PQA", bars=daily_messages(400, 50)[200:]),
              market_data_pb2.ImportBarsRequest(symbol="PQB", bars=daily_messages(400, 80))]
    response = market.ImportBarsStream(iter(chunks))
    assert response.bars_received == 800
    assert [(s.symbol, s.rows, s.version) for s in response.symbols] == [("PQA", 400, 1), ("PQB", 400, 1)]
    minute = [market_data_pb2.Bar(time=f"2024-01-02T09:{m:02d}:00", open=10, high=11, low=9, close=10, volume=5)
              for m in range(30, 40)]
    assert market.ImportBars(market_data_pb2.ImportBarsRequest(symbol="PQA", bars=minute, interval="1m")).rows == 10
    assert len(market.GetBars(market_data_pb2.GetBarsRequest(symbol="PQA", interval="1m")).bars) == 10
    assert len(market.GetBars(market_data_pb2.GetBarsRequest(symbol="PQA")).bars) == 400

    for key in redis_client.scan_iter("md:*"):  # the catalogue and any bar hash: only the files remain
        redis_client.delete(key)
    backtests = backtest_pb2_grpc.BacktestServiceStub(parquet_channel)
    config = json.dumps({"strategy_type": "trend_following", "lookback_period": 10, "moving_average_window": 20})
    submitted = backtests.SubmitBacktestTask(backtest_pb2.BacktestRequest(
        stock_codes=["PQA", "PQB"], start_time="2023-01-02", end_time="2024-01-31", strategy_config=config,
        initial_capital=1_000_000, commission_rate=0.0003))
    status = wait_until(lambda: (s := backtests.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(
        backtest_id=submitted.backtest_id))).status in (backtest_pb2.COMPLETED, backtest_pb2.FAILED) and s, timeout=60)
    assert status.status == backtest_pb2.COMPLETED, status
    assert redis_client.hget(catalogue_key("PQA"), "version") == "1"  # re-catalogued from the file


def test_import_then_flushall_then_a_fresh_server_backtests_from_the_files(parquet_settings, redis_client):
    """The files are the source of truth: after FLUSHALL (catalogue, versions, queue, caches all
    gone) a fresh server and worker rebuild the catalogue on a miss and give the same backtest."""
    config = json.dumps({"strategy_type": "sma_crossover", "fast": 5, "slow": 20})
    request = backtest_pb2.BacktestRequest(stock_codes=["FLA", "FLB"], start_time="2023-01-02", end_time="2024-01-31",
                                           strategy_config=config, initial_capital=1_000_000, commission_rate=0.0003)

    def backtest(channel):
        stub = backtest_pb2_grpc.BacktestServiceStub(channel)
        job = stub.SubmitBacktestTask(request).backtest_id
        status = wait_until(lambda: (s := stub.GetBacktestStatus(backtest_pb2.BacktestStatusRequest(
            backtest_id=job))).status in (backtest_pb2.COMPLETED, backtest_pb2.FAILED) and s, timeout=60)
        assert status.status == backtest_pb2.COMPLETED, status
        return stub.GetBacktestResult(backtest_pb2.BacktestResultRequest(backtest_id=job))

    for channel in serve(parquet_settings):
        market = market_data_pb2_grpc.MarketDataServiceStub(channel)
        market.ImportBarsStream(iter([market_data_pb2.ImportBarsRequest(symbol="FLA", bars=daily_messages(400, 50)),
                                      market_data_pb2.ImportBarsRequest(symbol="FLB", bars=daily_messages(400, 70))]))
        before = backtest(channel)
    redis_client.flushall()
    assert not redis_client.keys("*")
    for channel in serve(parquet_settings):
        after = backtest(channel)
        listed = market_data_pb2_grpc.MarketDataServiceStub(channel).ListSymbols(market_data_pb2.ListSymbolsRequest())
    assert after.performance_metrics == before.performance_metrics and list(after.equity_curve) == list(before.equity_curve)
    assert redis_client.hget(catalogue_key("FLA"), "version") == "1"  # rebuilt from the file on the miss
    assert {"FLA", "FLB"} <= {s.symbol for s in listed.symbols}


def test_sample_bars_in_redis_migrate_on_start(settings_factory, redis_client, redis_server):
    from services.server import create_server
    from utils.data.sample import ensure_sample_data
    legacy = BarStore(make_redis("127.0.0.1", redis_server.port, decode=False))
    written = ensure_sample_data(legacy)
    settings = settings_factory()
    running = create_server(settings)
    running.stop(grace=0)
    assert sorted(written) == sorted(redis_client.smembers(keys.SYMBOLS))
    for symbol in written:
        assert redis_client.hget(catalogue_key(symbol), "source") == legacy.info(symbol).source
        assert (settings.data_dir / "market" / "interval=1d" / f"symbol={symbol}").is_dir()


def test_intraday_import_needs_the_parquet_store(redis_store_channel):
    import grpc
    market = market_data_pb2_grpc.MarketDataServiceStub(redis_store_channel)
    with pytest.raises(grpc.RpcError) as error:
        market.ImportBars(market_data_pb2.ImportBarsRequest(
            symbol="X", interval="1m", bars=[market_data_pb2.Bar(time="2024-01-02T09:30:00", open=1, high=1,
                                                                 low=1, close=1, volume=1)]))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION and "BAR_STORE=parquet" in error.value.details()


def test_stream_import_into_the_redis_store_and_bad_chunks(redis_store_channel):
    import grpc
    market = market_data_pb2_grpc.MarketDataServiceStub(redis_store_channel)
    ok = market.ImportBarsStream(iter([market_data_pb2.ImportBarsRequest(symbol="RS", bars=daily_messages(5, 9)),
                                       market_data_pb2.ImportBarsRequest(symbol="RS", bars=daily_messages(8, 9)[5:])]))
    assert [(s.symbol, s.rows, s.version) for s in ok.symbols] == [("RS", 8, 1)] and ok.bars_received == 8
    bad_time = daily_messages(2, 9)
    bad_time[1].time = "yesterday"
    for chunks, code, text in [
            ([], grpc.StatusCode.INVALID_ARGUMENT, "no bars"),
            ([market_data_pb2.ImportBarsRequest(symbol="RS", bars=daily_messages(2, 9)),
              market_data_pb2.ImportBarsRequest(symbol="RS", bars=bad_time)], grpc.StatusCode.INVALID_ARGUMENT,
             "chunks[1].bars[1].time"),
            ([market_data_pb2.ImportBarsRequest(symbol="bad symbol!", bars=daily_messages(2, 9))],
             grpc.StatusCode.INVALID_ARGUMENT, "chunks[0].symbol")]:
        with pytest.raises(grpc.RpcError) as error:
            market.ImportBarsStream(iter(chunks))
        assert error.value.code() == code and text in error.value.details(), error.value.details()


def test_read_many_serves_cached_ranges_and_reads_the_rest(store):
    for index in range(6):
        store.write(bars(f"M{index}", 10 + index), replace=True)
    first = store.read_many([f"M{i}" for i in range(6)], T0 + DAY_NS, None)
    assert [len(first[f"M{i}"]) for i in range(6)] == [9 + i for i in range(6)]
    store.write(bars("M2", 3), replace=True)  # a new version: M2 is read again, the others come from the cache
    second = store.read_many([f"M{i}" for i in range(6)], T0 + DAY_NS, None)
    assert len(second["M2"]) == 2 and second["M2"].version == 2 and second["M0"] is first["M0"]
    with pytest.raises(SymbolNotFound):
        store.read_many(["M0", "M1", "M3", "M4", "NOPE"])
