"""Factor expressions: the signal-rule language, numeric at the top, with Qlib/WorldQuant operators.

    ts_corr(close, log(volume + 1), 20)        cs_rank(ts_mean(close, 5) / close - 1)
    (close - open) / open                      ts_std(close / ref(close, 1) - 1, 20) * rsi(close, 14)

The text is parsed by the rule language's parser (``rule_syntax.Parser``; never eval'd) with two
differences: the expression must be a number, and the operators of ``expression_ops.OPERATORS``
are functions beside the indicator functions and helpers (``abs`` is the operator; ``shift``,
``highest``, ``lowest`` stay). A comparison (``close > open``) may be an operator's argument, where
it counts 1 when it holds, 0 when not and NaN when a side is NaN: ``ts_mean(close > ref(close, 1), 20)``.
Errors are ``RuleError(field, column, reason)`` with the 1-based column.

Evaluation runs on (T, N) host panels: one kernel per operator, each distinct sub-expression
computed once (also across the factors of one ``evaluate_factors`` call), indicators through the
indicator engine (each column starts at its first valid row, as in the rule language).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from utils.engine.backtest.rule_syntax import (FUNCTIONS, HELPERS, KEYWORDS, Arithmetic, Compare, Helper, Indicator,
                                               FIELDS, Logical, Negate, Node, Not, Number, Parser, _is_condition, _suggest,
                                               _Token, bar_inputs, parse_text)
from utils.engine.backtest.rule_syntax import _unknown_function as _rule_unknown_function
from utils.engine.backtest.rule_syntax import lookback as _rule_lookback
from utils.engine.backtest.signal_rules import _Evaluation
from utils.engine.factors.expression_ops import ELEMENTWISE, OPERATORS
from utils.engine.indicators.features import KINDS


@dataclass(frozen=True)
class Operation:
    """A factor operator applied to series arguments and number-literal parameters."""
    name: str
    args: tuple[Node, ...]
    params: tuple[int | float, ...]
    column: int = field(default=0, compare=False)


def _function_names() -> frozenset[str]:
    clashes = [name for name in OPERATORS
               if name in FIELDS or name in KEYWORDS or (name in FUNCTIONS and name not in HELPERS)]
    if clashes:
        raise RuntimeError(f"factor operators {clashes} shadow a bar field, keyword or indicator function")
    return frozenset(FUNCTIONS) | frozenset(OPERATORS)


FACTOR_FUNCTIONS = _function_names()


class FactorParser(Parser):
    """The rule parser with a numeric top level and the factor operators as functions."""

    def parse(self) -> Node:
        if not self.text.strip():
            raise self.error(1, "empty expression; write a number such as 'ts_mean(close, 20) / close'")
        node = self.parse_logical("or", self.parse_and)
        if self.token.kind != "end":
            raise self.error(self.token.column, f"unexpected {self.token.describe()} after a complete expression")
        if _is_condition(node):
            raise self.error(node.column, "a factor must be a number, not a condition; a comparison counts as "
                                          "1/0 only as an operator's argument, e.g. ts_mean(close > open, 5)")
        return node

    def parse_primary(self) -> Node:
        token = self.token
        if token.kind == "name" and token.text in OPERATORS:
            self.advance()
            if self.token.is_("("):
                return self.parse_call(token)
            raise self.error(token.column, f"'{token.text}' is a function; call it as "
                                           f"{OPERATORS[token.text].signature}")
        return super().parse_primary()

    def parse_call(self, name: _Token) -> Node:
        operator = OPERATORS.get(name.text)
        if operator is None:
            if name.text in FUNCTIONS:
                return super().parse_call(name)
            raise self.error(name.column, _unknown_function(name.text))
        args = self.parse_arguments(name)
        arity = operator.arity
        if len(args) != arity:
            column = args[arity].column if len(args) > arity else name.column
            raise self.error(column, f"{name.text} takes {arity} argument{'s' * (arity != 1)}: "
                                     f"{operator.signature}; got {len(args)}")
        series = tuple(args[:len(operator.series)])
        params = tuple(self.literal(arg, name.text, param)
                       for param, arg in zip(operator.params, args[len(series):]))
        return Operation(name.text, series, params, name.column)


def _unknown_function(name: str) -> str:
    if name in KINDS or name in FIELDS:  # the rule language's own explanation
        return _rule_unknown_function(name)
    return (f"unknown function '{name}'{_suggest(name, FACTOR_FUNCTIONS)}; known functions: "
            f"{', '.join(sorted(FACTOR_FUNCTIONS))}")


# ------------------------------------------------------------------ the tree
def children(node: Node | Operation) -> tuple:
    if isinstance(node, Operation):
        return node.args
    if isinstance(node, (Arithmetic, Logical)):
        return node.operands
    if isinstance(node, (Negate, Helper, Not)):
        return (node.operand,)
    if isinstance(node, Compare):
        return (node.left, node.right)
    if isinstance(node, Indicator) and node.series is not None:
        return (node.series,)
    return ()


def walk(node: Node | Operation):
    yield node
    for child in children(node):
        yield from walk(child)


def lookback(node: Node | Operation) -> int:
    """Rows of NaN before ``node`` can first be defined, given inputs valid from row 0: the
    longest path of windows (``ts_mean(x, n)`` adds n - 1, ``ref``/``delta`` add n, indicators
    their TA-Lib lookback); cross-sectional and element-wise operators add none."""
    if isinstance(node, FactorExpression):
        node = node.ast
    if isinstance(node, Operation):
        return max(lookback(arg) for arg in node.args) + OPERATORS[node.name].lookback(node.params)
    inner = children(node)
    if not inner:
        return _rule_lookback(node)
    # the rule language's own rows for this node, over stand-ins carrying its children's lookbacks
    rows = max(lookback(child) for child in inner)
    return rows + _rule_lookback(_with_children(node, Number(0.0))) if _adds_rows(node) else rows


def _adds_rows(node: Node) -> bool:
    return isinstance(node, (Indicator, Helper)) or (isinstance(node, Compare) and node.op.startswith("crosses"))


def _with_children(node: Node, stand_in: Number) -> Node:
    if isinstance(node, Indicator):
        return Indicator(node.kind, node.output, node.params, stand_in, node.name)
    if isinstance(node, Helper):
        return Helper(node.name, stand_in, node.window)
    return Compare(node.op, stand_in, stand_in)


# ------------------------------------------------------------------ the public API
@dataclass(frozen=True)
class FactorExpression:
    text: str
    ast: Node | Operation

    def lookback(self) -> int:
        return lookback(self.ast)

    def inputs(self) -> frozenset[str]:
        """Bar fields the expression reads."""
        return bar_inputs(walk(self.ast))

    def evaluate(self, bars: Mapping[str, Any]) -> np.ndarray:
        return evaluate_factor(self, bars)


def parse_factor(text: str, field_name: str = "expression") -> FactorExpression:
    """Parse and type-check ``text``; raises ``RuleError`` naming ``field_name`` and the column."""
    return FactorExpression(text, parse_text(FactorParser, text, field_name, "expression"))


class _FactorEvaluation(_Evaluation):
    """The rule evaluation (fields, arithmetic, indicators) plus the factor operators; every
    non-trivial sub-expression is computed once."""

    def number(self, node: Node | Operation) -> Any:
        if isinstance(node, (Arithmetic, Negate)):
            cached = self.values.get(node)
            if cached is None:
                cached = self.values[node] = super().number(node)
            return cached
        return super().number(node)

    def helper(self, node: Helper | Operation) -> np.ndarray:  # _Evaluation sends every cached non-indicator here
        if not isinstance(node, Operation):
            return super().helper(node)
        operator = OPERATORS[node.name]
        if operator.kind == ELEMENTWISE:
            args = [self.argument(arg) for arg in node.args]
        else:
            args = [np.ascontiguousarray(np.broadcast_to(self.argument(arg), self.shape), dtype=np.float64)
                    for arg in node.args]
        return operator.kernel(*args, *node.params)

    def argument(self, node: Node | Operation) -> Any:
        if not _is_condition(node):
            return self.number(node)
        cached = self.values.get(node)
        if cached is None:
            true, false = self.condition(node)
            cached = self.values[node] = np.where(true, 1.0, np.where(false, 0.0, np.nan))
        return cached


def evaluate_factors(expressions: Mapping[str, FactorExpression | str], bars: Mapping[str, Any]
                     ) -> dict[str, np.ndarray]:
    """Each expression's float64 values, shaped like the bars ((T, N) panels, or 1-D series),
    sharing every sub-expression computed once. ``bars`` holds the fields read (open, high, low,
    close, volume; optionally ``time`` for vwap sessions)."""
    parsed = {name: parse_factor(text, name) if isinstance(text, str) else text
              for name, text in expressions.items()}
    fields = set().union(*(expression.inputs() for expression in parsed.values()))
    evaluation = _FactorEvaluation(bars, fields)
    results = {}
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for name, expression in parsed.items():
            values = np.array(np.broadcast_to(evaluation.number(expression.ast), evaluation.shape),
                              dtype=np.float64)  # a copy: results never alias the bars or each other
            results[name] = values[:, 0] if evaluation.was_series else values
    return results


def evaluate_factor(expression: FactorExpression | str, bars: Mapping[str, Any]) -> np.ndarray:
    """The expression's float64 values over ``bars`` (see ``evaluate_factors``)."""
    return evaluate_factors({"expression": expression}, bars)["expression"]
