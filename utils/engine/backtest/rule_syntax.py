"""The rule language's syntax: tree nodes, the function table, the tokenizer and the parser.

Entry/exit rules as text: a small language parsed (never eval'd) and evaluated over bar panels.

    sma(close, 10) crosses_above sma(close, 20) and rsi(close, 14) < 70

Grammar (keywords and names are case-insensitive; whitespace is free)::

    rule       = or_expr                                  (must be a condition)
    or_expr    = and_expr { "or" and_expr }
    and_expr   = not_expr { "and" not_expr }
    not_expr   = "not" not_expr | comparison
    comparison = sum [ compare_op sum ]                   (no chaining: a < b < c is an error)
    compare_op = "<" | "<=" | ">" | ">=" | "==" | "!=" | "crosses_above" | "crosses_below"
    sum        = product { ("+" | "-") product }
    product    = unary { ("*" | "/") unary }
    unary      = "-" unary | primary
    primary    = number | field | call | "(" or_expr ")"
    call       = name "(" [ or_expr { "," or_expr } ] ")"
    field      = "open" | "high" | "low" | "close" | "volume" | "sentiment"
    number     = digits [ "." digits ] [ ("e" | "E") ["+" | "-"] digits ]  |  "." digits [exponent]

Functions come from the indicator registry (``features.KINDS``): one function per output
(``kind.outputs``, or the kind's own name when it has one output). Kinds that read only close take
a series first, any numeric expression (``sma(close, 20)``, ``rsi(high - low, 14)``); the others
read their bars themselves (``atr(14)``, ``stoch_k(14, 3, 3)``, ``obv()``). Parameters must be
number literals within the registry's ``Param`` bounds; omitted trailing ones take the defaults.
Helpers: ``shift(x, n)``, ``highest(x, n)``, ``lowest(x, n)`` (n in [1, 10000]) and ``abs(x)``.
``sentiment`` is not a price field: the loaders add it from the scores stored by
MLService.AnalyzeSentiment (``utils.data.sentiment``: the latest score at or before each bar, 0
before the first); indicators may take it as their series (``sma(sentiment, 5)``).
"""
from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Union

from utils.engine.indicators.features import KINDS
from utils.engine.indicators.step_core import INPUT_NAMES, IndicatorKind, Param

MAX_RULE_CHARS = 2000
MAX_DEPTH = 50
MAX_WINDOW = 10_000  # n of shift/highest/lowest, like the registry's integer Param.high
KEYWORDS = frozenset({"and", "or", "not", "crosses_above", "crosses_below"})
COMPARE_OPS = frozenset({"<", "<=", ">", ">=", "==", "!=", "crosses_above", "crosses_below"})
EXTRA_FIELDS = ("sentiment",)  # bar fields the loaders add beside the stored prices (no indicator reads them)
FIELDS = INPUT_NAMES + EXTRA_FIELDS
HELPERS = {"shift": "shift(x, n)", "highest": "highest(x, n)", "lowest": "lowest(x, n)", "abs": "abs(x)"}


class RuleError(ValueError):
    """A rule that does not parse or type-check; ``column`` is 1-based within the rule text."""

    def __init__(self, field_name: str, column: int, reason: str):
        self.field = field_name
        self.column = column
        self.reason = reason
        super().__init__(f"{field_name}, column {column}: {reason}")


# ------------------------------------------------------------------ syntax tree
# Nodes compare and hash by meaning (``column`` is left out), so equal sub-expressions share a cache
# entry wherever they appear and ``sma(close)`` equals ``sma(close, 20)`` (defaults are filled in).
def _column() -> Any:
    return field(default=0, compare=False)


@dataclass(frozen=True)
class Number:
    value: float
    is_integer: bool = field(default=False, compare=False)  # written without "." or exponent
    column: int = _column()


@dataclass(frozen=True)
class Field:
    name: str
    column: int = _column()


@dataclass(frozen=True)
class Negate:
    operand: "Node"
    column: int = _column()


