"""MarketDataService over real gRPC + Redis: import (merge/replace), read, list, bad input."""
from __future__ import annotations

import grpc
import pytest

from api_proto import market_data_pb2, market_data_pb2_grpc

SAMPLE_SYMBOLS = ("000001.SZ", "000002.SZ", "600000.SH")


@pytest.fixture
def stub(channel):
    return market_data_pb2_grpc.MarketDataServiceStub(channel)


def bar(time, close, volume=1000.0, spread=0.5):
    return market_data_pb2.Bar(time=time, open=close, high=close + spread, low=close - spread, close=close,
                               volume=volume)


def import_bars(stub, symbol, bars, replace=False):
    return stub.ImportBars(market_data_pb2.ImportBarsRequest(symbol=symbol, bars=bars, replace=replace))


def get_bars(stub, symbol, **kwargs):
    return stub.GetBars(market_data_pb2.GetBarsRequest(symbol=symbol, **kwargs))


def test_merge_and_replace_with_versions(stub):
    first = import_bars(stub, "TEST.X", [bar("2024-01-03", 12), bar("2024-01-02", 11), bar("2024-01-04", 13)])
    assert (first.symbol, first.rows, first.version) == ("TEST.X", 3, 1)

    # Merge: one new time, one equal time (the new bar wins).
    merged = import_bars(stub, "TEST.X", [bar("2024-01-05", 14), bar("2024-01-03", 99, volume=7)])
    assert (merged.rows, merged.version) == (4, 2)
    read = get_bars(stub, "TEST.X")
    assert read.version == 2
    assert [b.time for b in read.bars] == ["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"]
    assert [b.close for b in read.bars] == [11, 99, 13, 14]
    assert read.bars[1].volume == 7 and read.bars[1].high == 99.5 and read.bars[1].low == 98.5

    # Re-importing identical bars is still a write: the version moves on.
    again = import_bars(stub, "TEST.X", [bar("2024-01-05", 14)])
    assert (again.rows, again.version) == (4, 3)

    replaced = import_bars(stub, "TEST.X", [bar("2023-06-01", 5)], replace=True)
    assert (replaced.rows, replaced.version) == (1, 4)
    read = get_bars(stub, "TEST.X")
    assert [(b.time, b.close) for b in read.bars] == [("2023-06-01", 5)] and read.version == 4


def test_datetime_bars_round_trip(stub):
    import_bars(stub, "INTRA", [bar("2024-01-02T09:30:00", 10), bar("2024-01-02T09:31:00.5", 10.5)])
    times = [b.time for b in get_bars(stub, "INTRA").bars]
    assert times == ["2024-01-02T09:30:00Z", "2024-01-02T09:31:00.5Z"]


def test_get_bars_ranges_and_limit(stub):
    days = [f"2024-02-{d:02d}" for d in range(1, 11)]
    import_bars(stub, "RANGE", [bar(day, 10 + i) for i, day in enumerate(days)])
    assert [b.time for b in get_bars(stub, "RANGE").bars] == days
    inclusive = get_bars(stub, "RANGE", start_time="2024-02-03", end_time="2024-02-05")
    assert [b.time for b in inclusive.bars] == days[2:5]
    assert [b.time for b in get_bars(stub, "RANGE", start_time="2024-02-08").bars] == days[7:]
    assert [b.time for b in get_bars(stub, "RANGE", end_time="2024-02-02").bars] == days[:2]
    # limit keeps the most recent bars of the range.
    assert [b.time for b in get_bars(stub, "RANGE", limit=3).bars] == days[-3:]
    assert [b.time for b in get_bars(stub, "RANGE", end_time="2024-02-06", limit=2).bars] == days[4:6]
    assert [b.time for b in get_bars(stub, "RANGE", limit=100).bars] == days
    assert list(get_bars(stub, "RANGE", start_time="2025-01-01").bars) == []
    # A datetime bound inside a day excludes that day's midnight bar at the start...
    assert get_bars(stub, "RANGE", start_time="2024-02-09T00:00:01").bars[0].time == "2024-02-10"


