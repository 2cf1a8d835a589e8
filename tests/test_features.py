"""Derived features: the safe evaluator (a whitelist, fuzzed with hypothesis, and known escape
attempts), definitions and feature-set versions, the preview, training and predicting with
derived features (an old model version keeps the definitions it was trained with), the effect
shown (permutation importance, two versions compared), the labeling screen and the API."""

from __future__ import annotations

import ast
import re
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from apps.audit.models import AuditAction, AuditEvent
from apps.features import selectors, services
from apps.features.compute import Definition, feature_columns, parsed_in_order
from apps.features.expressions import (
    MAX_LENGTH,
    Evaluation,
    ExpressionError,
    evaluate,
    parse,
)
from apps.features.models import DerivedFeature, FeatureSetVersion
from apps.modeling import services as modeling_services
from apps.modeling.models import Deployment, ModelVersion, RunStatus, RunTrigger, TrainingRun
from apps.modeling.serving import predict
from apps.projects.models import Project
from tests.conftest import make_cases_frame

KNOWN = ["age", "weight", "height", "egfr", "creatinine", "diabetes"]
NAN = np.nan


def _columns() -> dict[str, np.ndarray]:
    return {
        "age": np.array([30, 50, 70, NAN, 80, 65.0]),
        "weight": np.array([70, 80, 0, 60, NAN, 90.0]),
        "height": np.array([170, 180, 0, 160, 175, 0.0]),
        "egfr": np.array([90, 55, NAN, 30, 70, 0.0]),
        "creatinine": np.array([1, 1.2, 2, NAN, 0.9, 1.0]),
        "diabetes": np.array([0, 1, NAN, 1, 0, 1.0]),
    }


def run_expression(text: str) -> Evaluation:
    return evaluate(parse(text, KNOWN), _columns(), 6)


def same(a: np.ndarray, b: list[float]) -> bool:
    return bool(np.allclose(a, np.array(b, dtype=float), equal_nan=True))


# ---------------------------------------------------------------------------------------------
# The grammar and the missing-value rule.


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("age + 1", [31, 51, 71, NAN, 81, 66]),
        ("weight / (height / 100) ** 2", [24.2214533, 24.691358, NAN, 23.4375, NAN, NAN]),
        ("-age", [-30, -50, -70, NAN, -80, -65]),
        ("abs(-age)", [30, 50, 70, NAN, 80, 65]),
        ("min(age, 60)", [30, 50, 60, NAN, 60, 60]),
        ("max(age, egfr, 60)", [90, 60, NAN, NAN, 80, 65]),
        ("clip(age, 40, 70)", [40, 50, 70, NAN, 70, 65]),
        ("band(age, [40, 65])", [0, 1, 2, NAN, 2, 2]),
        ("band(age, [-1, 65.5])", [1, 1, 2, NAN, 2, 1]),
        # Comparisons give 1/0, and missing (not 0) on a missing input.
        ("age > 65", [0, 0, 1, NAN, 1, 0]),
        ("40 <= age < 70", [0, 1, 0, NAN, 0, 1]),
        ("age == 65", [0, 0, 0, NAN, 0, 1]),
        # Three-valued logic: a false side decides "and", a true side decides "or".
        ("diabetes and age > 60", [0, 0, NAN, NAN, 0, 1]),
        ("diabetes or age > 60", [0, 1, 1, 1, 1, 1]),
        ("not diabetes", [1, 0, NAN, 0, 1, 0]),
        ("missing(egfr)", [0, 0, 1, 0, 0, 0]),
        ("where(missing(egfr), 90, egfr)", [90, 55, 90, 30, 70, 0]),
        ("where(age > 60, 1, 0)", [0, 0, 1, NAN, 1, 1]),
        ("log(egfr)", [np.log(90), np.log(55), NAN, np.log(30), np.log(70), NAN]),
        ("sqrt(egfr - 50)", [np.sqrt(40), np.sqrt(5), NAN, NAN, np.sqrt(20), NAN]),
        ("  age\n + 1", [31, 51, 71, NAN, 81, 66]),
        ("3 * 2", [6, 6, 6, 6, 6, 6]),
    ],
)
def test_the_grammar_computes_elementwise_with_the_missing_rule(text, expected):
    result = run_expression(text)
    assert result.values.dtype == np.float64 and result.values.shape == (6,)
    assert same(result.values, expected), result.values


def test_what_cannot_be_computed_is_missing_and_counted():
    divided = run_expression("weight / height")
    # 0/0 and 90/0 divide by zero; the missing weight does not count (it is missing anyway).
    assert divided.division_by_zero == 2 and np.isnan(divided.values[[2, 4, 5]]).all()
    assert run_expression("log(egfr)").undefined == 1  # log(0); the missing egfr is not counted
    assert run_expression("sqrt(egfr - 50)").undefined == 2
    assert run_expression("exp(age * 100)").undefined == 5  # overflow
    assert run_expression("(-age) ** 0.5").undefined == 5
    everywhere = run_expression("age / 0")
    assert np.isnan(everywhere.values).all() and everywhere.division_by_zero == 5
    # A guarded division is not a division by zero: where() looks only at the branch it takes.
    guarded = run_expression("where(egfr == 0, 0, 100 / egfr)")
    assert guarded.division_by_zero == 0
    assert same(guarded.values, [100 / 90, 100 / 55, NAN, 100 / 30, 100 / 70, 0])


def test_the_evaluator_never_writes_into_the_columns_it_reads():
    columns = _columns()
    before = {k: v.copy() for k, v in columns.items()}
    for text in ("age", "+age", "where(missing(age), 0, age)", "weight / height", "egfr"):
        result = evaluate(parse(text, KNOWN), columns, 6)
        result.values[:] = 1.0
    for name, values in columns.items():
        assert np.array_equal(values, before[name], equal_nan=True), name