@dataclass(frozen=True)
class Arithmetic:
    """``operands[0] op[0] operands[1] op[1] ...`` of one precedence level, left to right."""
    operands: tuple["Node", ...]
    operators: tuple[str, ...]
    column: int = _column()


@dataclass(frozen=True)
class Indicator:
    kind: str
    output: int                       # index into the kind's outputs
    params: tuple[int | float, ...]   # every parameter, defaults filled in
    series: "Node | None"             # close-only kinds: the series they run over; else None
    name: str = field(default="", compare=False)
    column: int = _column()


@dataclass(frozen=True)
class Helper:
    name: str                         # shift, highest, lowest, abs
    operand: "Node"
    window: int = 0
    column: int = _column()


@dataclass(frozen=True)
class Compare:
    op: str
    left: "Node"
    right: "Node"
    column: int = _column()


@dataclass(frozen=True)
class Not:
    operand: "Node"
    column: int = _column()


@dataclass(frozen=True)
class Logical:
    op: str                           # "and" | "or"
    operands: tuple["Node", ...]
    column: int = _column()


Node = Union[Number, Field, Negate, Arithmetic, Indicator, Helper, Compare, Not, Logical]
_CONDITIONS = (Compare, Not, Logical)


def _is_condition(node: Node) -> bool:
    return isinstance(node, _CONDITIONS)


# ------------------------------------------------------------------ function table
@dataclass(frozen=True)
class _IndicatorFunction:
    name: str
    kind: IndicatorKind
    output: int

    @property
    def takes_series(self) -> bool:
        return self.kind.inputs == ("close",)

    @property
    def signature(self) -> str:
        params = [f"{param.name}={_default(param):g}" for param in self.kind.params]
        return f"{self.name}({', '.join((['series'] if self.takes_series else []) + params)})"


def _default(param: Param) -> int | float:
    return int(param.default) if param.is_integer else float(param.default)


def _function_table() -> dict[str, _IndicatorFunction | str]:
    table: dict[str, _IndicatorFunction | str] = {}
    entries = [(name, _IndicatorFunction(name, kind, output))
               for kind in KINDS.values() for output, name in enumerate(kind.outputs or (kind.name,))]
    for name, entry in [*entries, *HELPERS.items()]:
        if name in table or name in FIELDS or name in KEYWORDS:
            raise RuntimeError(f"signal rule function {name!r} is defined twice or shadows a field/keyword")
        table[name] = entry
    return table


FUNCTIONS = _function_table()


def _signature(name: str) -> str:
    entry = FUNCTIONS[name]
    return entry if isinstance(entry, str) else entry.signature


# ------------------------------------------------------------------ tokens and parser
_SPACE = re.compile(r"\s*", re.ASCII)
_TOKEN = re.compile(r"(?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)"
                    r"|(?P<name>[A-Za-z_][A-Za-z0-9_]*)"
                    r"|(?P<op><=|>=|==|!=|<|>|\+|-|\*|/|\(|\)|,)", re.ASCII)
_HINTS = {"=": "; use '==' to compare", "!": "; use 'not' or '!='", "&": "; use 'and'", "|": "; use 'or'",
          "'": "; rules have no strings", '"': "; rules have no strings", ".": "; rules have no attributes"}


@dataclass(frozen=True)
class _Token:
    kind: str   # number, name (lower-cased), op, end
    text: str
    column: int

    def describe(self) -> str:
        return "end of rule" if self.kind == "end" else repr(self.text)

    def is_(self, *texts: str) -> bool:
        return self.kind in ("name", "op") and self.text in texts


