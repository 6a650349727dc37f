"""Which factor values survive alphalens ``get_clean_factor_and_forward_returns``, and why the rest
were dropped: a readable version of its ``MaxLossExceededError``.

A NaN cell of the factor panel is not a factor value (the panel's way to say "missing"), as when
alphalens gets a factor Series without that entry; every other cell counts, and is dropped for the
first reason that applies: a non-finite factor (±inf), a forward return missing for some period
(no price at the date or ``period`` rows later, or too close to the panel's end), a forward return
removed by the z-score filter, or its date's (date-and-group's) binning failing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BINNING_HINT = ("too many identical factor values span more than one quantile; use "
                "rank_ties='first', fewer quantiles, or bins")


class MaxLossExceeded(ValueError):
    """More of the factor was dropped than ``max_loss`` allows; the message says what and why."""


class BinningFailed(ValueError):
    """With ``max_loss=0`` a date's bins could not be built (alphalens raises instead of dropping)."""


@dataclass(frozen=True)
class FactorLoss:
    """Counts of factor values and of those dropped, by the first reason that applied."""

    factor_values: int  # finite or infinite factor cells (NaN cells are not factor values)
    missing_factor: int  # NaN cells of the panel, not counted as losses
    non_finite_factor: int
    missing_forward_returns: int
    zscore_outliers: int
    binning: int
    failed_segments: int  # dates (or date-and-group segments) whose bin edges were not unique
    kept: int

    @property
    def fraction(self) -> float:
        """Share of factor values dropped: alphalens' ``tot_loss``."""
        return 1.0 - self.kept / self.factor_values if self.factor_values else 0.0

    @property
    def binning_fraction(self) -> float:
        return self.binning / self.factor_values if self.factor_values else 0.0

    @property
    def forward_returns_fraction(self) -> float:
        return self.fraction - self.binning_fraction

    def summary(self) -> str:
        """alphalens' printed line, then the breakdown it does not give."""
        parts = [f"{self.non_finite_factor:,} non-finite (±inf) factor values",
                 f"{self.missing_forward_returns:,} without a forward return for every period "
                 f"(no price at the date or that many rows later, or too close to the end)",
                 f"{self.zscore_outliers:,} forward-return z-score outliers",
                 f"{self.binning:,} in {self.failed_segments:,} dates (or date-group segments) "
                 f"whose quantile bin edges were not unique ({BINNING_HINT}) or outside the bins"]
        return (f"Dropped {self.fraction * 100:.1f}% entries from factor data: "
                f"{self.forward_returns_fraction * 100:.1f}% in forward returns computation and "
                f"{self.binning_fraction * 100:.1f}% in binning phase. Of {self.factor_values:,} "
                f"factor values: " + "; ".join(parts) + f". {self.missing_factor:,} NaN cells of "
                f"the panel are missing values, not counted.")

    def exceeded_message(self, max_loss: float) -> str:
        return (f"max_loss ({max_loss * 100:.1f}%) exceeded {self.fraction * 100:.1f}%, consider "
                f"increasing it. " + self.summary())


def forward_return_mask(factor: np.ndarray, raw_returns: np.ndarray, outliers: np.ndarray
                        ) -> tuple[np.ndarray, dict[str, int]]:
    """Cells with a finite factor and every period's forward return kept, and drop counts so far."""
    present = ~np.isnan(factor)
    finite = np.isfinite(factor)
    has_returns = finite & ~np.isnan(raw_returns).any(axis=0)
    kept = has_returns & ~outliers.any(axis=0)
    counts = {"factor_values": int(present.sum()), "missing_factor": int((~present).sum()),
              "non_finite_factor": int((present & ~finite).sum()),
              "missing_forward_returns": int((finite & ~has_returns).sum()),
              "zscore_outliers": int((has_returns & ~kept).sum())}
    return kept, counts


def finish_loss(counts: dict[str, int], before_binning: np.ndarray, labels: np.ndarray,
                failed: np.ndarray) -> FactorLoss:
    kept = before_binning & (labels > 0)
    return FactorLoss(binning=int(before_binning.sum() - kept.sum()),
                      failed_segments=int(failed.sum()), kept=int(kept.sum()), **counts)


def check_loss(loss: FactorLoss, max_loss: float) -> None:
    """alphalens' rule: ``max_loss=0`` lets a binning failure raise; above ``max_loss``, fail."""
    if max_loss == 0 and loss.failed_segments:
        raise BinningFailed(f"Bin edges must be unique on {loss.failed_segments} dates (or "
                            f"date-group segments): {BINNING_HINT}. " + loss.summary())
    if loss.fraction > max_loss:
        raise MaxLossExceeded(loss.exceeded_message(max_loss))
