"""The language of derived features: parsed with `ast`, checked against a whitelist, evaluated
over numpy arrays. No Django here.

The text is never run: `ast.parse` only builds a tree, every node of which is checked against
the grammar below and turned into a small tree of our own, and that tree is walked with numpy.
There is no `eval`, no `compile` of code and no attribute lookup, so whatever a user types can
at worst be refused.

Grammar (anything else is refused with its position and the reason):

- numbers: ``3``, ``0.5``, ``1e-3``;
- feature names: the project's raw features and the derived features defined so far;
- arithmetic: ``a + b``, ``a - b``, ``a * b``, ``a / b``, ``-a``, and ``a ** n`` where the
  exponent ``n`` is a number between -16 and 16;
- comparisons: ``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``, chained as in ``40 <= age < 65``;
  a comparison gives 1 (true) or 0 (false);
- logic: ``a and b``, ``a or b``, ``not a`` (any number but 0 counts as true; 1 or 0 out);
- functions: ``abs(x)``, ``log(x)`` (natural), ``log10(x)``, ``sqrt(x)``, ``exp(x)``,
  ``min(a, b, …)``, ``max(a, b, …)`` (element-wise, 2 to 20 arguments),
  ``clip(x, low, high)``, ``where(condition, a, b)``, ``band(x, [e1, e2, …])`` and
  ``missing(x)``;
- a list of numbers only as ``band``'s edges. ``band(x, [40, 65])`` is 0 below 40, 1 from 40
  up to (not including) 65, and 2 from 65 up.

Missing values (NaN) follow one rule, with three exceptions:

- **Missing in, missing out.** Any missing input makes the result missing: arithmetic,
  comparisons (``age > 65`` is missing, not false, when age is), functions and bands.
- **Cannot be computed → missing, and counted:** division by zero, ``log`` or ``log10`` of zero
  or a negative number, ``sqrt`` of a negative number, a negative number to a fractional power,
  and results too large for a float. The evaluation counts the cases that ended up missing for
  these reasons, so that the preview can say so.
- Exceptions: ``missing(x)`` is 1 when x is missing and 0 otherwise (so
  ``where(missing(egfr), 90, egfr)`` fills in a value); ``where(c, a, b)`` takes only the branch
  it chooses, so a missing value (or a division by zero) in the other branch does not matter,
  but a missing condition gives a missing result; ``and`` and ``or`` follow three-valued logic:
  ``a and b`` is 0 when either side is 0, whatever the other; ``a or b`` is 1 when either side
  is true, whatever the other; otherwise a missing side gives a missing result.
"""

from __future__ import annotations

import ast
import difflib
import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MAX_LENGTH = 500
MAX_DEPTH = 24
MAX_NODES = 200
MAX_EXPONENT = 16
MAX_EDGES = 50
MAX_ARGUMENTS = 20

# name: (fewest arguments, most arguments, how it is called)
FUNCTIONS: dict[str, tuple[int, int, str]] = {
    "abs": (1, 1, "abs(x)"),
    "log": (1, 1, "log(x)"),
    "log10": (1, 1, "log10(x)"),
    "sqrt": (1, 1, "sqrt(x)"),
    "exp": (1, 1, "exp(x)"),
    "min": (2, MAX_ARGUMENTS, "min(a, b, …)"),
    "max": (2, MAX_ARGUMENTS, "max(a, b, …)"),
    "clip": (3, 3, "clip(x, low, high)"),
    "where": (3, 3, "where(condition, a, b)"),
    "band": (2, 2, "band(x, [edge, edge, …])"),
    "missing": (1, 1, "missing(x)"),
}