@pytest.mark.parametrize(
    ("text", "reason", "column"),
    [
        ("agee + 1", "unknown feature 'agee'; did you mean age?", 1),
        ("age + weigth", "unknown feature 'weigth'", 7),
        ("age.__class__", "attribute access", 1),
        ("age[0]", "indexing", 1),
        ("open('/etc/passwd')", "open() is not a function of this language", 1),
        ("eval('1')", "eval() is not a function", 1),
        ("(lambda: 1)()", "lambda is not allowed", 2),
        ("[x for x in age]", "comprehensions are not allowed", 1),
        ("{x: 1 for x in age}", "comprehensions are not allowed", 1),
        ("__import__('os')", "names starting with __", 1),
        ("age if diabetes else 1", "write where(c, a, b)", 1),
        ("age % 2", "% is not allowed", 1),
        ("age // 2", "// is not allowed", 1),
        ("age & 1", "write and", 1),
        ("age ** weight", "the exponent must be a number between -16 and 16", 8),
        ("age ** 100", "the exponent must be a number", 8),
        ("clip(age, 1)", "clip() takes 3 arguments, not 2", 1),
        ("clip(age, lo=1, hi=2)", "keyword arguments are not allowed", 14),
        ("max(*age)", "* unpacking is not allowed", 5),
        ("min(age)", "min() takes 2 or more arguments", 1),
        ("band(age, 40)", "band() takes its edges as a list of numbers", 11),
        ("band(age, [65, 40])", "edges must increase: 40 comes after 65", 16),
        ("band(age, [weight])", "edges must be numbers written out", 12),
        ("log([1, 2])", "a list [...] is only allowed as band()'s edges", 5),
        ("age + 'x'", "text ('x') is not allowed", 7),
        ("True + age", "True is not a number here", 1),
        ("age is None", "the comparison 'is' is not allowed", 1),
        ("age in [1]", "the comparison 'in' is not allowed", 1),
        ("x := 1", ":= is not allowed", 1),
        ("f'{age}'", "f-strings", 1),
        ("age(1)", "age is a feature, not a function", 1),
        ("log", "log is a function: call it", 1),
        ("1e999", "the number is too large", 1),
        ("age +", "not a valid expression", 6),
        ("import os", "not a valid expression", 1),
        ("age; 1", "not a valid expression", 4),
        ("(age", "the parentheses do not match", 1),
        ("age,", "tuples are not allowed", 1),
        ("~age", "~ is not allowed", 1),
        ("age + 1j", "complex numbers are not allowed", 7),
    ],
)
def test_anything_outside_the_grammar_is_refused_with_position_and_reason(text, reason, column):
    with pytest.raises(ExpressionError) as caught:
        parse(text, KNOWN)
    assert reason in caught.value.reason, caught.value.reason
    assert caught.value.column == column, caught.value.describe()
    assert f"column {column}" in str(caught.value)


def test_a_position_on_a_later_line_names_the_line():
    with pytest.raises(ExpressionError) as caught:
        parse("age +\n  bogus", KNOWN)
    assert caught.value.line == 2 and caught.value.column == 3
    assert "line 2, column 3" in str(caught.value)


def test_limits_on_length_and_depth():
    with pytest.raises(ExpressionError, match="limit is 500"):
        parse("age + " * 100 + "1", KNOWN)
    assert len("age + " * 80 + "1") < MAX_LENGTH
    with pytest.raises(ExpressionError, match=r"more than 24 deep|nested"):
        parse("(" * 60 + "age" + ")" * 60 + "+" + "-" * 60 + "age", KNOWN)
    with pytest.raises(ExpressionError, match="nested"):
        parse("-" * 200 + "age", KNOWN)
    with pytest.raises(ExpressionError, match="empty"):
        parse("   ", KNOWN)
    with pytest.raises(ExpressionError, match="null bytes"):
        parse("age\x00", KNOWN)


# ---------------------------------------------------------------------------------------------
# Nothing typed is ever run: known escape attempts, and a fuzz over random expression trees.

_WATCHED = ("exec", "import", "open", "os.system", "subprocess.Popen", "os.exec", "os.spawn")
_seen_events: list[str] = []
_watching = [False]


def _audit(event: str, args: tuple) -> None:
    if _watching[0] and event.startswith(_WATCHED):
        _seen_events.append(event)


sys.addaudithook(_audit)


def _evaluate_watched(text: str) -> np.ndarray | None:
    """Parse and evaluate under the audit hook; ExpressionError is the one refusal allowed.
    Returns the values, or None when refused."""
    columns = _columns()
    _seen_events.clear()
    _watching[0] = True
    try:
        try:
            return evaluate(parse(text, KNOWN), columns, 6).values
        except ExpressionError:
            return None
    finally:
        _watching[0] = False
        assert not _seen_events, f"{text!r} made the interpreter do {_seen_events}"


# Warm up, so that a first call's lazy imports (numpy's) are not taken for an escape.
run_expression("where(age > 1 and not diabetes, log(age) / sqrt(egfr), band(age, [1]))")

ESCAPES = [
    "().__class__.__bases__[0].__subclasses__()",
    "__import__('os').system('touch {marker}')",
    "open('/etc/passwd')",
    "open('{marker}', 'w')",
    "(lambda: 1)()",
    "[x for x in age]",
    "age.__class__",
    "getattr(age, 'x')",
    "eval('1+1')",
    "exec('import os')",
    "compile('1', 'x', 'eval')",
    "globals()",
    "locals()['__builtins__']",
    "__builtins__",
    "age.__class__.__mro__[-1].__subclasses__()",
    "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == 'Popen']",
    "breakpoint()",
    "help()",
    "vars(age)",
    "type(age)",
    "max.__self__",
    "log.__globals__",
    "where.__code__",
    "np.sum(age)",
    "numpy.load('x')",
    "age.tofile('{marker}')",
    "(age).__array_interface__",
    "f'{age.__class__}'",
    "{age: 1}",
    "{age}",
    "(y := age)",
    "[*age]",
    "max(*[age])",
    "lambda: __import__('os')",
    "age if __import__('os').system('touch {marker}') else 1",
    "clip(age, lo=__import__('os'), hi=1)",
    "band(age, [__import__('os').system('touch {marker}')])",
    "import os",
    "__import__",
    "age\n__import__('os').system('touch {marker}')",
    "age) or (__import__('os').system('touch {marker}')",
    "age # comment\n) + (__import__('os')",
    "\\x61ge",
    "'\\x5f\\x5fimport\\x5f\\x5f'",
    "b'age'",
    "...",
    "None",
    "print(1)",
    "[].append(1)",
    "super()",
    "object()",
]


