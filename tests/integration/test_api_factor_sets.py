"""FactorService's many-factor RPCs over real gRPC + Redis + worker: ComputeFactors stores a factor
set (GetFactorSet describes it; AnalyzeFactor reads one of its factors), EvaluateFactors scores
many factors at once with their correlation matrix, CombineFactors stores a walk-forward composite.
Numbers are checked against the engine called directly on pandas-aligned panels."""
from __future__ import annotations

import grpc
import numpy as np
import pandas as pd
import pytest

from api_proto import factor_pb2, jobs_pb2
from tests.integration.test_api_factor import (END, START, SYMBOLS, aligned_closes, assert_all_close, close,
                                               stubs, watch_to_end)
from utils.data import keys as data_keys
from utils.data.timeutil import parse_time
from utils.engine.factors.analysis import analyze_factor
from utils.engine.factors.combine import combine_factors
from utils.engine.factors.correlation import mean_spearman_correlation
from utils.engine.factors.expressions import evaluate_factors

__all__ = ["stubs"]  # the fixture, shared with test_api_factor

EXPRESSIONS = ["-(close / ref(close, 5) - 1)", "ts_mean(close, 10) / close", "cs_zscore(log(volume))",
               "close * 0 + 1"]  # the last is constant: every date's quantile edges collapse
NAMES = ["rev5", "ma10", "logvol", "flat"]


def window_bars(store, symbols, factor_rows):
    """The bars on the pandas union calendar, rows up to end."""
    bars = {s: store.read(s, parse_time(START)) for s in symbols}
    window = {name: pd.DataFrame({s: pd.Series(getattr(b, name), index=b.time) for s, b in bars.items()})
              .sort_index().iloc[:factor_rows].to_numpy() for name in ("open", "high", "low", "close", "volume")}
    closes, _ = aligned_closes(store, symbols, START, END, 0)
    window["time"] = closes.index.to_numpy()[:factor_rows]
    return window


def completed(jobs, job_id):
    job = watch_to_end(jobs, job_id)
    assert job.status == jobs_pb2.COMPLETED, job.error_message
    return job


def compute(factors, jobs, **fields):
    request = dict(symbols=SYMBOLS, start_time=START, end_time=END, expressions=EXPRESSIONS[:3], names=NAMES[:3])
    request.update(fields)
    handle = factors.ComputeFactors(factor_pb2.FactorSetRequest(**request))
    assert handle.job_id.startswith("fs-") and handle.status == jobs_pb2.PENDING
    completed(jobs, handle.job_id)
    return handle.job_id


def code_of(call):
    with pytest.raises(grpc.RpcError) as error:
        call()
    return error.value.code(), error.value.details()


def test_compute_stores_the_panels_and_analyze_reads_them(platform, stubs):
    factors, jobs = stubs
    set_id = compute(factors, jobs)
    info = factors.GetFactorSet(jobs_pb2.JobRequest(job_id=set_id))
    closes, factor_rows = aligned_closes(platform.store, SYMBOLS, START, END, 0)
    assert info.job_id == set_id and list(info.names) == NAMES[:3] and list(info.symbols) == SYMBOLS
    assert list(info.expressions) == EXPRESSIONS[:3] and info.times_count == factor_rows
    assert info.first_time == str(np.datetime64(int(closes.index[0]), "ns").astype("datetime64[D]"))
    assert jobs.GetJob(jobs_pb2.JobRequest(job_id=set_id)).task_type == "factor_set"
    expected = evaluate_factors(dict(zip(NAMES, EXPRESSIONS[:3])), window_bars(platform.store, SYMBOLS, factor_rows))
    for index, name in enumerate(NAMES[:3]):
        key = data_keys.factor_set_values(set_id, index)
        stored = np.frombuffer(platform.store.redis.get(key), dtype="<f8").reshape(factor_rows, len(SYMBOLS))
        np.testing.assert_array_equal(stored, expected[name])
        assert platform.store.redis.ttl(key) > 0
    assert platform.store.redis.ttl(data_keys.factor_set(set_id)) > 0

    # AnalyzeFactor on a stored factor = the engine on that factor (symbols and dates: the set's).
    handle = factors.AnalyzeFactor(factor_pb2.FactorAnalysisRequest(
        stored=factor_pb2.StoredFactor(factor_set_id=set_id, factor_name="ma10"), periods=[1, 5]))
    completed(jobs, handle.job_id)
    result = factors.GetFactorAnalysis(jobs_pb2.JobRequest(job_id=handle.job_id))
    prices, _ = aligned_closes(platform.store, SYMBOLS, START, END, 5)
    factor = np.full(prices.shape, np.nan)
    factor[:factor_rows] = expected["ma10"]
    want = analyze_factor(prices.to_numpy(), factor, periods=(1, 5))
    assert close(result.loss_fraction, want.loss_fraction)
    for got in result.periods:
        assert close(got.ic_mean, want.period(got.period).ic_mean)
        assert_all_close(got.mean_return_by_quantile, want.period(got.period).mean_return_by_quantile)