_BINARY = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.Pow: "**"}
_REFUSED_BINARY = {
    ast.FloorDiv: "// is not allowed: use / (and band() or clip() to round into classes)",
    ast.Mod: "% is not allowed",
    ast.MatMult: "@ is not allowed",
    ast.BitAnd: "& is not allowed: write and",
    ast.BitOr: "| is not allowed: write or",
    ast.BitXor: "^ is not allowed: for a power write **",
    ast.LShift: "<< is not allowed",
    ast.RShift: ">> is not allowed",
}
_COMPARE = {
    ast.Lt: "<",
    ast.LtE: "<=",
    ast.Gt: ">",
    ast.GtE: ">=",
    ast.Eq: "==",
    ast.NotEq: "!=",
}
# Nodes refused with a reason of their own; the rest get "… is not allowed".
_REFUSED_NODES: dict[type, str] = {
    ast.Attribute: "attribute access (the dot in a.b) is not allowed",
    ast.Subscript: "indexing (a[…]) is not allowed",
    ast.Lambda: "lambda is not allowed",
    ast.ListComp: "comprehensions are not allowed",
    ast.SetComp: "comprehensions are not allowed",
    ast.DictComp: "comprehensions are not allowed",
    ast.GeneratorExp: "comprehensions are not allowed",
    ast.JoinedStr: "f-strings and text are not allowed: only numbers and feature names",
    ast.FormattedValue: "f-strings are not allowed",
    ast.Starred: "* unpacking is not allowed",
    ast.NamedExpr: "the assignment := is not allowed",
    ast.IfExp: "a if c else b is not allowed: write where(c, a, b)",
    ast.Dict: "dictionaries are not allowed",
    ast.Set: "sets are not allowed",
    ast.Tuple: "tuples are not allowed",
    ast.Await: "await is not allowed",
    ast.Yield: "yield is not allowed",
    ast.YieldFrom: "yield is not allowed",
    ast.Slice: "slices are not allowed",
}


class ExpressionError(ValueError):
    """An expression outside the grammar, or that cannot be a feature. `position` is the
    0-based offset in the text where the problem starts (None: the expression as a whole),
    `end` where it ends."""

    def __init__(
        self, reason: str, position: int | None = None, end: int | None = None, text: str = ""
    ) -> None:
        self.reason = reason
        self.position = position
        self.end = end
        self.line: int | None = None
        self.column: int | None = None
        if position is not None:
            before = text[:position]
            self.line = before.count("\n") + 1
            self.column = position - (before.rfind("\n") + 1) + 1
        super().__init__(self.describe())

    def describe(self) -> str:
        if self.column is None:
            return self.reason
        where = (
            f"column {self.column}" if self.line == 1 else f"line {self.line}, column {self.column}"
        )
        return f"{self.reason} (at {where})"


# The checked tree: tuples are cheap to build and to walk.
#   ("num", float)                    ("col", name)
#   ("bin", op, left, right)          ("neg", x)           ("not", x)
#   ("cmp", (ops…), (operands…))      ("and", (xs…))       ("or", (xs…))
#   ("call", name, (args…))           band: ("band", x, edges as a float array)
Node = tuple


@dataclass(frozen=True)
class Expression:
    """A checked expression, ready to evaluate."""

    text: str
    root: Node
    names: tuple[str, ...]  # the feature names it reads, in order of first use


@dataclass
class Evaluation:
    """The result of an expression for n cases."""

    values: np.ndarray  # float64, NaN where missing
    # Cases whose result is missing because a division by zero, or another value that cannot
    # be computed (log of 0, sqrt of a negative number, overflow), got into it.
    division_by_zero: int = 0
    undefined: int = 0


def _offsets(text: str) -> list[int]:
    """Character offset of each line's start: ast counts columns in UTF-8 bytes per line."""
    starts = [0]
    for i, char in enumerate(text):
        if char == "\n":
            starts.append(i + 1)
    return starts


