"""Entry/exit rules as text: a small language parsed (never eval'd) and evaluated over bar panels.

    sma(close, 10) crosses_above sma(close, 20) and rsi(close, 14) < 70

The grammar, the functions and the parser are in ``rule_syntax``; this module holds the public
API (``parse_rule``, ``Rule``, ``evaluate_rules``, ``RuleError``) and the evaluation.

NaN: a comparison with a NaN side is *unknown*; ``not``/``and``/``or`` follow Kleene's
three-valued logic (False and unknown = False, True or unknown = True, not unknown = unknown) and
the rule holds only where it is known True, so warm-up bars are False even under ``not``.
Division by zero gives inf/NaN, never an exception. "Nesting depth" counts open parentheses
(groups and calls), unary minus and ``not``; it bounds the parser's recursion and the tree height.
"""
from __future__ import annotations

import operator
from dataclasses import dataclass
from functools import reduce
from typing import Any, Mapping

import numpy as np

from utils.engine.backtest.rule_syntax import (Arithmetic, Field, Helper, Indicator, Logical, Negate, Node, Not,
                                               Number, Parser, RuleError, FIELDS, bar_inputs, lookback, parse_text,
                                               walk)
from utils.engine.indicators.features import KINDS, session_starts
from utils.engine.indicators.kernels import host_panels, run_kind
from utils.engine.indicators.step_core import INPUT_NAMES


@dataclass(frozen=True)
class Rule:
    text: str
    ast: Node

    def warmup(self) -> int:
        """Bars of history before the first row where the rule can hold (max indicator lookback,
        plus shifts and rolling windows along a path, plus 1 for a crossing)."""
        return lookback(self.ast)

    def inputs(self) -> frozenset[str]:
        """Bar fields the rule reads (vwap also uses ``time``, when given, for its sessions)."""
        return bar_inputs(walk(self.ast))

    def evaluate(self, bars: Mapping[str, Any]) -> np.ndarray:
        """Boolean series/panel of the bars' shape: True where the rule holds."""
        return evaluate_rules({"rule": self}, bars)["rule"]


def parse_rule(text: str, field: str = "rule") -> Rule:
    """Parse and type-check ``text``; raises ``RuleError`` naming ``field`` and the column."""
    return Rule(text, parse_text(Parser, text, field, "rule"))


# ------------------------------------------------------------------ evaluation
_ARITHMETIC = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}
_COMPARE = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge,
            "==": operator.eq, "!=": operator.ne}


def _shift_rows(values: np.ndarray, rows: int) -> np.ndarray:
    """``values`` moved down ``rows`` rows (row t holds row t - rows), NaN above."""
    shifted = np.full(values.shape, np.nan)
    if rows < values.shape[0]:
        shifted[rows:] = values[:values.shape[0] - rows]
    return shifted


def _rolling(values: np.ndarray, window: int, combine) -> np.ndarray:
    """``combine`` (np.maximum/np.minimum, which propagate NaN) over the last ``window`` rows
    including the current one: NaN until ``window`` rows and wherever the window holds a NaN, as
    pandas ``rolling(window).max()``. Built from power-of-two blocks: O(rows * log window)."""
    result, covered, block, width = None, 0, values, 1
    while True:
        if window & width:
            part = _shift_rows(block, covered)
            result = part if result is None else combine(result, part)
            covered += width
        if covered == window:
            return result
        block = combine(block, _shift_rows(block, width))  # block now spans 2 * width rows
        width *= 2