def test_evaluate_many_factors_ranked_with_correlation_and_an_error_row(platform, stubs):
    factors, jobs = stubs
    handle = factors.EvaluateFactors(factor_pb2.EvaluateFactorsRequest(
        symbols=SYMBOLS, start_time=START, end_time=END, expressions=EXPRESSIONS, names=NAMES, periods=[5, 1]))
    assert handle.job_id.startswith("fe-")
    job = completed(jobs, handle.job_id)
    assert job.task_type == "factor_eval"
    result = factors.GetFactorEvaluation(jobs_pb2.JobRequest(job_id=handle.job_id))
    closes, factor_rows = aligned_closes(platform.store, SYMBOLS, START, END, 5)
    values = evaluate_factors(dict(zip(NAMES, EXPRESSIONS)), window_bars(platform.store, SYMBOLS, factor_rows))
    rows = {row.name: row for row in result.rows}
    assert set(rows) == set(NAMES) and result.rank_by == "ic_mean"
    assert rows["flat"].error and "exceeded" in rows["flat"].error and not rows["flat"].periods
    assert [row.name for row in result.rows][-1] == "flat"
    ranked_ics = [abs(row.periods[0].ic_mean) for row in result.rows if not row.error]
    assert ranked_ics == sorted(ranked_ics, reverse=True)
    for name in NAMES[:3]:
        factor = np.full(closes.shape, np.nan)
        factor[:factor_rows] = values[name]
        want = analyze_factor(closes.to_numpy(), factor, periods=(1, 5))
        row = rows[name]
        assert row.expression == EXPRESSIONS[NAMES.index(name)] and close(row.loss_fraction, want.loss_fraction)
        assert [p.period for p in row.periods] == [5, 1]
        for got in row.periods:
            stats = want.period(got.period)
            for ours, theirs in (("ic_mean", "ic_mean"), ("ic_std", "ic_std"), ("icir", "risk_adjusted_ic"),
                                 ("pearson_ic_mean", "pearson_ic_mean"), ("pearson_icir", "pearson_icir"),
                                 ("t_stat", "t_stat"), ("top_minus_bottom", "top_minus_bottom")):
                assert close(getattr(got, ours), getattr(stats, theirs)), (name, got.period, ours)
    assert list(result.correlation_names) == NAMES
    expected = mean_spearman_correlation(np.stack([values[name] for name in NAMES]))
    assert_all_close(result.correlation, expected.ravel())
    assert abs(result.correlation[0]) == pytest.approx(1.0)


def test_evaluate_a_library_subset_and_a_stored_set(platform, stubs):
    from utils.engine.factors.alpha158 import ALPHA158
    factors, jobs = stubs
    handle = factors.EvaluateFactors(factor_pb2.EvaluateFactorsRequest(
        symbols=SYMBOLS, start_time=START, end_time=END, library="alpha158", names=["KMID", "ROC5", "MA10"],
        periods=[1], rank_by="icir"))
    completed(jobs, handle.job_id)
    library = factors.GetFactorEvaluation(jobs_pb2.JobRequest(job_id=handle.job_id))
    assert {row.name for row in library.rows} == {"KMID", "ROC5", "MA10"} and library.rank_by == "icir"
    assert {row.expression for row in library.rows} == {ALPHA158[n] for n in ("KMID", "ROC5", "MA10")}
    icirs = [abs(row.periods[0].icir) for row in library.rows]
    assert icirs == sorted(icirs, reverse=True)

    set_id = compute(factors, jobs, expressions=[], names=["KMID", "ROC5", "MA10"], library="alpha158")
    handle = factors.EvaluateFactors(factor_pb2.EvaluateFactorsRequest(factor_set_id=set_id, periods=[1],
                                                                       rank_by="icir"))
    completed(jobs, handle.job_id)
    stored = factors.GetFactorEvaluation(jobs_pb2.JobRequest(job_id=handle.job_id))
    assert [row.name for row in stored.rows] == [row.name for row in library.rows]
    for a, b in zip(stored.rows, library.rows):
        assert close(a.periods[0].icir, b.periods[0].icir) and close(a.loss_fraction, b.loss_fraction)
        assert a.expression == ""
    assert_all_close(stored.correlation, library.correlation)