@pytest.mark.parametrize("attempt", ESCAPES)
def test_known_escape_attempts_are_refused_and_run_nothing(attempt, tmp_path):
    marker = tmp_path / f"pwned-{uuid.uuid4().hex}"
    text = attempt.replace("{marker}", str(marker))
    with pytest.raises(ExpressionError):
        parse(text, KNOWN)
    assert _evaluate_watched(text) is None
    assert not marker.exists()


_NAMES = [*KNOWN, "x", "os", "np", "__class__", "__import__", "open", "eval", "self", "log"]
_FUNCTIONS = [
    "abs", "log", "log10", "sqrt", "exp", "min", "max", "clip", "where", "band", "missing",
    "eval", "exec", "open", "getattr", "__import__", "print", "len", "age", "round",
]  # fmt: skip
_BINARY = [ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.Mod, ast.FloorDiv, ast.BitAnd]
_UNARY = [ast.USub, ast.UAdd, ast.Not, ast.Invert]
_COMPARE = [ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq, ast.Is, ast.In]

_constants = st.one_of(
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, -1, 0.5, 16, 17, 1e308]),
    st.text(max_size=4),
    st.binary(max_size=2),
    st.booleans(),
    st.none(),
    st.complex_numbers(max_magnitude=5, allow_nan=False, allow_infinity=False),
)
_leaves = st.one_of(
    st.sampled_from(_NAMES).map(lambda n: ast.Name(id=n, ctx=ast.Load())),
    _constants.map(lambda v: ast.Constant(value=v)),
)


