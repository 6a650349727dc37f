"""Qlib's Alpha158 factor library written in our factor language (``expressions``).

Qlib's default Alpha158 config (``qlib.contrib.data.loader.Alpha158DL``): the 9 KBAR factors, the
price group at window 0 (OPEN0, HIGH0, LOW0, VWAP0) and 29 rolling factors for each window of 5,
10, 20, 30 and 60 rows: 9 + 4 + 145 = 158. ``ALPHA158`` holds 157 of them, each beside Qlib's own
text in ``QLIB_ALPHA158``; ``SKIPPED`` names the one left out and why.

Where the two differ (the expressions are the same formulas):
- Qlib's rolling operators use ``min_periods=1`` (partial windows during warm-up, NaNs skipped
  inside a window); ours are NaN until the window is full and wherever it holds a NaN. Values agree
  wherever the window is full and NaN-free.
- ``$close > Ref($close, 1)`` is False in pandas where a side is NaN; ours is NaN there, so
  CNTP/CNTN/CNTD start one row later instead of counting the first row as "not up".
- Qlib's ``Corr`` is also NaN where either window's std is below 2e-5 (an absolute threshold);
  ours only where a window is exactly flat.
"""
from __future__ import annotations

WINDOWS = (5, 10, 20, 30, 60)

_KBAR = {  # name: (ours, Qlib)
    "KMID": ("(close - open) / open", "($close-$open)/$open"),
    "KLEN": ("(high - low) / open", "($high-$low)/$open"),
    "KMID2": ("(close - open) / (high - low + 1e-12)", "($close-$open)/($high-$low+1e-12)"),
    "KUP": ("(high - greater(open, close)) / open", "($high-Greater($open, $close))/$open"),
    "KUP2": ("(high - greater(open, close)) / (high - low + 1e-12)",
             "($high-Greater($open, $close))/($high-$low+1e-12)"),
    "KLOW": ("(less(open, close) - low) / open", "(Less($open, $close)-$low)/$open"),
    "KLOW2": ("(less(open, close) - low) / (high - low + 1e-12)",
              "(Less($open, $close)-$low)/($high-$low+1e-12)"),
    "KSFT": ("(2 * close - high - low) / open", "(2*$close-$high-$low)/$open"),
    "KSFT2": ("(2 * close - high - low) / (high - low + 1e-12)", "(2*$close-$high-$low)/($high-$low+1e-12)"),
}

_PRICE = {  # window 0 of the price group: the field over today's close
    "OPEN0": ("open / close", "$open/$close"),
    "HIGH0": ("high / close", "$high/$close"),
    "LOW0": ("low / close", "$low/$close"),
}

_UP = "greater(close - ref(close, 1), 0)"
_DOWN = "greater(ref(close, 1) - close, 0)"
_MOVE = "abs(close - ref(close, 1))"
_VUP = "greater(volume - ref(volume, 1), 0)"
_VDOWN = "greater(ref(volume, 1) - volume, 0)"
_VMOVE = "abs(volume - ref(volume, 1))"
_QUP = "Greater($close-Ref($close, 1), 0)"
_QDOWN = "Greater(Ref($close, 1)-$close, 0)"
_QMOVE = "Abs($close-Ref($close, 1))"
_QVUP = "Greater($volume-Ref($volume, 1), 0)"
_QVDOWN = "Greater(Ref($volume, 1)-$volume, 0)"
_QVMOVE = "Abs($volume-Ref($volume, 1))"
_WEIGHTED = "abs(close / ref(close, 1) - 1) * volume"
_QWEIGHTED = "Abs($close/Ref($close, 1)-1)*$volume"