def test_list_symbols_marks_sample_data_synthetic(stub):
    import_bars(stub, "MINE", [bar("2024-03-01", 10), bar("2024-03-04", 11)])
    listed = {info.symbol: info for info in stub.ListSymbols(market_data_pb2.ListSymbolsRequest()).symbols}
    assert [s for s in sorted(listed)] == [info.symbol for info in
                                         stub.ListSymbols(market_data_pb2.ListSymbolsRequest()).symbols]
    assert set(SAMPLE_SYMBOLS) | {"MINE"} == set(listed)
    for symbol in SAMPLE_SYMBOLS:
        info = listed[symbol]
        assert info.synthetic and "synthetic" in info.source
        assert 2800 <= info.rows <= 2900
        assert info.first_time.startswith("2015-01-0") and info.last_time.startswith("2025-12")
        assert info.version >= 1
        assert get_bars(stub, symbol).bars[0].time == info.first_time
    mine = listed["MINE"]
    assert not mine.synthetic and mine.source == "import"
    assert (mine.rows, mine.first_time, mine.last_time, mine.version) == (2, "2024-03-01", "2024-03-04", 1)


def test_import_over_sample_symbol_bumps_version(stub):
    before = get_bars(stub, "000001.SZ", limit=1)
    after = import_bars(stub, "000001.SZ", [bar("2026-01-05", 12)])
    assert after.version == before.version + 1
    assert get_bars(stub, "000001.SZ", limit=1).bars[0].time == "2026-01-05"


def good_bars():
    return [bar("2024-01-02", 10), bar("2024-01-03", 11)]


def with_row(index, **fields):
    bars = good_bars()
    for name, value in fields.items():
        setattr(bars[index], name, value)
    return bars


BAD_IMPORTS = [
    (dict(symbol="", bars=good_bars()), "symbol"),
    (dict(symbol="bad symbol!", bars=good_bars()), "symbol"),
    (dict(symbol="X" * 33, bars=good_bars()), "symbol"),
    (dict(symbol="EMPTY", bars=[]), "bars"),
    (dict(symbol="BADTIME", bars=with_row(1, time="yesterday")), "bars[1].time"),
    (dict(symbol="BADTIME", bars=with_row(0, time="")), "bars[0].time"),
    (dict(symbol="NANPRICE", bars=with_row(1, close=float("nan"))), "finite"),
    (dict(symbol="INFPRICE", bars=with_row(0, high=float("inf"))), "finite"),
    (dict(symbol="NEGPRICE", bars=with_row(0, open=-1.0, low=-2.0)), "> 0"),
    (dict(symbol="NEGVOL", bars=with_row(0, volume=-5.0)), "volume"),
    (dict(symbol="NANVOL", bars=with_row(0, volume=float("nan"))), "volume"),
    (dict(symbol="HILO", bars=with_row(1, high=9.0, low=12.0)), "low <= open, close <= high"),
    (dict(symbol="DUP", bars=[bar("2024-01-02", 10), bar("2024-01-03", 11), bar("2024-01-02", 12)]),
     "duplicate bar time 2024-01-02"),
]


@pytest.mark.parametrize("fields,needle", BAD_IMPORTS)
def test_bad_imports_are_rejected_and_store_nothing(stub, fields, needle):
    with pytest.raises(grpc.RpcError) as error:
        stub.ImportBars(market_data_pb2.ImportBarsRequest(**fields))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in error.value.details()
    assert "Traceback" not in error.value.details()
    symbols = {info.symbol for info in stub.ListSymbols(market_data_pb2.ListSymbolsRequest()).symbols}
    assert symbols == set(SAMPLE_SYMBOLS)


def test_bad_bar_in_merge_keeps_the_stored_bars(stub):
    import_bars(stub, "KEEP", good_bars())
    with pytest.raises(grpc.RpcError) as error:
        import_bars(stub, "KEEP", [bar("2024-01-04", float("nan"))])
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    read = get_bars(stub, "KEEP")
    assert read.version == 1 and [b.close for b in read.bars] == [10, 11]


@pytest.mark.parametrize("fields,needle", [
    (dict(symbol=""), "symbol"),
    (dict(symbol="no/slash"), "symbol"),
    (dict(symbol="000001.SZ", start_time="soon"), "start_time"),
    (dict(symbol="000001.SZ", end_time="2024-13-45"), "end_time"),
    (dict(symbol="000001.SZ", limit=-1), "limit"),
])
def test_bad_reads_are_invalid(stub, fields, needle):
    with pytest.raises(grpc.RpcError) as error:
        stub.GetBars(market_data_pb2.GetBarsRequest(**fields))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert needle in error.value.details() and "Traceback" not in error.value.details()


def test_unknown_symbol_is_not_found(stub):
    with pytest.raises(grpc.RpcError) as error:
        get_bars(stub, "NOPE.SZ")
    assert error.value.code() == grpc.StatusCode.NOT_FOUND
    assert "NOPE.SZ" in error.value.details() and "Traceback" not in error.value.details()