def _load(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def _branches(children):
    return st.one_of(
        st.tuples(children, st.sampled_from(_BINARY), children).map(
            lambda t: ast.BinOp(left=t[0], op=t[1](), right=t[2])
        ),
        st.tuples(st.sampled_from(_UNARY), children).map(
            lambda t: ast.UnaryOp(op=t[0](), operand=t[1])
        ),
        st.tuples(
            children,
            st.lists(st.tuples(st.sampled_from(_COMPARE), children), min_size=1, max_size=3),
        ).map(
            lambda t: ast.Compare(
                left=t[0], ops=[op() for op, _ in t[1]], comparators=[c for _, c in t[1]]
            )
        ),
        st.tuples(
            st.sampled_from([ast.And, ast.Or]), st.lists(children, min_size=2, max_size=3)
        ).map(lambda t: ast.BoolOp(op=t[0](), values=t[1])),
        st.tuples(st.sampled_from(_FUNCTIONS), st.lists(children, max_size=4)).map(
            lambda t: ast.Call(func=_load(t[0]), args=t[1], keywords=[])
        ),
        st.tuples(children, st.lists(st.sampled_from([-5, 0, 40, 65, 65.5, 100]), max_size=4)).map(
            lambda t: ast.Call(
                func=_load("band"),
                args=[t[0], ast.List(elts=[ast.Constant(v) for v in t[1]], ctx=ast.Load())],
                keywords=[],
            )
        ),
        st.tuples(children, st.sampled_from(["__class__", "real", "T", "tofile"])).map(
            lambda t: ast.Attribute(value=t[0], attr=t[1], ctx=ast.Load())
        ),
        st.tuples(children, children).map(
            lambda t: ast.Subscript(value=t[0], slice=t[1], ctx=ast.Load())
        ),
        st.lists(children, max_size=3).map(lambda xs: ast.List(elts=xs, ctx=ast.Load())),
        st.lists(children, min_size=1, max_size=3).map(
            lambda xs: ast.Tuple(elts=xs, ctx=ast.Load())
        ),
        children.map(
            lambda c: ast.Lambda(
                args=ast.arguments(
                    posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[], defaults=[]
                ),
                body=c,
            )
        ),
        st.tuples(children, children).map(
            lambda t: ast.ListComp(
                elt=t[0],
                generators=[
                    ast.comprehension(
                        target=ast.Name(id="x", ctx=ast.Store()), iter=t[1], ifs=[], is_async=0
                    )
                ],
            )
        ),
        st.tuples(children, children, children).map(
            lambda t: ast.IfExp(test=t[0], body=t[1], orelse=t[2])
        ),
        st.tuples(st.sampled_from(["clip", "min", "open"]), children).map(
            lambda t: ast.Call(
                func=_load(t[0]), args=[t[1]], keywords=[ast.keyword(arg="lo", value=t[1])]
            )
        ),
        children.map(
            lambda c: ast.Call(
                func=_load("max"), args=[ast.Starred(value=c, ctx=ast.Load())], keywords=[]
            )
        ),
        children.map(lambda c: ast.NamedExpr(target=ast.Name(id="y", ctx=ast.Store()), value=c)),
        children.map(lambda c: ast.JoinedStr(values=[ast.FormattedValue(value=c, conversion=-1)])),
        st.tuples(children, children).map(
            lambda t: ast.Call(
                func=ast.Attribute(value=t[0], attr="__call__", ctx=ast.Load()),
                args=[t[1]],
                keywords=[],
            )
        ),
    )


# Trees inside the grammar, so that the fuzz also walks deep through evaluation, not only
# through refusals: features and numbers, each operator and function with its arity.
_good_leaves = st.one_of(
    st.sampled_from(KNOWN).map(_load),
    st.sampled_from([0, 1, 2, 0.5, -3, 65, 1e-300, 1e300]).map(lambda v: ast.Constant(value=v)),
)
_ARITY = {"abs": 1, "log": 1, "log10": 1, "sqrt": 1, "exp": 1, "missing": 1, "clip": 3}


def _good_branches(children):
    return st.one_of(
        st.tuples(children, st.sampled_from([ast.Add, ast.Sub, ast.Mult, ast.Div]), children).map(
            lambda t: ast.BinOp(left=t[0], op=t[1](), right=t[2])
        ),
        st.tuples(children, st.sampled_from([2, 3, 0.5, -1, -0.5, 16])).map(
            lambda t: ast.BinOp(left=t[0], op=ast.Pow(), right=ast.Constant(t[1]))
        ),
        st.tuples(st.sampled_from([ast.USub, ast.Not]), children).map(
            lambda t: ast.UnaryOp(op=t[0](), operand=t[1])
        ),
        st.tuples(
            children,
            st.lists(
                st.tuples(st.sampled_from([ast.Lt, ast.GtE, ast.Eq, ast.NotEq]), children),
                min_size=1,
                max_size=2,
            ),
        ).map(
            lambda t: ast.Compare(
                left=t[0], ops=[op() for op, _ in t[1]], comparators=[c for _, c in t[1]]
            )
        ),
        st.tuples(
            st.sampled_from([ast.And, ast.Or]), st.lists(children, min_size=2, max_size=3)
        ).map(lambda t: ast.BoolOp(op=t[0](), values=t[1])),
        st.tuples(st.sampled_from(sorted(_ARITY)), st.lists(children, min_size=3, max_size=3)).map(
            lambda t: ast.Call(func=_load(t[0]), args=t[1][: _ARITY[t[0]]], keywords=[])
        ),
        st.tuples(st.sampled_from(["min", "max"]), st.lists(children, min_size=2, max_size=4)).map(
            lambda t: ast.Call(func=_load(t[0]), args=t[1], keywords=[])
        ),
        st.tuples(children, children, children).map(
            lambda t: ast.Call(func=_load("where"), args=list(t), keywords=[])
        ),
        st.tuples(children, st.sets(st.sampled_from([-5, 0, 40, 65, 100]), min_size=1)).map(
            lambda t: ast.Call(
                func=_load("band"),
                args=[t[0], ast.List([ast.Constant(v) for v in sorted(t[1])], ast.Load())],
                keywords=[],
            )
        ),
    )


_good_trees = st.recursive(_good_leaves, _good_branches, max_leaves=16)
# Hostile trees: mostly grammatical, with a node from outside the grammar here and there (a
# tree of hostile nodes only would be refused at its root every time).
_trees = st.recursive(
    st.one_of(_good_leaves, _good_leaves, _leaves),
    lambda children: st.integers(0, 7).flatmap(
        lambda i: _branches(children) if i == 0 else _good_branches(children)
    ),
    max_leaves=24,
)


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(tree=_trees)
def test_fuzz_random_expression_trees_give_floats_or_our_refusal(tree):
    try:
        text = ast.unparse(ast.fix_missing_locations(ast.Expression(body=tree)))
    except Exception:  # a tree ast cannot write back as text: nothing a user could type
        assume(False)
        return
    values = _evaluate_watched(text)
    if values is not None:
        assert isinstance(values, np.ndarray) and values.dtype == np.float64
        assert values.shape == (6,)
        assert not np.isinf(values).any()  # too large is missing, never infinite


@settings(
    max_examples=400,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
@given(tree=_good_trees)
def test_fuzz_grammatical_trees_evaluate_to_floats(tree):
    text = ast.unparse(ast.fix_missing_locations(ast.Expression(body=tree)))
    values = _evaluate_watched(text)
    if values is None:
        # Refused only for its size, never for what it holds.
        with pytest.raises(ExpressionError, match=r"limit is|deep|parts"):
            parse(text, KNOWN)
        return
    assert values.dtype == np.float64 and values.shape == (6,)
    assert not np.isinf(values).any()


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(text=st.text(max_size=80))
def test_fuzz_any_text_gives_floats_or_our_refusal(text):
    values = _evaluate_watched(text)
    assert values is None or (values.dtype == np.float64 and values.shape == (6,))


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(
    data=st.lists(
        st.one_of(st.floats(allow_nan=True, allow_infinity=False), st.just(0.0)),
        min_size=6,
        max_size=6,
    ),
    text=st.sampled_from(
        [
            "age / weight",
            "log(age) + sqrt(weight)",
            "age ** -2",
            "exp(age)",
            "where(age > weight, age / weight, weight / age)",
            "band(age / weight, [0, 1, 2]) and missing(egfr) or not diabetes",
            "clip(age * 1e300, -1, 1) * 1e308 * 10",
        ]
    ),
)
def test_fuzz_values_never_escape_as_errors(data, text):
    columns = _columns()
    columns["age"] = np.array(data, dtype=float)
    result = evaluate(parse(text, KNOWN), columns, 6)
    assert result.values.dtype == np.float64 and not np.isinf(result.values).any()


# ---------------------------------------------------------------------------------------------
# Definitions in order, cycles, the matrix a model reads.


def test_definitions_are_computed_after_what_they_read_and_cycles_are_refused():
    raw = ["age", "weight"]
    order = parsed_in_order(
        [Definition("b", "a * 2"), Definition("a", "age + 1"), Definition("c", "b + a")], raw
    )
    assert [d.name for d, _ in order] == ["a", "b", "c"]
    with pytest.raises(ExpressionError, match="circle: a → b → a"):
        parsed_in_order([Definition("a", "b + 1"), Definition("b", "a + 1")], raw)
    values = np.array([[30.0, 70.0], [NAN, 80.0]])
    matrix = feature_columns(
        ["weight", "c"], values, raw, [Definition("a", "age + 1"), Definition("c", "a * 2")]
    )
    assert same(matrix[:, 0], [70, 80]) and same(matrix[:, 1], [62, NAN])
    rows = feature_columns(["c"], values, raw, [Definition("c", "age")], rows=np.array([0]))
    assert rows.shape == (1, 1) and rows[0, 0] == 30


# ---------------------------------------------------------------------------------------------
# Definitions, versions and the preview (Django).


@pytest.fixture
def cased_project(project, data_scientist, import_frame, settings, tmp_path) -> Project:
    settings.CASEBOOK_MODEL_DIR = tmp_path / "models"
    import_frame(project, data_scientist, make_cases_frame(300, labeled=0.8, seed=3))
    project.refresh_from_db()
    return project


@pytest.mark.django_db
def test_defining_changing_and_retiring_make_versions_with_who_when_why(cased_project, reviewer):
    feature, v1 = services.derived_feature_create(
        project=cased_project,
        created_by=reviewer,
        name="bnp_per_creatinine",
        expression="nt_pro_bnp / creatinine",
        unit="pg/mL per mg/dL",
        group="Labs",
        note="a ratio the cardiologists use",
    )
    assert (v1.number, v1.created_by, v1.note) == (1, reviewer, "a ratio the cardiologists use")
    assert v1.change == "Added bnp_per_creatinine = nt_pro_bnp / creatinine"
    assert v1.definitions == [feature.snapshot()]
    services.derived_feature_create(
        project=cased_project, created_by=reviewer, name="old", expression="age >= 65"
    )
    v3 = services.derived_feature_change(
        feature=feature, changed_by=reviewer, expression="nt_pro_bnp / (creatinine + 0.1)"
    )
    assert v3.number == 3 and "→ nt_pro_bnp / (creatinine + 0.1)" in v3.change
    assert [d["name"] for d in v3.definitions] == ["bnp_per_creatinine", "old"]
    v4 = services.derived_feature_retire(feature=feature, retired_by=reviewer, note="noisy")
    assert v4.definitions == [d for d in v3.definitions if d["name"] == "old"]
    assert [v.number for v in selectors.feature_set_list(project=cased_project)] == [4, 3, 2, 1]
    # Versions are kept whole: v1 still holds the first definition.
    v1.refresh_from_db()
    assert v1.definitions[0]["expression"] == "nt_pro_bnp / creatinine"
    assert selectors.feature_names(project=cased_project) == [
        "age",
        "creatinine",
        "nt_pro_bnp",
        "old",
    ]
    events = AuditEvent.objects.filter(action=AuditAction.FEATURE_SET).order_by("id")
    assert [e.object_id for e in events] == ["1", "2", "3", "4"]
    assert events.last().detail["note"] == "noisy"
    # The project keeps a copy for the labeling screen.
    cased_project.refresh_from_db()
    assert cased_project.feature_set_definitions == v4.definitions
    # A retired name can be defined again.
    again, v5 = services.derived_feature_create(
        project=cased_project, created_by=reviewer, name="bnp_per_creatinine", expression="age"
    )
    assert v5.number == 5 and again.pk != feature.pk


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("name", "expression", "field", "message"),
    [
        ("age", "age * 2", "name", "already a raw feature"),
        ("log", "age * 2", "name", "a word of the expression language"),
        ("2x", "age * 2", "name", "must start with a letter"),
        ("__x", "age * 2", "name", "cannot start with __"),
        ("label", "age * 2", "name", "reserved column"),
        ("ratio", "nt_pro_bnp / egfr", "expression", "unknown feature 'egfr' (at column 14)"),
        ("ratio", "age / 0", "expression", "Division by zero in every case"),
        ("ratio", "age * 0 + 3", "expression", "The result is 3 for every"),
        ("ratio", "log(age - 1000)", "expression", "missing for all"),
        ("ratio", "band(age, 65)", "expression", "edges as a list of numbers"),
        ("ratio", "age.__class__", "expression", "attribute access"),
        ("ratio", "", "expression", "Write an expression"),
    ],
)
def test_bad_definitions_get_a_clear_message_before_saving(
    cased_project, reviewer, name, expression, field, message
):
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError) as caught:
        services.derived_feature_create(
            project=cased_project, created_by=reviewer, name=name, expression=expression
        )
    assert message in " ".join(caught.value.message_dict[field])
    assert not FeatureSetVersion.objects.exists() and not DerivedFeature.objects.exists()