@pytest.mark.parametrize("method", ["ic_weighted", "regression"])
def test_combine_stores_the_walk_forward_composite(platform, stubs, method):
    """On six gap-free symbols, so the per-date regressions have enough complete rows."""
    from utils.data.sample import sample_bars
    factors, jobs = stubs
    universe = SYMBOLS[:3] + ["EXTRA1.X", "EXTRA2.X", "EXTRA3.X"]
    for index, symbol in enumerate(universe[3:]):
        platform.store.write(sample_bars(symbol, 15.0 + 7 * index), replace=True, source="test")
    set_id = compute(factors, jobs, symbols=universe)
    handle = factors.CombineFactors(factor_pb2.CombineFactorsRequest(
        factor_set_id=set_id, names=["rev5", "ma10"], method=method, window=20, period=2))
    assert handle.job_id.startswith("fs-")
    completed(jobs, handle.job_id)
    info = factors.GetFactorSet(jobs_pb2.JobRequest(job_id=handle.job_id))
    assert list(info.names) == ["composite"] and info.source_factor_set_id == set_id and info.method == method
    assert list(info.weight_names) == ["rev5", "ma10"] and list(info.symbols) == universe
    closes, factor_rows = aligned_closes(platform.store, universe, START, END, 0)
    values = evaluate_factors(dict(zip(NAMES, EXPRESSIONS[:2])), window_bars(platform.store, universe, factor_rows))
    want = combine_factors(np.stack([values["rev5"], values["ma10"]]), closes.to_numpy(), 2, 20, method)
    raw = platform.store.redis.get(data_keys.factor_set_values(handle.job_id, 0))
    composite = np.frombuffer(raw, dtype="<f8").reshape(factor_rows, len(universe))
    np.testing.assert_allclose(composite, want.composite, rtol=1e-12, atol=1e-15)
    assert np.isnan(composite[:21]).all() and not np.isnan(composite[22:]).any()
    assert_all_close(info.last_weights, want.weights[-1])
    # The composite is a factor like any other: analyse it.
    analysis = factors.AnalyzeFactor(factor_pb2.FactorAnalysisRequest(
        stored=factor_pb2.StoredFactor(factor_set_id=handle.job_id), periods=[1]))
    completed(jobs, analysis.job_id)


def test_submit_time_validation(platform, stubs):
    factors, jobs = stubs
    bad = grpc.StatusCode.INVALID_ARGUMENT
    compute_request = dict(symbols=SYMBOLS, start_time=START, end_time=END)
    cases = [
        (factors.ComputeFactors, factor_pb2.FactorSetRequest(**compute_request), bad, "expressions: is empty"),
        (factors.ComputeFactors, factor_pb2.FactorSetRequest(**compute_request, expressions=["close +"]), bad,
         "expressions[0]: column"),
        (factors.ComputeFactors, factor_pb2.FactorSetRequest(**compute_request, library="alpha999"), bad,
         "library: unknown library 'alpha999'"),
        (factors.ComputeFactors, factor_pb2.FactorSetRequest(**compute_request, library="alpha158", names=["NOPE"]),
         bad, "names[0]: 'NOPE' is not a factor of library alpha158"),
        (factors.ComputeFactors, factor_pb2.FactorSetRequest(**compute_request, expressions=["close"],
                                                             names=["a", "b"]), bad, "names: has 2 labels"),
        (factors.ComputeFactors, factor_pb2.FactorSetRequest(symbols=SYMBOLS[:1], start_time=START, end_time=END,
                                                             expressions=["close"]), bad, "symbols:"),
        (factors.ComputeFactors, factor_pb2.FactorSetRequest(symbols=["000001.SZ", "NOPE.X"], start_time=START,
                                                             end_time=END, expressions=["close"]),
         grpc.StatusCode.NOT_FOUND, "NOPE.X"),
        (factors.EvaluateFactors, factor_pb2.EvaluateFactorsRequest(**compute_request, expressions=["close"],
                                                                    rank_by="sharpe"), bad, "rank_by:"),
        (factors.EvaluateFactors, factor_pb2.EvaluateFactorsRequest(factor_set_id="fs-" + "0" * 32),
         grpc.StatusCode.NOT_FOUND, "fs-" + "0" * 32),
        (factors.EvaluateFactors, factor_pb2.EvaluateFactorsRequest(**compute_request, expressions=["close"],
                                                                    periods=[0]), bad, "periods:"),
        (factors.CombineFactors, factor_pb2.CombineFactorsRequest(factor_set_id="fs-" + "1" * 32),
         grpc.StatusCode.NOT_FOUND, "no factor set"),
        (factors.CombineFactors, factor_pb2.CombineFactorsRequest(factor_set_id=""), bad,
         "factor_set_id:"),
        (factors.GetFactorSet, jobs_pb2.JobRequest(job_id="fs-" + "2" * 32), grpc.StatusCode.NOT_FOUND, ""),
        (factors.GetFactorEvaluation, jobs_pb2.JobRequest(job_id="fe-" + "2" * 32), grpc.StatusCode.NOT_FOUND, ""),
    ]
    for method, message, code, text in cases:
        got, details = code_of(lambda: method(message))
        assert got == code and text in details, (message, got, details)

    set_id = compute(factors, jobs)
    combine = factor_pb2.CombineFactorsRequest
    for message, text in ((combine(factor_set_id=set_id, method="mean"), "method:"),
                          (combine(factor_set_id=set_id, names=["nope"]), "names[0]: 'nope' is not a factor"),
                          (combine(factor_set_id=set_id, window=5000), "window:"),
                          (combine(factor_set_id=set_id, window=2000), "leaves no date to combine"),
                          (combine(factor_set_id=set_id, period=-1), "period:")):
        got, details = code_of(lambda: factors.CombineFactors(message))
        assert got == bad and text in details, (message, details)
    analyze = factor_pb2.FactorAnalysisRequest
    for message, text in ((analyze(stored=factor_pb2.StoredFactor(factor_set_id=set_id)), "stored.factor_name: is empty"),
                          (analyze(stored=factor_pb2.StoredFactor(factor_set_id=set_id, factor_name="x")),
                           "'x' is not a factor"),
                          (analyze(stored=factor_pb2.StoredFactor(factor_set_id=set_id, factor_name="rev5"),
                                   symbols=["000001.SZ", "ZZZ"]), "not a symbol of factor set"),
                          (factor_pb2.EvaluateFactorsRequest(factor_set_id=set_id, symbols=SYMBOLS), "symbols:")):
        call = factors.EvaluateFactors if isinstance(message, factor_pb2.EvaluateFactorsRequest) \
            else factors.AnalyzeFactor
        got, details = code_of(lambda: call(message))
        assert got == bad and text in details, (message, details)
    evaluation = factors.EvaluateFactors(factor_pb2.EvaluateFactorsRequest(factor_set_id=set_id))
    got, details = code_of(lambda: factors.GetFactorSet(jobs_pb2.JobRequest(job_id=evaluation.job_id)))
    assert got == grpc.StatusCode.NOT_FOUND  # an evaluation is not a factor set


