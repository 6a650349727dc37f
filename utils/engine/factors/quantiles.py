"""Factor quantiles per date as alphalens ``quantize_factor``: ``pd.qcut(x, q, labels=False) + 1``
(or ``pd.cut`` for ``bins``) on each date, each (date, group) with ``by_group``, each sign with
``zero_aware``. Edges and labels follow pandas 3 to the bit: qcut's edges are ``np.quantile``
(linear) at ``linspace(0, 1, q + 1)`` nudged up where ``k / q`` is not exact, a value equal to an
edge falls in the lower bin, the lowest edge is included; ``cut`` with a bin count widens the
range by 0.1 %. A segment whose edges are not unique ("Bin edges must be unique", too many tied
values) fails as a whole and its cells are dropped, as alphalens does with ``max_loss > 0``;
``rank_ties="first"`` bins first-ranks instead of values (ties broken by symbol order), the usual
fix, so edges are always unique.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, prange

QCUT, CUT_COUNT, CUT_EDGES = 0, 1, 2


@dataclass(frozen=True)
class BinSpec:
    """How one segment is cut: the kernel's parameters, validated once."""

    mode: int
    fractions: np.ndarray  # QCUT: quantile fractions of one piece (a sign half when zero_aware)
    edges: np.ndarray  # CUT_EDGES: the given bin edges
    n_bins: int  # CUT_COUNT: bins of one piece
    zero_aware: bool
    first_ranks: bool
    n_labels: int  # labels run 1..n_labels


def _qcut_fractions(count: int) -> np.ndarray:
    """pandas 3 ``qcut``'s quantile fractions for an integer ``q`` (rounded up when inexact)."""
    fractions = np.linspace(0, 1, count + 1)
    np.putmask(fractions, count * fractions != np.arange(count + 1), np.nextafter(fractions, 1))
    return fractions


def bin_spec(quantiles, bins, zero_aware: bool = False, rank_ties: str = "average") -> BinSpec:
    """Validate alphalens' binning arguments: exactly one of ``quantiles`` / ``bins``, each an int
    or a sequence (quantile fractions / bin edges); ``zero_aware`` only with an int."""
    if (quantiles is None) == (bins is None):
        raise ValueError("Either quantiles or bins should be provided")
    if rank_ties not in ("average", "first"):
        raise ValueError(f"rank_ties must be 'average' or 'first', not {rank_ties!r}")
    if rank_ties == "first" and quantiles is None:
        raise ValueError("rank_ties='first' applies to quantiles, not to value bins")
    spec = quantiles if quantiles is not None else bins
    is_count = isinstance(spec, (int, np.integer)) and not isinstance(spec, bool)
    if zero_aware and not is_count:
        raise ValueError("zero_aware should only be True when quantiles or bins is an integer")
    empty = np.empty(0)
    if is_count:
        per_piece = int(spec) // 2 if zero_aware else int(spec)
        if per_piece < 1:
            raise ValueError(f"{'quantiles' if quantiles is not None else 'bins'} must leave at "
                             f"least one bin per {'sign' if zero_aware else 'date'}, got {spec}")
        n_labels = 2 * per_piece if zero_aware else per_piece
        if quantiles is not None:
            return BinSpec(QCUT, _qcut_fractions(per_piece), empty, 0, zero_aware,
                           rank_ties == "first", n_labels)
        return BinSpec(CUT_COUNT, empty, empty, per_piece, zero_aware, False, n_labels)
    values = np.asarray(spec, dtype=np.float64)
    if values.ndim != 1 or values.size < 2:
        raise ValueError("a sequence of quantiles or bin edges needs at least two entries")
    if quantiles is not None:
        return BinSpec(QCUT, values, empty, 0, False, rank_ties == "first", values.size - 1)
    if np.any(np.diff(values) < 0):
        raise ValueError("bins must increase monotonically.")
    return BinSpec(CUT_EDGES, empty, values, 0, False, False, values.size - 1)


@njit(cache=True)
def _quantile_edges(keys, fractions, edges):
    """``np.quantile(keys, fractions, method="linear")`` for sorted ``keys`` (numpy's _lerp)."""
    n = keys.size
    for k in range(fractions.size):
        virtual = (n - 1) * fractions[k]
        if n == 0:
            edges[k] = np.nan
        elif virtual >= n - 1:
            edges[k] = keys[n - 1]
        elif virtual < 0:
            edges[k] = keys[0]
        else:
            below = np.floor(virtual)
            i = int(below)
            gamma = virtual - below
            diff = keys[i + 1] - keys[i]
            if gamma >= 0.5:
                edges[k] = keys[i + 1] - diff * (1 - gamma)
            else:
                edges[k] = keys[i] + diff * gamma


@njit(cache=True)
def _count_edges(low, high, n_bins, edges):
    """pandas ``cut(x, n_bins)``'s edges from the piece's min and max (``np.linspace`` exactly)."""
    if low == high:
        low -= 0.001 * abs(low) if low != 0 else 0.001
        high += 0.001 * abs(high) if high != 0 else 0.001
    div = n_bins
    delta = high - low
    step = delta / div
    for k in range(n_bins + 1):
        if step == 0:
            edges[k] = (k / div) * delta + low
        else:
            edges[k] = k * step + low
    edges[n_bins] = high