@pytest.mark.django_db
def test_a_rare_value_is_not_mistaken_for_a_constant(cased_project, reviewer, monkeypatch):
    """The sample may miss a rare value; saving looks at every case before refusing."""
    monkeypatch.setattr(selectors, "SAMPLE_SIZE", 20)
    oldest = float(selectors.feature_sample(project=cased_project, size=10_000).values[:, 0].max())
    feature, _ = services.derived_feature_create(
        project=cased_project,
        created_by=reviewer,
        name="oldest",
        expression=f"age >= {oldest}",
    )
    assert feature.pk


@pytest.mark.django_db
def test_retiring_a_feature_another_reads_is_refused_and_cycles_cannot_be_made(
    cased_project, reviewer
):
    from django.core.exceptions import ValidationError

    base, _ = services.derived_feature_create(
        project=cased_project, created_by=reviewer, name="ratio", expression="nt_pro_bnp / age"
    )
    reader, _ = services.derived_feature_create(
        project=cased_project, created_by=reviewer, name="log_ratio", expression="log(ratio)"
    )
    with pytest.raises(ValidationError, match="log_ratio reads ratio"):
        services.derived_feature_retire(feature=base, retired_by=reviewer)
    with pytest.raises(ValidationError, match="log_ratio reads ratio, so ratio cannot read it"):
        services.derived_feature_change(
            feature=base, changed_by=reviewer, expression="log_ratio * 2"
        )
    with pytest.raises(ValidationError, match="ratio cannot read itself"):
        services.derived_feature_change(feature=base, changed_by=reviewer, expression="ratio + 1")
    with pytest.raises(ValidationError, match="Nothing changed"):
        services.derived_feature_change(feature=reader, changed_by=reviewer)
    version = services.derived_feature_change(
        feature=reader, changed_by=reviewer, show_in_labeling=True
    )
    assert "shown to clinicians" in version.change


@pytest.mark.django_db
def test_the_preview_shows_values_distribution_and_errors(cased_project, reviewer):
    preview = selectors.derived_preview(project=cased_project, expression="nt_pro_bnp / creatinine")
    assert preview.ok and preview.error is None
    assert preview.inputs == ["nt_pro_bnp", "creatinine"]
    assert len(preview.rows) == 10 and preview.sample_size == 300 and preview.whole
    row = preview.rows[0]
    assert row["value"] == pytest.approx(row["inputs"]["nt_pro_bnp"] / row["inputs"]["creatinine"])
    summary = preview.summary
    assert summary["cases"] == 300 and summary["missing"] == 0
    assert summary["min"] <= summary["median"] <= summary["max"]
    assert sum(preview.histogram["counts"]) == 300
    assert {c["label"] for c in preview.by_class} == {"heart_failure", "no_heart_failure"}
    banded = selectors.derived_preview(project=cased_project, expression="band(age, [60, 70])")
    assert banded.histogram["kind"] == "values" and banded.histogram["values"] == [0, 1, 2]
    wrong = selectors.derived_preview(project=cased_project, expression="age + egfr")
    assert wrong.error.column == 7 and "unknown feature 'egfr'" in wrong.error.reason
    constant = selectors.derived_preview(project=cased_project, expression="age - age")
    assert not constant.ok and "The result is 0 for every" in constant.problems[0]
    zero = selectors.derived_preview(project=cased_project, expression="age / (age - age)")
    assert "Division by zero in every case" in zero.problems[0]
    assert zero.summary["division_by_zero"] == 300


