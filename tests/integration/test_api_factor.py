"""FactorService over real gRPC + Redis + worker: AnalyzeFactor queues a ``factor`` job, JobService
follows it, GetFactorAnalysis returns what ``analyze_factor`` computes on the aligned panels."""
from __future__ import annotations

import math

import grpc
import numpy as np
import pandas as pd
import pytest

from api_proto import factor_pb2, factor_pb2_grpc, jobs_pb2, jobs_pb2_grpc
from utils.data import keys as data_keys
from utils.data.store import Bars
from utils.data.timeutil import parse_time
from utils.engine.factors.analysis import analyze_factor

SYMBOLS = ["000001.SZ", "600000.SH", "000002.SZ", "GAPS.X"]
START, END = "2024-01-01", "2024-06-30"
FINAL = (jobs_pb2.COMPLETED, jobs_pb2.FAILED, jobs_pb2.CANCELLED)


@pytest.fixture
def stubs(platform, channel):
    """(FactorService, JobService) stubs; the store also holds GAPS.X, a symbol with holes and its
    own dates (weekend bars), so the union calendar and NaN alignment are exercised."""
    from utils.data.sample import sample_bars
    bars = sample_bars("GAPS.X", 30.0).between(parse_time("2023-06-01"), parse_time("2024-12-31"))
    keep = np.ones(len(bars), dtype=bool)
    keep[::7] = False  # a hole every 7th bar
    columns = [c[keep] for c in (bars.time, bars.open, bars.high, bars.low, bars.close, bars.volume)]
    fridays = np.flatnonzero(columns[0].astype("datetime64[ns]").astype("datetime64[D]").astype(np.int64) % 7 == 1)
    saturdays = [c[fridays[::3]] for c in columns]  # some bars on dates the others do not have
    saturdays[0] = saturdays[0] + 86_400 * 10**9
    platform.store.write(Bars("GAPS.X", *(np.concatenate([c, extra]) for c, extra in zip(columns, saturdays))),
                         replace=True, source="test")
    return factor_pb2_grpc.FactorServiceStub(channel), jobs_pb2_grpc.JobServiceStub(channel)


def aligned_closes(store, symbols, start, end, extra):
    """Reference alignment with pandas: outer join of the closes from start, rows up to end plus
    ``extra`` more."""
    frames = {s: pd.Series(store.read(s, parse_time(start)).close, index=store.read(s, parse_time(start)).time)
              for s in symbols}
    closes = pd.DataFrame(frames).sort_index()
    factor_rows = int((closes.index <= parse_time(end)).sum())
    return closes.iloc[:factor_rows + extra], factor_rows


def reversal_panel(closes: pd.DataFrame, factor_rows: int) -> pd.DataFrame:
    """A 5-row reversal factor on the factor dates."""
    return -(closes / closes.shift(5) - 1).iloc[:factor_rows]


def panel_message(panel: pd.DataFrame) -> factor_pb2.FactorPanel:
    times = [str(np.datetime64(int(t), "ns").astype("datetime64[D]")) for t in panel.index]
    return factor_pb2.FactorPanel(times=times, symbols=list(panel.columns), values=panel.to_numpy().ravel().tolist())


def request(**overrides) -> factor_pb2.FactorAnalysisRequest:
    fields = dict(symbols=SYMBOLS, start_time=START, end_time=END)
    fields.update(overrides)
    return factor_pb2.FactorAnalysisRequest(**fields)


def watch_to_end(jobs, job_id):
    updates = list(jobs.WatchJob(jobs_pb2.JobRequest(job_id=job_id), timeout=120))
    assert updates and updates[-1].status in FINAL
    return updates[-1]