@njit(cache=True)
def _cut_piece(keys, mode, fractions, given_edges, n_bins, offset, out):
    """Label sorted ``keys`` into ``out`` (0 = outside every bin); False when pandas would raise."""
    n = keys.size
    if mode == QCUT:
        edges = np.empty(fractions.size)
        _quantile_edges(keys, fractions, edges)
        include_lowest = True
    elif mode == CUT_COUNT:
        if n == 0:
            return False  # "Cannot cut empty array"
        edges = np.empty(n_bins + 1)
        low, high = keys[0], keys[n - 1]
        _count_edges(low, high, n_bins, edges)
        if low != high:
            edges[0] -= (high - low) * 0.001
        include_lowest = False
    else:
        edges = given_edges
        include_lowest = False
    n_edges = edges.size
    if n_edges != 2:
        for a in range(n_edges):
            for b in range(a + 1, n_edges):
                same = edges[a] == edges[b] or (np.isnan(edges[a]) and np.isnan(edges[b]))
                if same:
                    return False  # "Bin edges must be unique"
    for j in range(n):
        x = keys[j]
        lo, hi = 0, n_edges
        while lo < hi:  # searchsorted(side="left")
            mid = (lo + hi) // 2
            if edges[mid] < x:
                lo = mid + 1
            else:
                hi = mid
        if include_lowest and x == edges[0]:
            lo = 1
        out[j] = 0 if (lo == 0 or lo == n_edges) else lo + offset
    return True


@njit(cache=True)
def _cut_segment(row, seg, mode, fractions, edges, n_bins, zero_aware, first_ranks, half, labels_row):
    """Label one segment (``seg``: its columns sorted by value, ties by column); False on failure."""
    n = seg.size
    split = 0
    if zero_aware:
        while split < n and row[seg[split]] < 0:
            split += 1
    pieces = ((0, split, 0), (split, n, half)) if zero_aware else ((0, n, 0), (n, n, 0))
    for p in range(2 if zero_aware else 1):
        lo, hi, offset = pieces[p]
        keys = np.empty(hi - lo)
        for i in range(hi - lo):
            keys[i] = (i + 1.0) if first_ranks else row[seg[lo + i]]
        out = np.zeros(hi - lo, np.int16)
        if not _cut_piece(keys, mode, fractions, edges, n_bins, offset, out):
            return False
        for i in range(hi - lo):
            labels_row[seg[lo + i]] = out[i]
    return True


@njit(cache=True)
def _rank_labelled(row, ordered, labels_row, ranks_row):
    """Average ranks of the labelled cells of a date, walking its value order once (saves the
    IC and rank-autocorrelation a second sort of the factor)."""
    kept = np.empty(ordered.size, np.int64)
    count = 0
    for c in ordered:
        if labels_row[c] > 0:
            kept[count] = c
            count += 1
    start = 0
    while start < count:
        end = start
        while end + 1 < count and row[kept[end + 1]] == row[kept[start]]:
            end += 1
        rank = (start + end + 2) / 2.0
        for k in range(start, end + 1):
            ranks_row[kept[k]] = rank
        start = end + 1


@njit(parallel=True, cache=True)
def _quantize(factor, valid, groups, n_groups, mode, fractions, edges, n_bins, zero_aware,
              first_ranks, half):
    n_dates, n_symbols = factor.shape
    labels = np.zeros((n_dates, n_symbols), np.int16)
    ranks = np.full((n_dates, n_symbols), np.nan)
    failed = np.zeros((n_dates, n_groups), np.bool_)
    for t in prange(n_dates):
        row = factor[t]
        cols = np.empty(n_symbols, np.int64)
        count = 0
        for j in range(n_symbols):
            if valid[t, j]:
                cols[count] = j
                count += 1
        cols = cols[:count]
        values = np.empty(count)
        for k in range(count):
            values[k] = row[cols[k]]
        ordered = cols[np.argsort(values, kind="mergesort")]
        starts = np.zeros(n_groups + 1, np.int64)  # stable counting sort by group keeps value order
        for c in ordered:
            starts[groups[c] + 1] += 1
        for g in range(n_groups):
            starts[g + 1] += starts[g]
        fill = starts[:-1].copy()
        bucketed = np.empty(count, np.int64)
        for c in ordered:
            bucketed[fill[groups[c]]] = c
            fill[groups[c]] += 1
        labels_row = labels[t]
        for g in range(n_groups):
            seg = bucketed[starts[g]:starts[g + 1]]
            if seg.size == 0:
                continue
            if not _cut_segment(row, seg, mode, fractions, edges, n_bins, zero_aware, first_ranks,
                                half, labels_row):
                failed[t, g] = True
                for c in seg:
                    labels_row[c] = 0
        _rank_labelled(row, ordered, labels_row, ranks[t])
    return labels, ranks, failed


def quantize(factor: np.ndarray, valid: np.ndarray, spec: BinSpec,
             groups: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels 1..spec.n_labels per cell (0 = not binned), the average ranks of the factor over
    each date's binned cells (NaN elsewhere) and, per date and group, whether that segment's
    binning failed. ``groups`` given = bin each (date, group) apart (``by_group``)."""
    n_symbols = factor.shape[1]
    codes = np.zeros(n_symbols, np.int64) if groups is None else np.asarray(groups, np.int64)
    n_groups = int(codes.max()) + 1 if codes.size else 1
    half = spec.n_labels // 2
    return _quantize(np.ascontiguousarray(factor, np.float64), np.ascontiguousarray(valid), codes,
                     n_groups, spec.mode, spec.fractions, spec.edges, spec.n_bins, spec.zero_aware,
                     spec.first_ranks, half)