@pytest.mark.django_db
def test_the_sample_of_a_big_project_is_spread_and_bounded(cased_project, monkeypatch):
    sample = selectors.feature_sample(project=cased_project, size=50)
    assert len(sample.case_ids) == 50 and not sample.whole
    assert np.all(np.diff(sample.case_ids) > 0)
    ids = sorted(cased_project.cases.values_list("id", flat=True))
    assert sample.case_ids[0] < ids[50] and sample.case_ids[-1] > ids[-50]  # not just the first


# ---------------------------------------------------------------------------------------------
# Training and predicting with derived features.


def _train(project) -> TrainingRun:
    run, created = modeling_services.training_run_request(
        project=project, trigger=RunTrigger.MANUAL
    )
    assert created
    run = modeling_services.training_run_execute(run_id=run.pk)
    for deployment in Deployment.objects.filter(project=project, scores_applied_at__isnull=True):
        modeling_services.deployment_apply(deployment_id=deployment.pk)
    return run


@pytest.mark.django_db
def test_an_old_model_version_keeps_predicting_with_the_features_it_was_trained_on(
    cased_project, reviewer, data_scientist
):
    feature, _ = services.derived_feature_create(
        project=cased_project,
        created_by=reviewer,
        name="log_bnp",
        expression="log(nt_pro_bnp)",
    )
    modeling_services.training_config_change(
        project=cased_project,
        changed_by=data_scientist,
        model_family="logistic_regression",
        features=["log_bnp", "age"],
    )
    run = _train(cased_project)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.feature_set.number == 1 and run.params["feature_set"] == 1
    assert run.params["derived"] == [{"name": "log_bnp", "expression": "log(nt_pro_bnp)"}]
    assert run.feature_names == ["age", "log_bnp"]  # in the project's order
    version = run.model_version
    case_ids = list(cased_project.cases.order_by("id").values_list("id", flat=True)[:5])
    new_case = {"age": 71.0, "nt_pro_bnp": 900.0}

    def answers() -> tuple[list, list]:
        by_id = predict(project=cased_project, case_ids=case_ids)
        by_values = predict(project=cased_project, rows=[new_case])
        assert by_id.version.pk == by_values.version.pk == version.pk
        return [r["probabilities"] for r in by_id.rows], by_values.rows[0]["probabilities"]

    before = answers()
    # What the model computes is log(nt_pro_bnp), from the raw value sent.
    model = modeling_services.version_model(version)
    expected = model.predict_proba(np.array([[71.0, np.log(900.0)]]))[0]
    assert before[1]["heart_failure"] == pytest.approx(
        expected[list(model.classes_).index("heart_failure")], abs=1e-6
    )
    _, stored = modeling_services.version_predictions_load(version)

    # The definition changes, then is retired: the version predicts exactly as before.
    services.derived_feature_change(feature=feature, changed_by=reviewer, expression="nt_pro_bnp")
    feature.refresh_from_db()
    services.derived_feature_retire(feature=feature, retired_by=reviewer)
    assert answers() == before
    Path(version.predictions_path).unlink()
    ModelVersion.objects.filter(pk=version.pk).update(predictions_path="", predictions_sha256="")
    version.refresh_from_db()
    _, again = modeling_services.version_predictions_load(version)
    assert np.allclose(again, stored)
    # A derived feature is computed from the raw values, never sent.
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="'log_bnp' is a derived feature, computed from"):
        predict(project=cased_project, rows=[{"log_bnp": 6.0}])
    # Reproducing the run uses the definition it recorded.
    result = modeling_services.training_run_reproduce(run_id=run.pk)
    assert result["matched"] and result["derived"] == run.params["derived"]
    # The configuration still names the retired feature: the next run says so.
    failed = _train(cased_project)
    assert failed.status == RunStatus.FAILED
    assert "unknown features: log_bnp" in failed.error and "Models page" in failed.error


@pytest.mark.django_db
def test_training_config_accepts_derived_names_and_all_means_raw_and_derived(
    cased_project, reviewer, data_scientist
):
    from django.core.exceptions import ValidationError

    services.derived_feature_create(
        project=cased_project, created_by=reviewer, name="ratio", expression="nt_pro_bnp / age"
    )
    services.derived_feature_create(
        project=cased_project, created_by=reviewer, name="log_ratio", expression="log(ratio)"
    )
    with pytest.raises(ValidationError, match="Not features of this project: bogus"):
        modeling_services.training_config_change(
            project=cased_project,
            changed_by=data_scientist,
            model_family="logistic_regression",
            features=["bogus"],
        )
    config = modeling_services.training_config_change(
        project=cased_project,
        changed_by=data_scientist,
        model_family="logistic_regression",
        features=["log_ratio", "age"],
    )
    assert config.features == ["age", "log_ratio"]
    run, _ = modeling_services.training_run_request(project=cased_project, trigger="manual")
    # log_ratio reads ratio: both are recorded, in the order they are computed.
    assert [d["name"] for d in run.params["derived"]] == ["ratio", "log_ratio"]
    TrainingRun.objects.filter(pk=run.pk).delete()
    modeling_services.training_config_change(
        project=cased_project, changed_by=data_scientist, model_family="logistic_regression"
    )
    run = _train(cased_project)
    assert run.status == RunStatus.SUCCEEDED, run.error
    assert run.feature_names == ["age", "creatinine", "nt_pro_bnp", "ratio", "log_ratio"]


@pytest.mark.django_db
def test_importance_is_stored_and_drawn_on_the_run_page(cased_project, reviewer, client):
    services.derived_feature_create(
        project=cased_project,
        created_by=reviewer,
        name="log_bnp",
        expression="log(nt_pro_bnp)",
        description="the log of NT-proBNP",
    )
    run = _train(cased_project)
    effect = run.model_version.evaluation["importance"]
    names = [row["name"] for row in effect["features"]]
    assert sorted(names) == ["age", "creatinine", "log_bnp", "nt_pro_bnp"]
    n_test = run.model_version.metrics["n_test"]
    assert effect["repeats"] == 5 and effect["cases"] == effect["held_out"] == n_test
    # The label depends on age and NT-proBNP (see make_cases_frame), not on creatinine.
    by_name = {row["name"]: row["mean"] for row in effect["features"]}
    assert max(by_name["log_bnp"], by_name["nt_pro_bnp"]) > by_name["creatinine"]
    client.force_login(reviewer)
    page = client.get(reverse("modeling:run", args=[cased_project.pk, run.pk]))
    body = page.content.decode()
    assert page.status_code == 200
    assert 'class="chart importance"' in body and "Which features the model relies on" in body
    assert "derived feature" in body and "log_bnp = log(nt_pro_bnp)" in body