def test_panel_size_cap_at_submit(platform, stubs, monkeypatch):
    """factors x symbols x dates x 8 bytes above the servicer's cap (4 GiB; lowered here) is
    INVALID_ARGUMENT naming the product and how to split; below it the job is queued."""
    from services.factor_set_service import FactorSetRPCs, panel_size_problem
    factors, jobs = stubs
    set_id = compute(factors, jobs)
    info = factors.GetFactorSet(jobs_pb2.JobRequest(job_id=set_id))
    dates = info.times_count
    size = 3 * len(SYMBOLS) * dates * 8
    assert FactorSetRPCs.MAX_PANEL_BYTES == 4 * 1024 ** 3
    monkeypatch.setattr(FactorSetRPCs, "MAX_PANEL_BYTES", size - 1)
    request = dict(symbols=SYMBOLS, start_time=START, end_time=END, expressions=EXPRESSIONS[:3], names=NAMES[:3])
    for call in (lambda: factors.ComputeFactors(factor_pb2.FactorSetRequest(**request)),
                 lambda: factors.EvaluateFactors(factor_pb2.EvaluateFactorsRequest(**request)),
                 lambda: factors.EvaluateFactors(factor_pb2.EvaluateFactorsRequest(factor_set_id=set_id)),
                 lambda: factors.CombineFactors(factor_pb2.CombineFactorsRequest(factor_set_id=set_id, window=5))):
        code, details = code_of(call)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert f"3 x {len(SYMBOLS)} x {dates:,} x 8" in details and "split the request" in details
    # two of the three factors fit
    handle = factors.EvaluateFactors(factor_pb2.EvaluateFactorsRequest(factor_set_id=set_id, names=NAMES[:2]))
    assert handle.job_id.startswith("fe-")
    handle = factors.ComputeFactors(factor_pb2.FactorSetRequest(**{**request, "expressions": EXPRESSIONS[:2],
                                                                   "names": NAMES[:2]}))
    assert handle.job_id.startswith("fs-")
    # at the default 4 GiB, 158 Alpha158 factors x 3,000 symbols x 2,520 dates do not fit
    problem = panel_size_problem(158, 3000, 2520, 4 * 1024 ** 3)
    assert problem.startswith("factors x symbols x dates x 8 bytes = 158 x 3,000 x 2,520 x 8 = 8.9 GiB, above "
                              "the 4 GiB limit") and "fewer symbols" in problem
    assert panel_size_problem(50, 3000, 2520, 4 * 1024 ** 3) is None