def close(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or math.isclose(a, b, rel_tol=1e-12, abs_tol=1e-15)


def assert_all_close(got, expected):
    got, expected = list(got), np.asarray(expected, dtype=np.float64).tolist()
    assert len(got) == len(expected)
    assert all(close(a, b) for a, b in zip(got, expected)), (got, expected)


def test_values_end_to_end_equal_the_engine(platform, stubs):
    factors, jobs = stubs
    closes, factor_rows = aligned_closes(platform.store, SYMBOLS, START, END, 10)
    factor = reversal_panel(closes, factor_rows)
    assert closes.isna().any().any() and closes.shape[0] > factor_rows  # holes, and rows after end
    handle = factors.AnalyzeFactor(request(values=panel_message(factor), periods=[5, 1, 10],
                                           groups={"000001.SZ": "a", "600000.SH": "a", "000002.SZ": "b",
                                                   "GAPS.X": "b"}))
    assert handle.job_id.startswith("fa-") and handle.status == jobs_pb2.PENDING and handle.message == "queued"
    record = platform.queue.get(handle.job_id)
    values = record.payload["values"]
    assert set(values) == {"times_ns", "symbols", "key"} and values["key"] == data_keys.factor_values(handle.job_id)
    assert platform.store.redis.ttl(values["key"]) > 0

    job = watch_to_end(jobs, handle.job_id)
    assert job.status == jobs_pb2.COMPLETED and job.task_type == "factor", job.error_message
    result = factors.GetFactorAnalysis(jobs_pb2.JobRequest(job_id=handle.job_id))

    full_factor = np.full(closes.shape, np.nan)
    full_factor[:factor_rows] = factor.to_numpy()
    expected = analyze_factor(closes.to_numpy(), full_factor, periods=(1, 5, 10))
    assert result.job_id == handle.job_id and result.device == "cpu" and result.compute_seconds > 0
    assert close(result.loss_fraction, expected.loss_fraction) and result.loss_breakdown == expected.loss.summary()
    assert result.dropped_dates == expected.loss.failed_segments
    assert [p.period for p in result.periods] == [5, 1, 10]  # the requested order
    for got in result.periods:
        want = expected.period(got.period)
        for name in ("ic_mean", "ic_std", "risk_adjusted_ic", "t_stat", "p_value", "ic_skew", "ic_kurtosis",
                     "pearson_ic_mean", "pearson_icir", "ann_alpha", "beta", "factor_return_mean",
                     "top_minus_bottom", "rank_autocorrelation"):
            assert close(getattr(got, name), getattr(want, name)), (got.period, name)
        for name in ("mean_return_by_quantile", "std_error_by_quantile", "mean_turnover_by_quantile"):
            assert_all_close(getattr(got, name), getattr(want, name))
        assert len(got.mean_return_by_quantile) == 5
    kept = np.flatnonzero((expected.quantile_labels > 0).any(axis=1))
    dates = [str(np.datetime64(int(t), "ns").astype("datetime64[D]")) for t in closes.index[kept]]
    assert [p.time for p in result.ic_series] == dates and dates[0] >= START and dates[-1] <= END
    for point, row in zip(result.ic_series, kept):
        assert_all_close(point.ic, [expected.period(p).ic[row] for p in (5, 1, 10)])
    assert [p.time for p in result.cumulative_returns] == dates
    assert_all_close([p.value for p in result.cumulative_returns], expected.period(5).cumulative_returns[kept])
    assert len(result.group_stats) == 0  # groups given, by_group not set


def test_expression_end_to_end_on_the_window_only(platform, stubs):
    from utils.engine.factors.expressions import evaluate_factor
    factors, jobs = stubs
    text = "cs_rank(ts_mean(close, 5) / close) + 0.1 * cs_zscore(log(volume))"
    closes, factor_rows = aligned_closes(platform.store, SYMBOLS, START, END, 5)
    bars = {s: platform.store.read(s, parse_time(START)) for s in SYMBOLS}
    window = {name: pd.DataFrame({s: pd.Series(getattr(b, name), index=b.time) for s, b in bars.items()})
              .sort_index().iloc[:factor_rows].to_numpy() for name in ("open", "high", "low", "close", "volume")}
    window["time"] = closes.index.to_numpy()[:factor_rows]
    factor = np.full(closes.shape, np.nan)
    factor[:factor_rows] = evaluate_factor(text, window)
    assert np.isnan(factor[:4]).all() and not np.isnan(factor[4]).all()  # warm-up inside the window
    handle = factors.AnalyzeFactor(request(expression=text, periods=[1, 5]))
    job = watch_to_end(jobs, handle.job_id)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    result = factors.GetFactorAnalysis(jobs_pb2.JobRequest(job_id=handle.job_id))
    expected = analyze_factor(closes.to_numpy(), factor, periods=(1, 5))
    assert close(result.loss_fraction, expected.loss_fraction)
    for got in result.periods:
        want = expected.period(got.period)
        assert close(got.ic_mean, want.ic_mean) and close(got.ann_alpha, want.ann_alpha)
        assert_all_close(got.mean_return_by_quantile, want.mean_return_by_quantile)
    first = str(np.datetime64(int(closes.index[4]), "ns").astype("datetime64[D]"))
    assert result.ic_series[0].time == first


def test_a_reimport_between_two_analyses_is_seen(platform, stubs):
    """The worker reuses aligned panels across jobs on the same symbols and dates, but never after
    a symbol's data changed (its version moved)."""
    factors, jobs = stubs
    text = "-(close / ref(close, 5) - 1)"

    def analysed():
        job = watch_to_end(jobs, factors.AnalyzeFactor(request(expression=text, periods=[1])).job_id)
        assert job.status == jobs_pb2.COMPLETED, job.error_message
        return factors.GetFactorAnalysis(jobs_pb2.JobRequest(job_id=job.job_id)).periods[0].ic_mean

    before = analysed()
    assert analysed() == before
    bars = platform.store.read("600000.SH")
    wiggle = 1.0 + 0.05 * np.sin(np.arange(len(bars)))  # another price path for one symbol
    platform.store.write(Bars("600000.SH", bars.time, bars.open * wiggle, bars.high * wiggle, bars.low * wiggle,
                              bars.close * wiggle, bars.volume), replace=True, source="test")
    closes, factor_rows = aligned_closes(platform.store, SYMBOLS, START, END, 1)
    factor = np.full(closes.shape, np.nan)
    factor[:factor_rows] = -(closes / closes.shift(5) - 1).to_numpy()[:factor_rows]
    after = analysed()
    assert after != before and close(after, analyze_factor(closes.to_numpy(), factor, periods=(1,)).period(1).ic_mean)


def test_options_reach_the_engine(platform, stubs):
    factors, jobs = stubs
    symbols = SYMBOLS[:3]
    closes, factor_rows = aligned_closes(platform.store, symbols, START, END, 3)
    factor = reversal_panel(closes, factor_rows)
    groups = {"000001.SZ": "a", "600000.SH": "b", "000002.SZ": "a"}
    handle = factors.AnalyzeFactor(request(
        symbols=symbols, values=panel_message(factor), periods=[3], quantiles=2, max_loss=1.0,
        filter_zscore=0.0, groups=groups, group_adjust=True, long_short=False, equal_weight=True,
        rank_ties="first"))
    assert watch_to_end(jobs, handle.job_id).status == jobs_pb2.COMPLETED
    result = factors.GetFactorAnalysis(jobs_pb2.JobRequest(job_id=handle.job_id))
    full_factor = np.full(closes.shape, np.nan)
    full_factor[:factor_rows] = factor.to_numpy()
    expected = analyze_factor(closes.to_numpy(), full_factor, periods=(3,), quantiles=2, max_loss=1.0,
                              filter_zscore=None, groups=np.array([0, 1, 0]), group_adjust=True,
                              long_short=False, equal_weight=True, rank_ties="first").period(3)
    got = result.periods[0]
    assert close(got.ic_mean, expected.ic_mean) and close(got.factor_return_mean, expected.factor_return_mean)
    assert_all_close(got.mean_return_by_quantile, expected.mean_return_by_quantile)


def test_by_group_statistics_arrive_per_group_and_equal_the_engine(platform, stubs):
    factors, jobs = stubs
    closes, factor_rows = aligned_closes(platform.store, SYMBOLS, START, END, 5)
    factor = reversal_panel(closes, factor_rows)
    groups = {"000001.SZ": "banks", "600000.SH": "banks", "000002.SZ": "property", "GAPS.X": "property"}
    handle = factors.AnalyzeFactor(request(values=panel_message(factor), periods=[5, 1], quantiles=2,
                                           max_loss=1.0, groups=groups, by_group=True, group_adjust=True))
    job = watch_to_end(jobs, handle.job_id)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    result = factors.GetFactorAnalysis(jobs_pb2.JobRequest(job_id=handle.job_id))
    full_factor = np.full(closes.shape, np.nan)
    full_factor[:factor_rows] = factor.to_numpy()
    expected = analyze_factor(closes.to_numpy(), full_factor, periods=(1, 5), quantiles=2, max_loss=1.0,
                              groups=np.array([0, 0, 1, 1]), by_group=True, group_adjust=True)
    assert [group.name for group in result.group_stats] == ["banks", "property"]  # code = sorted name
    for code, group in enumerate(result.group_stats):
        assert [p.period for p in group.periods] == [5, 1]  # the requested order
        for got in group.periods:
            want = expected.group(code).period(got.period)
            for name in ("ic_mean", "ic_std", "risk_adjusted_ic", "t_stat", "p_value", "ic_skew", "ic_kurtosis"):
                assert close(getattr(got, name), getattr(want, name)), (group.name, got.period, name)
            assert_all_close(got.mean_return_by_quantile, want.mean_return_by_quantile)
            assert_all_close(got.std_error_by_quantile, want.std_error_by_quantile)
            assert len(got.mean_return_by_quantile) == 2 and not math.isnan(got.ic_mean)


def test_max_loss_exceeded_fails_the_job_with_the_breakdown(platform, stubs):
    factors, jobs = stubs
    closes, factor_rows = aligned_closes(platform.store, SYMBOLS, START, END, 10)
    factor = reversal_panel(closes, factor_rows)
    factor.iloc[::2] = np.inf  # half the dates non-finite
    handle = factors.AnalyzeFactor(request(values=panel_message(factor)))
    job = watch_to_end(jobs, handle.job_id)
    assert job.status == jobs_pb2.FAILED and job.attempts == 1
    assert "max_loss (35.0%) exceeded" in job.error_message and "non-finite" in job.error_message
    with pytest.raises(grpc.RpcError) as error:
        factors.GetFactorAnalysis(jobs_pb2.JobRequest(job_id=handle.job_id))
    assert error.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "FAILED" in error.value.details() and "max_loss" in error.value.details()


def test_result_before_completion_and_unknown_ids(platform, stubs):
    factors, _ = stubs
    platform.worker.stop()  # nobody runs it: it stays PENDING
    closes, factor_rows = aligned_closes(platform.store, SYMBOLS, START, END, 10)
    handle = factors.AnalyzeFactor(request(values=panel_message(reversal_panel(closes, factor_rows))))
    cases = [(handle.job_id, grpc.StatusCode.FAILED_PRECONDITION, "PENDING"),
             ("fa-" + "0" * 32, grpc.StatusCode.NOT_FOUND, "no factor analysis with id"),
             ("", grpc.StatusCode.INVALID_ARGUMENT, "job_id")]
    for job_id, code, text in cases:
        with pytest.raises(grpc.RpcError) as error:
            factors.GetFactorAnalysis(jobs_pb2.JobRequest(job_id=job_id))
        assert error.value.code() == code and text in error.value.details(), error.value.details()


def _panel(**overrides) -> factor_pb2.FactorPanel:
    fields = dict(times=["2024-01-02", "2024-01-03"], symbols=["000001.SZ", "600000.SH"], values=[1.0, 2.0, 3.0, 4.0])
    fields.update(overrides)
    return factor_pb2.FactorPanel(**fields)


INVALID = [
    (dict(symbols=["000001.SZ"], values=_panel()), "symbols: must name at least two"),
    (dict(symbols=["000001.SZ", "000001.SZ"], values=_panel()), "symbols: lists '000001.SZ' twice"),
    (dict(symbols=["000001.SZ"] + [f"S{i}.X" for i in range(600)], values=_panel()), "symbols: has 601"),
    (dict(start_time="", values=_panel()), "start_time: is required"),
    (dict(start_time="2024-07-01", values=_panel()), "start_time: '2024-07-01' is after end_time"),
    (dict(end_time="not a date", values=_panel()), "end_time:"),
    ({}, "factor: set exactly one of expression or values"),
    (dict(values=_panel(), periods=[0]), "periods: each must be 1..252"),
    (dict(values=_panel(), periods=[253]), "periods: each must be 1..252"),
    (dict(values=_panel(), periods=[5, 5]), "periods: lists a period twice"),
    (dict(values=_panel(), quantiles=1), "quantiles: must be 2..100"),
    (dict(values=_panel(), quantiles=101), "quantiles: must be 2..100"),
    (dict(values=_panel(), bins=1), "bins: must be 2..100"),
    (dict(values=_panel(), bins=-3), "bins: must be 2..100"),
    (dict(values=_panel(), max_loss=1.5), "max_loss: must be a share in [0, 1]"),
    (dict(values=_panel(), max_loss=float("nan")), "max_loss: must be a share in [0, 1]"),
    (dict(values=_panel(), filter_zscore=-1.0), "filter_zscore: must be a finite number >= 0"),
    (dict(values=_panel(), filter_zscore=float("inf")), "filter_zscore: must be a finite number >= 0"),
    (dict(values=_panel(), rank_ties="dense"), "rank_ties: must be 'average' or 'first'"),
    (dict(values=_panel(), rank_ties="first", bins=4), "rank_ties: 'first' applies to quantiles"),
    (dict(values=_panel(), groups={"OTHER.X": "a"}), "groups: names 'OTHER.X'"),
    (dict(values=_panel(), groups={"000001.SZ": "a"}, group_adjust=True), "groups: group_adjust needs a group"),
    (dict(values=_panel(), groups={"000001.SZ": "a"}, by_group=True), "groups: by_group needs a group"),
    (dict(values=_panel(), groups={"000001.SZ": ""}), "groups: the group of '000001.SZ'"),
    (dict(values=_panel(values=[1.0, 2.0, 3.0])), "values.values: has 3 values; expected len(times) x len(symbols)"),
    (dict(values=_panel(times=[])), "values.times: is empty"),
    (dict(values=_panel(symbols=[], values=[])), "values.symbols: is empty"),
    (dict(values=_panel(symbols=["000001.SZ", "OTHER.X"])), "values.symbols[1]: 'OTHER.X' is not one of symbols"),
    (dict(values=_panel(symbols=["000001.SZ", "000001.SZ"])), "values.symbols: lists a symbol twice"),
    (dict(values=_panel(times=["2024-01-02", "2024-13-45"])), "values.times[1]: '2024-13-45' is not an ISO"),
    (dict(values=_panel(times=["2024-01-02", "2024-08-01"])), "values.times[1]: '2024-08-01' is outside"),
    (dict(values=_panel(times=["2024-01-02", "2024-01-02"])), "values.times: lists a time twice"),
    (dict(values=_panel(times=["2024-01-02", "2024-01-06"])), "values.times[1]: 2024-01-06 is not a stored bar"),
    (dict(expression="   "), "expression: is empty"),
    (dict(expression="foo(close)"), "expression: column 1: unknown function 'foo'"),
    (dict(expression="ts_mean(close, 5) + nope"), "expression: column 21:"),
    (dict(expression="close > open"), "expression: column 1: a factor must be a number"),
    (dict(expression="ts_mean(close,"), "expression: column 15:"),
]


@pytest.mark.parametrize("fields,message", INVALID, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in
                                                          enumerate(INVALID)])