@dataclass
class _Checker:
    text: str
    known: Collection[str]
    starts: list[int] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)
    count: int = 0

    def at(self, node: ast.AST, end: bool = False) -> int | None:
        line = getattr(node, "end_lineno" if end else "lineno", None)
        column = getattr(node, "end_col_offset" if end else "col_offset", None)
        if line is None or column is None or line > len(self.lines):
            return None
        prefix = self.lines[line - 1].encode("utf-8")[:column].decode("utf-8", errors="ignore")
        # Back from the wrapped text (see parse) to the text as typed.
        return min(len(self.text), max(0, self.starts[line - 1] + len(prefix) - 1))

    def refuse(self, node: ast.AST, reason: str) -> ExpressionError:
        return ExpressionError(reason, self.at(node), self.at(node, end=True), self.text)

    def check(self, node: ast.AST, depth: int = 0) -> Node:
        self.count += 1
        if depth > MAX_DEPTH:
            raise self.refuse(node, f"nested more than {MAX_DEPTH} deep; simplify it")
        if self.count > MAX_NODES:
            raise self.refuse(node, f"more than {MAX_NODES} parts; simplify it")
        deeper = depth + 1
        if isinstance(node, ast.Constant):
            return ("num", self.number(node))
        if isinstance(node, ast.Name):
            return ("col", self.name(node))
        if isinstance(node, ast.BinOp):
            op = type(node.op)
            if op in _REFUSED_BINARY:
                raise self.refuse(node, _REFUSED_BINARY[op])
            if op is ast.Pow:
                exponent = self.constant(node.right)
                if exponent is None or abs(exponent) > MAX_EXPONENT:
                    raise self.refuse(
                        node.right,
                        f"the exponent must be a number between -{MAX_EXPONENT} and "
                        f"{MAX_EXPONENT}, as in height ** 2",
                    )
                return ("bin", "**", self.check(node.left, deeper), ("num", exponent))
            return (
                "bin",
                _BINARY[op],
                self.check(node.left, deeper),
                self.check(node.right, deeper),
            )
        if isinstance(node, ast.UnaryOp):
            if isinstance(node.op, ast.USub):
                operand = self.check(node.operand, deeper)
                return ("num", -operand[1]) if operand[0] == "num" else ("neg", operand)
            if isinstance(node.op, ast.UAdd):
                return self.check(node.operand, deeper)
            if isinstance(node.op, ast.Not):
                return ("not", self.check(node.operand, deeper))
            raise self.refuse(node, "~ is not allowed: write not")
        if isinstance(node, ast.Compare):
            ops = []
            for op in node.ops:
                if type(op) not in _COMPARE:
                    symbol = {
                        ast.Is: "is",
                        ast.IsNot: "is not",
                        ast.In: "in",
                        ast.NotIn: "not in",
                    }.get(type(op), type(op).__name__)
                    raise self.refuse(
                        node,
                        f"the comparison {symbol!r} is not allowed: use <, <=, >, >=, == or !="
                        + ("; test for a missing value with missing(x)" if "is" in symbol else ""),
                    )
                ops.append(_COMPARE[type(op)])
            operands = [self.check(node.left, deeper)]
            operands += [self.check(c, deeper) for c in node.comparators]
            return ("cmp", tuple(ops), tuple(operands))
        if isinstance(node, ast.BoolOp):
            kind = "and" if isinstance(node.op, ast.And) else "or"
            return (kind, tuple(self.check(v, deeper) for v in node.values))
        if isinstance(node, ast.Call):
            return self.call(node, deeper)
        if isinstance(node, ast.List):
            raise self.refuse(node, "a list [...] is only allowed as band()'s edges")
        reason = _REFUSED_NODES.get(type(node), f"{type(node).__name__} is not allowed")
        raise self.refuse(node, reason)

    def number(self, node: ast.Constant) -> float:
        value = node.value
        if isinstance(value, bool):
            raise self.refuse(node, f"{value} is not a number here: write 1 or 0")
        if value is None:
            raise self.refuse(node, "None is not allowed: test for a missing value with missing(x)")
        if isinstance(value, str | bytes):
            raise self.refuse(
                node,
                f"text ({value!r}) is not allowed: features are numbers (for a yes/no feature "
                "compare with 1 or 0)",
            )
        if isinstance(value, complex):
            raise self.refuse(node, "complex numbers are not allowed")
        if not isinstance(value, int | float):
            raise self.refuse(node, f"{value!r} is not allowed")
        try:
            number = float(value)
        except OverflowError:
            number = math.inf
        if not math.isfinite(number):
            raise self.refuse(node, "the number is too large")
        return number

    def constant(self, node: ast.AST) -> float | None:
        """A number written out (or a minus sign in front of one), or None."""
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            inner = self.constant(node.operand)
            if inner is None:
                return None
            return -inner if isinstance(node.op, ast.USub) else inner
        is_number = isinstance(node, ast.Constant) and isinstance(node.value, int | float)
        return self.number(node) if is_number and not isinstance(node.value, bool) else None

    def name(self, node: ast.Name) -> str:
        name = node.id
        if name.startswith("__"):
            raise self.refuse(node, f"names starting with __ are not allowed ({name})")
        if name in FUNCTIONS:
            raise self.refuse(node, f"{name} is a function: call it, as in {FUNCTIONS[name][2]}")
        if name not in self.known:
            close = difflib.get_close_matches(name, list(self.known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise self.refuse(node, f"unknown feature {name!r}{hint}")
        if name not in self.names:
            self.names.append(name)
        return name

    def call(self, node: ast.Call, deeper: int) -> Node:
        if not isinstance(node.func, ast.Name):
            reason = _REFUSED_NODES.get(
                type(node.func), "only the listed functions can be called, by their name"
            )
            raise self.refuse(node.func, reason)
        name = node.func.id
        if name.startswith("__"):
            raise self.refuse(node.func, f"names starting with __ are not allowed ({name})")
        if name not in FUNCTIONS:
            if name in self.known:
                raise self.refuse(node.func, f"{name} is a feature, not a function")
            listed = ", ".join(FUNCTIONS)
            raise self.refuse(
                node.func, f"{name}() is not a function of this language (it has {listed})"
            )
        fewest, most, usage = FUNCTIONS[name]
        if node.keywords:
            raise self.refuse(
                node.keywords[0].value,
                f"keyword arguments are not allowed: give the arguments in order, {usage}",
            )
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.refuse(arg, "* unpacking is not allowed")
        count = len(node.args)
        if not fewest <= count <= most:
            wanted = (
                f"{fewest}"
                if fewest == most
                else f"{fewest} or more"
                if most == MAX_ARGUMENTS
                else f"{fewest} to {most}"
            )
            raise self.refuse(
                node,
                f"{name}() takes {wanted} argument{'s' * (wanted != '1')}, not {count}: {usage}",
            )
        if name == "band":
            return ("band", self.check(node.args[0], deeper), self.edges(node.args[1]))
        return ("call", name, tuple(self.check(a, deeper) for a in node.args))

    def edges(self, node: ast.AST) -> np.ndarray:
        if not isinstance(node, ast.List):
            raise self.refuse(
                node, "band() takes its edges as a list of numbers, as in band(age, [40, 65])"
            )
        if not node.elts:
            raise self.refuse(node, "band() needs at least one edge")
        if len(node.elts) > MAX_EDGES:
            raise self.refuse(node, f"band() takes at most {MAX_EDGES} edges")
        values = []
        for element in node.elts:
            value = self.constant(element)
            if value is None:
                raise self.refuse(element, "band()'s edges must be numbers written out")
            if values and value <= values[-1]:
                raise self.refuse(
                    element, f"band()'s edges must increase: {value:g} comes after {values[-1]:g}"
                )
            values.append(value)
        return np.asarray(values, dtype=np.float64)


def parse(text: str, known: Collection[str]) -> Expression:
    """Check `text` against the grammar, with `known` the feature names it may read.

    Raises ExpressionError (and no other exception) for anything outside the grammar."""
    if not isinstance(text, str):
        raise ExpressionError("the expression must be text")
    if not text.strip():
        raise ExpressionError("the expression is empty")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(
            f"the expression is {len(text)} characters long; the limit is {MAX_LENGTH}"
        )
    # In parentheses, so that the expression may span lines and start with spaces, as typed
    # in a text box; offsets in `wrapped` are then one more than in `text`.
    wrapped = f"({text}\n)"
    starts = _offsets(wrapped)
    try:
        tree = ast.parse(wrapped, mode="eval")
    except SyntaxError as error:
        position = None
        if error.lineno is not None and error.offset is not None and error.lineno <= len(starts):
            position = min(len(text), max(0, starts[error.lineno - 1] + error.offset - 2))
        reason = (error.msg or "invalid syntax").replace("invalid syntax. ", "")
        if reason.startswith("'(' was never closed") or reason.startswith("unmatched ')'"):
            reason = "the parentheses do not match"
        raise ExpressionError(f"not a valid expression: {reason}", position, None, text) from None
    except (ValueError, RecursionError, MemoryError) as error:
        # Null bytes (ValueError), or nesting so deep that the parser gives up.
        message = "nested too deeply" if not isinstance(error, ValueError) else str(error)
        raise ExpressionError(f"not a valid expression: {message}") from None
    checker = _Checker(text=text, known=known, starts=starts, lines=wrapped.split("\n"))
    root = checker.check(tree.body)
    return Expression(text=text, root=root, names=tuple(checker.names))


def references(text: str, known: Collection[str]) -> tuple[str, ...]:
    """The feature names an expression reads (it must parse)."""
    return parse(text, known).names


# ---------------------------------------------------------------------------------------------
# Evaluation. Values are float64 arrays of n, plain floats for parts without a feature, or (for
# conditions that can never be missing, such as missing(x)) numpy booleans; NaN is missing.
# Comparisons and logic give 1.0, 0.0 or NaN. Each step makes as few passes over the n values
# as it can: at a million cases every pass costs a few milliseconds.


@dataclass
class _Run:
    columns: Mapping[str, np.ndarray]
    n: int
    # Where a division by zero or an undefined value came in (None: nowhere so far).
    zero: Any = None
    bad: Any = None

    def mark(self, which: str, mask: Any) -> None:
        now = getattr(self, which)
        setattr(self, which, mask if now is None else now | mask)


def _is_bool(x: Any) -> bool:
    return isinstance(x, np.ndarray | np.bool_ | bool) and np.asarray(x).dtype == np.bool_


def _is_array(x: Any) -> bool:
    return isinstance(x, np.ndarray) and x.ndim > 0


def _number(x: Any) -> Any:
    """A condition used as a number (its 1 or 0); numbers as they are."""
    if _is_bool(x):
        return x.astype(np.float64) if isinstance(x, np.ndarray) else float(x)
    return x


def _nan_of(x: Any) -> Any:
    """0 where x is known, NaN where it is missing (x - x; an overflowed infinity counts as
    missing too): adding it to a result carries x's missing values into it in one pass."""
    return np.subtract(x, x)


def _missing_into(result: Any, *inputs: Any) -> Any:
    """`result` (booleans or numbers) as floats, missing wherever an input is."""
    carriers = [x for x in inputs if not _is_bool(x) and (_is_array(x) or np.isnan(x))]
    if not carriers:
        return result
    out = np.add(result, _nan_of(carriers[0]), dtype=np.float64)
    for x in carriers[1:]:
        out += _nan_of(x)
    return out


def _truth(x: Any) -> Any:
    """Booleans as they are; a number as 1 (not 0), 0 or NaN (missing)."""
    if _is_bool(x):
        return x
    return _missing_into(np.not_equal(x, 0), x)


_COMPARISONS = {
    "<": np.less,
    "<=": np.less_equal,
    ">": np.greater,
    ">=": np.greater_equal,
    "==": np.equal,
    "!=": np.not_equal,
}


def _compare(op: str, a: Any, b: Any) -> Any:
    return _missing_into(_COMPARISONS[op](a, b), a, b)


def _kleene(a: Any, b: Any, kind: str) -> Any:
    """Three-valued and/or of two truths (booleans, or 1/0/NaN)."""
    if _is_bool(a) and _is_bool(b):
        return a & b if kind == "and" else a | b
    a = a.astype(np.float64) if _is_bool(a) else a
    b = b.astype(np.float64) if _is_bool(b) else b
    result = np.minimum(a, b) if kind == "and" else np.maximum(a, b)  # NaN if either is
    if not _is_array(result):
        decided = 0.0 if kind == "and" else 1.0
        return decided if decided in (a, b) else result
    unknown = np.flatnonzero(np.isnan(result))
    if len(unknown):
        # Only the few missing places need a second look: a false side decides "and", a true
        # side decides "or", whatever the other side is.
        decided = 0.0 if kind == "and" else 1.0
        pick_a = a[unknown] if _is_array(a) else a
        pick_b = b[unknown] if _is_array(b) else b
        result[unknown] = np.where((pick_a == decided) | (pick_b == decided), decided, np.nan)
    return result


def _guarded(run: _Run, result: Any, bad: Any, which: str = "bad") -> Any:
    """Set `result` missing where `bad` holds, and remember where."""
    if not np.any(bad):
        return result
    run.mark(which, bad)
    return np.where(bad, np.nan, result)


def _branches(run: _Run, args: tuple) -> tuple[Any, Any, Any, list]:
    """where()'s condition and both branches, with what each branch could not compute kept
    apart: a guarded division (where(b == 0, 0, a / b)) is not a division by zero."""
    condition = _truth(_eval(args[0], run))
    saved = (run.zero, run.bad)
    marks = []
    values = []
    for branch in args[1:]:
        run.zero = run.bad = None
        values.append(_eval(branch, run))
        marks.append((run.zero, run.bad))
    run.zero, run.bad = saved
    return condition, values[0], values[1], marks


def _eval(node: Node, run: _Run) -> Any:
    kind = node[0]
    if kind == "num":
        return node[1]
    if kind == "col":
        return run.columns[node[1]]
    if kind == "bin":
        op = node[1]
        left, right = _number(_eval(node[2], run)), _number(_eval(node[3], run))
        if op == "+":
            return np.add(left, right)
        if op == "-":
            return np.subtract(left, right)
        if op == "*":
            return np.multiply(left, right)
        if op == "/":
            result = np.divide(left, right)
            zero = np.equal(right, 0)
            if not np.any(zero):
                return result
            # Only a known numerator counts: a missing one is missing anyway.
            return _guarded(run, result, zero & ~np.isnan(left), "zero")
        # The operator rather than np.power: numpy squares (and takes square roots) fast.
        result = np.asarray(left, dtype=np.float64) ** right
        if float(right).is_integer() and right >= 0:
            return result  # defined everywhere; an overflow is caught at the end
        return _guarded(run, result, ~np.isfinite(result) & ~np.isnan(left))
    if kind == "neg":
        return np.negative(_number(_eval(node[1], run)))
    if kind == "not":
        truth = _truth(_eval(node[1], run))
        return ~truth if _is_bool(truth) else 1.0 - truth
    if kind == "cmp":
        ops, operands = node[1], node[2]
        values = [_eval(o, run) for o in operands]
        result = _compare(ops[0], values[0], values[1])
        for i, op in enumerate(ops[1:], start=1):
            result = _kleene(result, _compare(op, values[i], values[i + 1]), "and")
        return result
    if kind in ("and", "or"):
        result = _truth(_eval(node[1][0], run))
        for value in node[1][1:]:
            result = _kleene(result, _truth(_eval(value, run)), kind)
        return result
    if kind == "band":
        x = _eval(node[1], run)
        return _missing_into(np.searchsorted(node[2], x, side="right"), x)
    name, args = node[1], node[2]
    if name == "where":
        condition, a, b, marks = _branches(run, args)
        if _is_bool(condition):
            taken = (condition, ~condition)
        else:
            taken = (np.equal(condition, 1), np.equal(condition, 0))
        for (zero, bad), where_taken in zip(marks, taken, strict=True):
            if zero is not None:
                run.mark("zero", where_taken & zero)
            if bad is not None:
                run.mark("bad", where_taken & bad)
        return _missing_into(np.where(taken[0], a, b), condition)
    values = [_number(_eval(a, run)) for a in args]
    x = values[0]
    if name == "missing":
        return np.isnan(x) if _is_array(x) else np.bool_(math.isnan(x))
    if name == "abs":
        return np.abs(x)
    if name in ("min", "max"):
        combine = np.minimum if name == "min" else np.maximum  # NaN in, NaN out
        result = combine(values[0], values[1])
        for other in values[2:]:
            result = combine(result, other)
        return result
    if name == "clip":
        return np.minimum(np.maximum(x, values[1]), values[2])
    if name == "log":
        return _guarded(run, np.log(x), np.less_equal(x, 0))
    if name == "log10":
        return _guarded(run, np.log10(x), np.less_equal(x, 0))
    if name == "sqrt":
        return _guarded(run, np.sqrt(x), np.less(x, 0))
    if name == "exp":
        result = np.exp(x)
        return _guarded(run, result, np.isinf(result) & ~np.isnan(x))
    raise ExpressionError(f"{name}() is not a function of this language")  # pragma: no cover


def evaluate(expression: Expression, columns: Mapping[str, np.ndarray], n: int) -> Evaluation:
    """The expression for n cases; `columns` holds each feature it reads (float64, length n).

    Never raises anything but ExpressionError (for a column that is missing or of the wrong
    length)."""
    for name in expression.names:
        column = columns.get(name)
        if column is None:
            raise ExpressionError(f"no values for feature {name!r}")
        if np.shape(column) != (n,):
            raise ExpressionError(f"feature {name!r} has {np.size(column)} values, not {n}")
    run = _Run(columns=columns, n=n)
    with np.errstate(all="ignore"):
        result = _eval(expression.root, run)
        if np.ndim(result) == 0:
            values = np.full(n, float(result))
        elif expression.root[0] == "col" or np.asarray(result).dtype != np.float64:
            # Never hand back (and later write into) a caller's column.
            values = np.array(result, dtype=np.float64)
        else:
            values = result
        finite = np.isfinite(values)
        if not finite.all():
            # Too large for a float (an overflow) is a value that cannot be computed.
            overflow = np.isinf(values)
            if overflow.any():
                run.mark("bad", overflow)
                values[overflow] = np.nan
    missing = None
    counts = [0, 0]
    for i, mask in enumerate((run.zero, run.bad)):
        if mask is None:
            continue
        if missing is None:
            missing = np.isnan(values)
        counts[i] = int(np.count_nonzero(np.broadcast_to(mask, (n,)) & missing))
    return Evaluation(values=values, division_by_zero=counts[0], undefined=counts[1])