@pytest.mark.django_db
def test_compare_says_what_adding_a_derived_feature_did(
    cased_project, reviewer, data_scientist, client
):
    first = _train(cased_project)
    services.derived_feature_create(
        project=cased_project, created_by=reviewer, name="log_bnp", expression="log(nt_pro_bnp)"
    )
    second = _train(cased_project)
    a, b = first.model_version, second.model_version
    objective = modeling_services.objective_change(
        project=cased_project,
        changed_by=data_scientist,
        metric="roc_auc",
        positive_class="heart_failure",
    )
    compared = modeling_services.model_versions_compare(a=a, b=b, objective=objective)
    features = compared["features"]
    assert [d["name"] for d in features["added"]] == ["log_bnp"] and not features["removed"]
    sentence = features["sentences"][0]
    assert sentence.startswith("Adding log_bnp (v1 → v2) ")
    assert re.search(
        r"(raised|lowered|left) ROC AUC \(heart_failure\) .*on the recent slice \(\d+ labeled "
        r"cases dated after \d{4}-\d\d-\d\d\)\.$",
        sentence,
    ), sentence
    assert any(s.startswith("On the same cases it ") for s in features["sentences"])
    assert features["slices"] and all("a" in s and "b" in s for s in features["slices"])
    client.force_login(reviewer)
    page = client.get(reverse("modeling:compare", args=[cased_project.pk]), {"a": 1, "b": 2})
    assert page.status_code == 200
    assert "Adding log_bnp (v1 → v2)" in page.content.decode()
    # Same features: no such section.
    same_features = modeling_services.model_versions_compare(a=b, b=b, objective=objective)
    assert same_features["features"] is None


# ---------------------------------------------------------------------------------------------
# Pages.


@pytest.mark.django_db
def test_features_page_defines_previews_changes_and_retires(
    cased_project, reviewer, clinician, client
):
    url = reverse("features:page", args=[cased_project.pk])
    client.force_login(clinician)
    page = client.get(url)
    assert page.status_code == 200 and b"define-form" not in page.content  # clinicians read
    assert client.post(url, {"name": "x", "expression": "age"}).status_code == 403
    client.force_login(reviewer)
    assert b"define-form" in client.get(url).content
    preview = client.post(
        reverse("features:preview", args=[cased_project.pk]),
        {"expression": "age + egfr"},
        headers={"HX-Request": "true"},
    )
    body = preview.content.decode()
    assert preview.status_code == 200 and 'id="preview"' in body and "<html" not in body
    assert "unknown feature &#x27;egfr&#x27;" in body and "<mark>egfr</mark>" in body
    good = client.post(
        reverse("features:preview", args=[cased_project.pk]),
        {"expression": "band(age, [60, 70])"},
    ).content.decode()
    assert 'class="chart histogram"' in good and "preview-rows" in good
    bad = client.post(url, {"name": "ratio", "expression": "age / 0"})
    assert bad.status_code == 400 and b"Division by zero in every case" in bad.content
    created = client.post(
        url,
        {"name": "ratio", "expression": "nt_pro_bnp / age", "group": "Labs", "note": "why not"},
    )
    assert created.status_code == 302
    feature = DerivedFeature.objects.get(name="ratio")
    change_url = reverse("features:change", args=[cased_project.pk, feature.pk])
    assert b"nt_pro_bnp / age" in client.get(change_url).content
    changed = client.post(change_url, {"expression": "nt_pro_bnp / (age + 1)", "group": "Labs"})
    assert changed.status_code == 302
    feature.refresh_from_db()
    assert feature.expression == "nt_pro_bnp / (age + 1)"
    retired = client.post(reverse("features:retire", args=[cased_project.pk, feature.pk]))
    assert retired.status_code == 302
    assert FeatureSetVersion.objects.filter(project=cased_project).count() == 3
    page = client.get(url).content.decode()
    assert "Retired ratio" in page and "why not" in page


@pytest.mark.django_db
def test_outsiders_get_404_on_the_features_pages(cased_project, outsider, reviewer, client):
    feature, _ = services.derived_feature_create(
        project=cased_project, created_by=reviewer, name="ratio", expression="nt_pro_bnp / age"
    )
    client.force_login(outsider)
    for url in (
        reverse("features:page", args=[cased_project.pk]),
        reverse("features:change", args=[cased_project.pk, feature.pk]),
    ):
        assert client.get(url).status_code == 404
    assert (
        client.post(reverse("features:retire", args=[cased_project.pk, feature.pk])).status_code
        == 404
    )


@pytest.mark.django_db
def test_clinicians_see_chosen_derived_features_without_another_query(
    cased_project, reviewer, clinician, client
):
    client.force_login(clinician)
    url = reverse("labeling:label", args=[cased_project.pk])
    client.get(url)  # takes a lease: the next reads show the same case
    with CaptureQueriesContext(connection) as before:
        plain = client.get(url).content.decode()
    services.derived_feature_create(
        project=cased_project,
        created_by=reviewer,
        name="bnp_per_age",
        expression="nt_pro_bnp / age",
        unit="pg/mL per year",
        group="Labs",
        show_in_labeling=True,
    )
    services.derived_feature_create(
        project=cased_project, created_by=reviewer, name="age_twice", expression="age * 2"
    )
    with CaptureQueriesContext(connection) as after:
        shown = client.get(url).content.decode()
    assert "bnp_per_age" not in plain
    assert "bnp_per_age" in shown and "pg/mL per year" in shown and "derived" in shown
    assert "age_twice" not in shown
    assert len(after.captured_queries) == len(before.captured_queries)
    case_id = int(shown.split('data-case-id="')[1].split('"')[0])
    from apps.cases.models import Case
    from apps.cases.selectors import case_features_dict

    raw = case_features_dict(case=Case.objects.get(pk=case_id))
    value = raw["nt_pro_bnp"] / raw["age"]
    assert f"{value:.4g}" in shown.replace(",", "")  # four significant digits