class Parser:
    """Recursive descent with one token of look-ahead, scanned lazily so errors come left to right."""

    def __init__(self, text: str, field_name: str):
        self.text = text
        self.field = field_name
        self.position = 0
        self.depth = 0
        self.token = self._scan()

    def error(self, column: int, reason: str) -> RuleError:
        return RuleError(self.field, column, reason)

    def _scan(self) -> _Token:
        self.position = _SPACE.match(self.text, self.position).end()
        if self.position >= len(self.text):
            return _Token("end", "", len(self.text) + 1)
        match = _TOKEN.match(self.text, self.position)
        if match is None:
            char = self.text[self.position]
            raise self.error(self.position + 1, f"unexpected character {char!r}{_HINTS.get(char, '')}")
        column, self.position = self.position + 1, match.end()
        kind = match.lastgroup
        return _Token(kind, match.group().lower() if kind == "name" else match.group(), column)

    def advance(self) -> _Token:
        token, self.token = self.token, self._scan()
        return token

    def enter(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.error(token.column, f"rule nests deeper than {MAX_DEPTH} levels")

    def close(self, opening: _Token, what: str) -> None:
        if not self.token.is_(")"):
            found = "" if self.token.kind == "end" else f"; found {self.token.describe()}"
            raise self.error(self.token.column, f"missing ')' to close {what} at column {opening.column}{found}")
        self.advance()
        self.depth -= 1

    def expect(self, node: Node, condition: bool, context: str) -> Node:
        if _is_condition(node) != condition:
            wanted, got = ("a condition", "a number") if condition else ("a number", "a condition")
            raise self.error(node.column, f"{context} needs {wanted} here, got {got}")
        return node

    def parse(self) -> Node:
        if not self.text.strip():
            raise self.error(1, "empty rule; write a condition such as 'close > sma(close, 20)'")
        node = self.parse_logical("or", self.parse_and)
        if self.token.kind != "end":
            raise self.error(self.token.column, f"unexpected {self.token.describe()} after a complete expression")
        if not _is_condition(node):
            raise self.error(node.column, "the rule must be a condition (a comparison, crosses_above/"
                                          "crosses_below, and/or/not), not a number")
        return node

    def parse_and(self) -> Node:
        return self.parse_logical("and", self.parse_not)

    def parse_logical(self, op: str, parse_operand) -> Node:
        operands = [parse_operand()]
        while self.token.is_(op):
            self.expect(operands[0], True, f"'{op}'")
            self.advance()
            operands.append(self.expect(parse_operand(), True, f"'{op}'"))
        return operands[0] if len(operands) == 1 else Logical(op, tuple(operands), operands[0].column)

    def parse_not(self) -> Node:
        if not self.token.is_("not"):
            return self.parse_comparison()
        token = self.advance()
        self.enter(token)
        operand = self.expect(self.parse_not(), True, "'not'")
        self.depth -= 1
        return Not(operand, token.column)

    def parse_comparison(self) -> Node:
        left = self.parse_arithmetic(("+", "-"), self.parse_product)
        if not self.token.is_(*COMPARE_OPS):
            return left
        op = self.advance()
        if _is_condition(left):
            raise self.error(op.column, f"cannot compare conditions with '{op.text}'; combine conditions "
                                        f"with and, or, not")
        right = self.parse_arithmetic(("+", "-"), self.parse_product)
        if _is_condition(right):
            raise self.error(op.column, f"cannot compare conditions with '{op.text}'; combine conditions "
                                        f"with and, or, not")
        if self.token.is_(*COMPARE_OPS):
            raise self.error(self.token.column, "comparisons cannot be chained; write 'a < b and b < c'")
        return Compare(op.text, left, right, left.column)

    def parse_product(self) -> Node:
        return self.parse_arithmetic(("*", "/"), self.parse_unary)

    def parse_arithmetic(self, ops: tuple[str, ...], parse_operand) -> Node:
        operands, operators = [parse_operand()], []
        while self.token.is_(*ops):
            operators.append(self.advance().text)
            self.expect(operands[0], False, f"'{operators[-1]}'")
            operands.append(self.expect(parse_operand(), False, f"'{operators[-1]}'"))
        if not operators:
            return operands[0]
        return Arithmetic(tuple(operands), tuple(operators), operands[0].column)

    def parse_unary(self) -> Node:
        if not self.token.is_("-"):
            return self.parse_primary()
        token = self.advance()
        self.enter(token)
        operand = self.expect(self.parse_unary(), False, "'-'")
        self.depth -= 1
        if isinstance(operand, Number):  # a negative literal stays a literal (parameters, messages)
            return Number(-operand.value, operand.is_integer, token.column)
        return Negate(operand, token.column)

    def parse_primary(self) -> Node:
        token = self.token
        if token.kind == "number":
            self.advance()
            value = float(token.text)
            if not math.isfinite(value):
                raise self.error(token.column, f"number {token.text} is out of range")
            return Number(value, not any(c in token.text for c in ".eE"), token.column)
        if token.is_("("):
            self.advance()
            self.enter(token)
            inner = self.parse_logical("or", self.parse_and)
            self.close(token, "'('")
            return replace(inner, column=token.column)
        if token.kind == "name" and token.text not in KEYWORDS:
            self.advance()
            if self.token.is_("("):
                return self.parse_call(token)
            if token.text in FIELDS:
                return Field(token.text, token.column)
            if token.text in FUNCTIONS:
                raise self.error(token.column, f"'{token.text}' is a function; call it as {_signature(token.text)}")
            raise self.error(token.column, f"unknown name '{token.text}'{_suggest(token.text, FIELDS)}; "
                                           f"bar fields are {', '.join(FIELDS)}")
        raise self.error(token.column, f"unexpected {token.describe()}; expected a number, a bar field, "
                                       f"a function call or '('")

    def parse_call(self, name: _Token) -> Node:
        function = FUNCTIONS.get(name.text)
        if function is None:
            raise self.error(name.column, _unknown_function(name.text))
        args = self.parse_arguments(name)
        if isinstance(function, str):
            return self.build_helper(name, args)
        return self.build_indicator(function, name, args)

    def parse_arguments(self, name: _Token) -> list[Node]:
        """``( [arg {, arg}] )`` after a function's name (the current token is its '(')."""
        paren = self.advance()
        self.enter(paren)
        args: list[Node] = []
        if not self.token.is_(")"):
            args.append(self.parse_logical("or", self.parse_and))
            while self.token.is_(","):
                self.advance()
                args.append(self.parse_logical("or", self.parse_and))
        self.close(paren, f"'{name.text}('")
        return args

    def check_arity(self, name: _Token, args: list[Node], least: int, most: int) -> None:
        if len(args) > most:
            raise self.error(args[most].column, f"{name.text} takes at most {most} argument"
                                                f"{'s' * (most != 1)}: {_signature(name.text)}; got {len(args)}")
        if len(args) < least:
            needs = "takes" if least == most else "needs at least"
            raise self.error(name.column, f"{name.text} {needs} {least} argument{'s' * (least != 1)}: "
                                          f"{_signature(name.text)}; got {len(args)}")

    def build_helper(self, name: _Token, args: list[Node]) -> Node:
        arity = 1 if name.text == "abs" else 2
        self.check_arity(name, args, arity, arity)
        operand = self.expect(args[0], False, f"{name.text}(x)")
        window = 0
        if arity == 2:
            window = int(self.literal(args[1], name.text, Param("n", 1, True, 1, MAX_WINDOW)))
        return Helper(name.text, operand, window, name.column)

    def build_indicator(self, function: _IndicatorFunction, name: _Token, args: list[Node]) -> Node:
        kind = function.kind
        series = None
        if function.takes_series:
            self.check_arity(name, args, 1, 1 + len(kind.params))
            series = self.expect(args[0], False, f"{name.text}(series, ...)")
            args = args[1:]
        elif args and isinstance(args[0], Field):
            raise self.error(args[0].column, f"{name.text} reads {', '.join(kind.inputs)} from the bars itself "
                                             f"and takes no series: {function.signature}")
        else:
            self.check_arity(name, args, 0, len(kind.params))
        params = tuple(self.literal(arg, name.text, param) for param, arg in zip(kind.params, args))
        params += tuple(_default(param) for param in kind.params[len(params):])
        problem = kind.check(params)
        if problem:
            raise self.error(name.column, f"bad parameters for {name.text}: {problem}")
        return Indicator(kind.name, function.output, params, series, name.text, name.column)

    def literal(self, arg: Node, function: str, param: Param) -> int | float:
        """A parameter: a number literal within the registry's bounds (ints [low, high], floats (low, high])."""
        if not isinstance(arg, Number):
            raise self.error(arg.column, f"{function}: {param.name} must be a number literal")
        if param.is_integer:
            if not arg.is_integer:
                raise self.error(arg.column, f"{function}: {param.name} must be an integer, got {arg.value:g}")
            if not param.low <= arg.value <= param.high:
                raise self.error(arg.column, f"{function}: {param.name} must be in [{param.low:g}, "
                                             f"{param.high:g}], got {arg.value:g}")
            return int(arg.value)
        if not param.low < arg.value <= param.high:
            raise self.error(arg.column, f"{function}: {param.name} must be in ({param.low:g}, "
                                         f"{param.high:g}], got {arg.value:g}")
        return float(arg.value)


def _suggest(name: str, candidates) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _unknown_function(name: str) -> str:
    if name in KINDS:  # a multi-output kind: the outputs are the functions
        return f"'{name}' has several outputs; call one of {', '.join(KINDS[name].outputs)}"
    if name in FIELDS:
        return f"'{name}' is a bar field, not a function"
    return (f"unknown function '{name}'{_suggest(name, FUNCTIONS)}; known functions: "
            f"{', '.join(sorted(FUNCTIONS))}")


# ------------------------------------------------------------------ rules
def walk(node: Node):
    yield node
    children: tuple = ()
    if isinstance(node, (Arithmetic, Logical)):
        children = node.operands
    elif isinstance(node, (Negate, Helper, Not)):
        children = (node.operand,)
    elif isinstance(node, Compare):
        children = (node.left, node.right)
    elif isinstance(node, Indicator) and node.series is not None:
        children = (node.series,)
    for child in children:
        yield from walk(child)


def lookback(node: Node) -> int:
    """Rows of NaN (unknown) before ``node`` can first be defined, given inputs valid from row 0."""
    if isinstance(node, (Number, Field)):
        return 0
    if isinstance(node, Indicator):
        series = lookback(node.series) if node.series is not None else 0
        return series + int(KINDS[node.kind].lookback(node.params))
    if isinstance(node, Helper):
        return lookback(node.operand) + {"shift": node.window, "abs": 0}.get(node.name, node.window - 1)
    if isinstance(node, Compare):
        return max(lookback(node.left), lookback(node.right)) + node.op.startswith("crosses")
    if isinstance(node, (Arithmetic, Logical)):
        return max(lookback(operand) for operand in node.operands)
    return lookback(node.operand)  # Negate, Not


def bar_inputs(nodes) -> frozenset[str]:
    """Bar fields read by ``nodes`` (a tree walk): fields named, and those indicators read
    themselves (vwap also uses ``time``, when given, for its sessions)."""
    fields = set()
    for node in nodes:
        if isinstance(node, Field):
            fields.add(node.name)
        elif isinstance(node, Indicator) and node.series is None:
            fields.update(KINDS[node.kind].inputs)
    return frozenset(fields)


def parse_text(parser_class: type, text: Any, field_name: str, noun: str) -> Any:
    """The tree of ``text`` parsed by ``parser_class``; ``RuleError`` naming ``field_name`` and the
    column for text that is not a string, too long, or nested too deeply."""
    if not isinstance(text, str):
        raise RuleError(field_name, 1, f"a {noun} must be text, got {type(text).__name__}")
    if len(text) > MAX_RULE_CHARS:
        raise RuleError(field_name, MAX_RULE_CHARS + 1, f"{noun} is {len(text)} characters long; "
                                                        f"at most {MAX_RULE_CHARS} are allowed")
    parser = parser_class(text, field_name)
    try:
        return parser.parse()
    except RecursionError:  # MAX_DEPTH keeps the parser near 600 frames; a deep caller may still hit this
        raise RuleError(field_name, parser.token.column, f"{noun} nests too deeply") from None
