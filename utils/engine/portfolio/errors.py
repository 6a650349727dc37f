"""The portfolio engine's own errors: an infeasible problem names the constraint at fault."""
from __future__ import annotations


class InfeasibleProblem(ValueError):
    """No portfolio satisfies the constraints; the message names the constraint(s) and the numbers."""


class OptimizationFailed(RuntimeError):
    """The solver stopped without a solution for a reason other than infeasibility."""