# ---------------------------------------------------------------------------------------------
# The API.


def api(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.mark.django_db
def test_the_api_lists_creates_previews_changes_and_retires(
    cased_project, reviewer, clinician, outsider
):
    base = f"/api/projects/{cased_project.pk}"
    sme, nurse = api(reviewer), api(clinician)
    preview = sme.post(f"{base}/derived-features/preview", {"expression": "age +"}, format="json")
    assert preview.status_code == 200
    assert preview.json()["ok"] is False and preview.json()["error"]["column"] == 6
    preview = sme.post(
        f"{base}/derived-features/preview", {"expression": "nt_pro_bnp / age"}, format="json"
    ).json()
    assert preview["ok"] and len(preview["rows"]) == 10 and preview["summary"]["cases"] == 300
    assert (
        nurse.post(
            f"{base}/derived-features/", {"name": "x", "expression": "age"}, format="json"
        ).status_code
        == 403
    )
    refused = sme.post(
        f"{base}/derived-features/", {"name": "ratio", "expression": "age / egfr"}, format="json"
    )
    assert refused.status_code == 400
    assert "unknown feature 'egfr'" in refused.json()["errors"]["expression"][0]
    created = sme.post(
        f"{base}/derived-features/",
        {"name": "ratio", "expression": "nt_pro_bnp / age", "note": "cardiology"},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["feature"]["name"] == "ratio" and body["feature_set"]["number"] == 1
    feature_id = body["feature"]["id"]
    listed = nurse.get(f"{base}/derived-features/").json()
    assert [f["name"] for f in listed] == ["ratio"]
    assert nurse.get(f"{base}/derived-features/{feature_id}/").json()["expression"] == (
        "nt_pro_bnp / age"
    )
    changed = sme.patch(
        f"{base}/derived-features/{feature_id}/",
        {"expression": "nt_pro_bnp / (age + 1)", "note": "smoother"},
        format="json",
    )
    assert changed.status_code == 200 and changed.json()["feature_set"]["number"] == 2
    retired = sme.post(f"{base}/derived-features/{feature_id}/retire", {}, format="json")
    assert retired.status_code == 200 and retired.json()["feature"]["retired_at"]
    assert nurse.get(f"{base}/derived-features/").json() == []
    assert [f["name"] for f in nurse.get(f"{base}/derived-features/?retired=1").json()] == ["ratio"]
    versions = nurse.get(f"{base}/feature-sets/").json()
    assert [v["number"] for v in versions] == [3, 2, 1]
    assert versions[1]["definitions"][0]["expression"] == "nt_pro_bnp / (age + 1)"
    assert versions[2]["note"] == "cardiology" and versions[0]["definitions"] == []
    stranger = api(outsider)
    assert stranger.get(f"{base}/derived-features/").status_code == 404
    assert stranger.get(f"{base}/feature-sets/").status_code == 404


def test_the_importance_scorer_gives_what_the_objective_gives():
    """Permutation importance scores with a faster twin of objective_value; they must agree,
    ties and one-class samples included."""
    from apps.modeling.ml.objectives import ObjectiveSpec, objective_scorer, objective_value

    rng = np.random.default_rng(0)
    for trial in range(120):
        classes = ["a", "b"] if trial % 2 else ["a", "b", "c"]
        n = int(rng.integers(1, 60))
        y = rng.choice(classes, n).astype(object)
        proba = rng.random((n, len(classes)))
        if trial % 3 == 0:
            proba = np.round(proba, 1) + 0.01  # ties
        proba = proba / proba.sum(axis=1, keepdims=True)
        for spec in (
            ObjectiveSpec("accuracy"),
            ObjectiveSpec("balanced_accuracy"),
            ObjectiveSpec("roc_auc", positive_class="b"),
            ObjectiveSpec("pr_auc", positive_class="b"),
            ObjectiveSpec("f_beta", positive_class="b", beta=2),
            ObjectiveSpec("recall_at_precision", positive_class="b", min_precision=0.6),
            ObjectiveSpec("precision_at_k", positive_class="b", k=7),
            ObjectiveSpec("expected_cost", cost_matrix=np.eye(len(classes)).tolist()),
        ):
            for threshold in (None, 0.4):
                expected = objective_value(spec, y, proba, classes, threshold)
                got = objective_scorer(spec, y, classes, threshold)(proba)
                assert (expected is None) == (got is None), (spec, n)
                if expected is not None:
                    assert got == pytest.approx(expected, abs=1e-12), (spec, n)


def test_importance_through_the_model_alone_equals_through_the_pipeline(monkeypatch):
    """The imputer and scaler act on each column alone, so importance shuffles the transformed
    sample and only the model predicts on every call: the numbers must be the pipeline's."""
    from apps.modeling.ml import training
    from apps.modeling.ml.objectives import ObjectiveSpec

    rng = np.random.default_rng(4)
    X = rng.normal(size=(600, 4))
    X[rng.random(X.shape) < 0.05] = np.nan
    y = np.where(np.nan_to_num(X[:, 0]) + rng.normal(0, 0.5, 600) > 0, "b", "a").astype(object)
    for family in ("logistic_regression", "random_forest"):
        params = {"model_family": family, "hyperparameters": {"n_estimators": 20}}
        pipeline = training.build_pipeline(params, 0).fit(X[:400], y[:400])
        spec = ObjectiveSpec("roc_auc", positive_class="b")
        fast = training.importance(pipeline, X[400:], y[400:], ["a", "b"], spec, None, 0)
        monkeypatch.setattr(training, "_COLUMNWISE", ())
        slow = training.importance(pipeline, X[400:], y[400:], ["a", "b"], spec, None, 0)
        monkeypatch.undo()
        assert [r["name"] for r in fast["features"]] == [r["name"] for r in slow["features"]]
        assert [r["mean"] for r in fast["features"]] == [r["mean"] for r in slow["features"]]
        assert fast["features"][0]["name"] == "feature 1"
