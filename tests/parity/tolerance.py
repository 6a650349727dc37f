"""The parity contract against TA-Lib: identical NaN positions, values within 1e-9*max(1,|ref|)."""
from __future__ import annotations

import numpy as np


def assert_matches(actual, reference, tolerance=1e-9):
    actual = np.asarray(actual)
    np.testing.assert_array_equal(np.isnan(actual), np.isnan(reference))
    valid = ~np.isnan(reference)
    error = np.abs(actual[valid] - reference[valid])
    assert np.all(error <= tolerance * np.maximum(1.0, np.abs(reference[valid]))), error.max()