_ROLLING = {  # stem: (ours, Qlib), templates over the window {d}
    "ROC": ("ref(close, {d}) / close", "Ref($close, {d})/$close"),
    "MA": ("ts_mean(close, {d}) / close", "Mean($close, {d})/$close"),
    "STD": ("ts_std(close, {d}) / close", "Std($close, {d})/$close"),
    "BETA": ("ts_slope(close, {d}) / close", "Slope($close, {d})/$close"),
    "RSQR": ("ts_rsquare(close, {d})", "Rsquare($close, {d})"),
    "RESI": ("ts_resi(close, {d}) / close", "Resi($close, {d})/$close"),
    "MAX": ("ts_max(high, {d}) / close", "Max($high, {d})/$close"),
    "MIN": ("ts_min(low, {d}) / close", "Min($low, {d})/$close"),
    "QTLU": ("ts_quantile(close, {d}, 0.8) / close", "Quantile($close, {d}, 0.8)/$close"),
    "QTLD": ("ts_quantile(close, {d}, 0.2) / close", "Quantile($close, {d}, 0.2)/$close"),
    "RANK": ("ts_rank(close, {d})", "Rank($close, {d})"),
    "RSV": ("(close - ts_min(low, {d})) / (ts_max(high, {d}) - ts_min(low, {d}) + 1e-12)",
            "($close-Min($low, {d}))/(Max($high, {d})-Min($low, {d})+1e-12)"),
    "IMAX": ("ts_argmax(high, {d}) / {d}", "IdxMax($high, {d})/{d}"),
    "IMIN": ("ts_argmin(low, {d}) / {d}", "IdxMin($low, {d})/{d}"),
    "IMXD": ("(ts_argmax(high, {d}) - ts_argmin(low, {d})) / {d}", "(IdxMax($high, {d})-IdxMin($low, {d}))/{d}"),
    "CORR": ("ts_corr(close, log(volume + 1), {d})", "Corr($close, Log($volume+1), {d})"),
    "CORD": ("ts_corr(close / ref(close, 1), log(volume / ref(volume, 1) + 1), {d})",
             "Corr($close/Ref($close,1), Log($volume/Ref($volume, 1)+1), {d})"),
    "CNTP": ("ts_mean(close > ref(close, 1), {d})", "Mean($close>Ref($close, 1), {d})"),
    "CNTN": ("ts_mean(close < ref(close, 1), {d})", "Mean($close<Ref($close, 1), {d})"),
    "CNTD": ("ts_mean(close > ref(close, 1), {d}) - ts_mean(close < ref(close, 1), {d})",
             "Mean($close>Ref($close, 1), {d})-Mean($close<Ref($close, 1), {d})"),
    "SUMP": (f"ts_sum({_UP}, {{d}}) / (ts_sum({_MOVE}, {{d}}) + 1e-12)",
             f"Sum({_QUP}, {{d}})/(Sum({_QMOVE}, {{d}})+1e-12)"),
    "SUMN": (f"ts_sum({_DOWN}, {{d}}) / (ts_sum({_MOVE}, {{d}}) + 1e-12)",
             f"Sum({_QDOWN}, {{d}})/(Sum({_QMOVE}, {{d}})+1e-12)"),
    "SUMD": (f"(ts_sum({_UP}, {{d}}) - ts_sum({_DOWN}, {{d}})) / (ts_sum({_MOVE}, {{d}}) + 1e-12)",
             f"(Sum({_QUP}, {{d}})-Sum({_QDOWN}, {{d}}))/(Sum({_QMOVE}, {{d}})+1e-12)"),
    "VMA": ("ts_mean(volume, {d}) / (volume + 1e-12)", "Mean($volume, {d})/($volume+1e-12)"),
    "VSTD": ("ts_std(volume, {d}) / (volume + 1e-12)", "Std($volume, {d})/($volume+1e-12)"),
    "WVMA": (f"ts_std({_WEIGHTED}, {{d}}) / (ts_mean({_WEIGHTED}, {{d}}) + 1e-12)",
             f"Std({_QWEIGHTED}, {{d}})/(Mean({_QWEIGHTED}, {{d}})+1e-12)"),
    "VSUMP": (f"ts_sum({_VUP}, {{d}}) / (ts_sum({_VMOVE}, {{d}}) + 1e-12)",
              f"Sum({_QVUP}, {{d}})/(Sum({_QVMOVE}, {{d}})+1e-12)"),
    "VSUMN": (f"ts_sum({_VDOWN}, {{d}}) / (ts_sum({_VMOVE}, {{d}}) + 1e-12)",
              f"Sum({_QVDOWN}, {{d}})/(Sum({_QVMOVE}, {{d}})+1e-12)"),
    "VSUMD": (f"(ts_sum({_VUP}, {{d}}) - ts_sum({_VDOWN}, {{d}})) / (ts_sum({_VMOVE}, {{d}}) + 1e-12)",
              f"(Sum({_QVUP}, {{d}})-Sum({_QVDOWN}, {{d}}))/(Sum({_QVMOVE}, {{d}})+1e-12)"),
}

SKIPPED = {
    "VWAP0": "Qlib's $vwap is the exchange's daily amount / volume, which OHLCV bars do not carry (our "
             "vwap indicator is a session-cumulative typical-price VWAP, a different number)",
}


def _library() -> tuple[dict[str, str], dict[str, str]]:
    pairs = {**_KBAR, **_PRICE}
    for stem, (ours, qlib) in _ROLLING.items():
        for window in WINDOWS:
            pairs[f"{stem}{window}"] = (ours.format(d=window), qlib.format(d=window))
    return {name: ours for name, (ours, _) in pairs.items()}, {name: qlib for name, (_, qlib) in pairs.items()}


ALPHA158, QLIB_ALPHA158 = _library()
LIBRARIES = {"alpha158": ALPHA158}