def test_invalid_requests_name_the_field(stubs, fields, message):
    factors, _ = stubs
    base = dict(symbols=["000001.SZ", "600000.SH"], start_time=START, end_time=END)
    with pytest.raises(grpc.RpcError) as error:
        factors.AnalyzeFactor(factor_pb2.FactorAnalysisRequest(**{**base, **fields}))
    assert error.value.code() == grpc.StatusCode.INVALID_ARGUMENT, error.value.details()
    assert message in error.value.details(), error.value.details()


def test_values_over_the_size_limit(platform):
    from services.errors import ServiceError
    from services.factor_service import FactorServicer
    servicer = FactorServicer(platform.queue, platform.store, platform.settings.model_copy(
        update={"max_rows_per_request": 3}))
    with pytest.raises(ServiceError) as error:
        servicer.AnalyzeFactor(request(symbols=["000001.SZ", "600000.SH"], values=_panel()), None)
    assert error.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "values.values: has 4 values; the limit is 3" in error.value.message


def test_unknown_or_unstored_symbols_are_not_found(stubs):
    factors, _ = stubs
    for symbols, text in ((["000001.SZ", "NOPE.X"], "symbol 'NOPE.X' has no bars in the market-data store"),
                          (["000001.SZ", "GAPS.X"], "symbol 'GAPS.X' has no bars between")):
        with pytest.raises(grpc.RpcError) as error:
            factors.AnalyzeFactor(request(symbols=symbols, start_time="2025-03-01", end_time="2025-04-01",
                                          values=_panel(times=["2025-03-03"], symbols=["000001.SZ"], values=[1.0])))
        assert error.value.code() == grpc.StatusCode.NOT_FOUND and text in error.value.details(), error.value.details()