class _Evaluation:
    """One pass over one set of bars; indicator runs are cached across every rule evaluated."""

    def __init__(self, bars: Any, fields: set[str]):
        if not isinstance(bars, Mapping):
            bars = {"close": bars}
        missing = [name for name in FIELDS if name in fields and bars.get(name) is None]
        if missing:
            given = [name for name in FIELDS if bars.get(name) is not None]
            raise ValueError(f"the rules read {', '.join(missing)}, which the bars given "
                             f"({', '.join(given) or 'none'}) do not have")
        read = [name for name in FIELDS if name in fields]
        if not read:  # constant rules still need the bars' shape
            read = [name for name in INPUT_NAMES if bars.get(name) is not None][:1]
            if not read:
                raise ValueError(f"bars must hold at least one of {', '.join(INPUT_NAMES)}")
        self.panels, self.was_series = host_panels(np, {name: bars[name] for name in read})
        self.shape = next(iter(self.panels.values())).shape
        self.time = bars.get("time")
        self.new_session: np.ndarray | None = None
        self.indicators: dict[tuple, np.ndarray] = {}
        self.values: dict[Node, np.ndarray] = {}

    def holds(self, node: Node) -> np.ndarray:
        true, _ = self.condition(node)
        holds = np.ascontiguousarray(np.broadcast_to(true, self.shape), dtype=np.bool_)
        return holds[:, 0] if self.was_series else holds

    def panel(self, node: Node) -> np.ndarray:
        return np.broadcast_to(self.number(node), self.shape)

    def number(self, node: Node) -> Any:
        if isinstance(node, Number):
            return np.float64(node.value)
        if isinstance(node, Field):
            return self.panels[node.name]
        if isinstance(node, Negate):
            return -self.number(node.operand)
        if isinstance(node, Arithmetic):
            value = self.number(node.operands[0])
            for op, operand in zip(node.operators, node.operands[1:]):
                value = _ARITHMETIC[op](value, self.number(operand))
            return value
        cached = self.values.get(node)
        if cached is None:
            cached = self.values[node] = self.indicator(node) if isinstance(node, Indicator) else self.helper(node)
        return cached

    def helper(self, node: Helper) -> np.ndarray:
        if node.name == "abs":
            return np.abs(self.number(node.operand))
        values = self.panel(node.operand)
        if node.name == "shift":
            return _shift_rows(values, node.window)
        return _rolling(values, node.window, np.maximum if node.name == "highest" else np.minimum)

    def indicator(self, node: Indicator) -> np.ndarray:
        key = (node.kind, node.params, node.series)
        outputs = self.indicators.get(key)
        if outputs is None:
            kind = KINDS[node.kind]
            if node.series is None:
                panels = {name: self.panels[name] for name in kind.inputs}
            else:
                panels = {"close": np.ascontiguousarray(self.panel(node.series), dtype=np.float64)}
            outputs = self.indicators[key] = run_kind(kind, node.params, panels, self.sessions())
        return outputs[:, :, node.output]

    def sessions(self) -> np.ndarray | None:
        if self.time is not None and self.new_session is None:
            self.new_session = session_starts(np.asarray(self.time))
            if self.new_session.shape[0] != self.shape[0]:
                raise ValueError("bars: time must have one entry per row")
        return self.new_session

    def condition(self, node: Node) -> tuple[Any, Any]:
        """``(true, false)`` masks; where neither is set the condition is unknown (a NaN was compared)."""
        if isinstance(node, Not):
            true, false = self.condition(node.operand)
            return false, true
        if isinstance(node, Logical):
            trues, falses = zip(*(self.condition(operand) for operand in node.operands))
            if node.op == "and":
                return reduce(np.logical_and, trues), reduce(np.logical_or, falses)
            return reduce(np.logical_or, trues), reduce(np.logical_and, falses)
        if node.op.startswith("crosses"):
            left, right = self.panel(node.left), self.panel(node.right)
            before_left, before_right = _shift_rows(left, 1), _shift_rows(right, 1)
            known = ~(np.isnan(left) | np.isnan(right) | np.isnan(before_left) | np.isnan(before_right))
            if node.op == "crosses_above":
                holds = (left > right) & (before_left <= before_right)
            else:
                holds = (left < right) & (before_left >= before_right)
        else:
            left, right = self.number(node.left), self.number(node.right)
            known = ~(np.isnan(left) | np.isnan(right))
            holds = _COMPARE[node.op](left, right)
        return holds & known, ~holds & known


def evaluate_rules(rules: Mapping[str, Rule], bars: Any) -> dict[str, np.ndarray]:
    """Each rule's boolean series/panel over the same bars, computing each distinct indicator
    call (kind, parameters, input series) once for all of them (entry and exit share it)."""
    fields = set().union(*(rule.inputs() for rule in rules.values()))
    evaluation = _Evaluation(bars, fields)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        return {name: evaluation.holds(rule.ast) for name, rule in rules.items()}
