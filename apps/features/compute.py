"""Derived features over a matrix of raw features: the definitions in the order they can be
computed, and the columns a model reads. No Django here.

Derived values are never stored: they are computed from the raw matrix whenever a model trains
or predicts, from the definitions the model recorded, so that changing or retiring a definition
never changes what an existing model version sees.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from apps.features.expressions import Evaluation, Expression, ExpressionError, evaluate, parse


@dataclass(frozen=True)
class Definition:
    name: str
    expression: str


def definitions_from(records: Iterable[Mapping | Definition]) -> list[Definition]:
    """Definitions from what a run or a feature-set version recorded (dicts with a name and an
    expression)."""
    return [
        r
        if isinstance(r, Definition)
        else Definition(name=str(r["name"]), expression=str(r["expression"]))
        for r in records
    ]


def parsed_in_order(
    definitions: Sequence[Definition], raw_names: Sequence[str]
) -> list[tuple[Definition, Expression]]:
    """Each definition parsed, ordered so that each comes after the derived features it reads.

    Raises ExpressionError naming the definition for an expression outside the grammar, an
    unknown feature or a cycle (a reads b, b reads a)."""
    raw = set(raw_names)
    known = raw | {d.name for d in definitions}
    parsed: dict[str, tuple[Definition, Expression]] = {}
    for definition in definitions:
        try:
            parsed[definition.name] = (definition, parse(definition.expression, known))
        except ExpressionError as error:
            raise ExpressionError(f"{definition.name}: {error.describe()}") from None
    ordered: list[tuple[Definition, Expression]] = []
    state: dict[str, str] = {}

    def visit(name: str, path: tuple[str, ...]) -> None:
        if state.get(name) == "done":
            return
        if state.get(name) == "visiting":
            cycle = " → ".join((*path[path.index(name) :], name))
            raise ExpressionError(f"derived features read each other in a circle: {cycle}")
        state[name] = "visiting"
        for used in parsed[name][1].names:
            if used in parsed:
                visit(used, (*path, name))
        state[name] = "done"
        ordered.append(parsed[name])

    for definition in definitions:
        visit(definition.name, ())
    return ordered


def needed(
    definitions: Sequence[Definition], raw_names: Sequence[str], wanted: Iterable[str]
) -> list[Definition]:
    """The definitions that computing `wanted` takes (the derived ones among them and those
    they read), in an order they can be computed in."""
    ordered = parsed_in_order(definitions, raw_names)
    by_name = {d.name: (d, e) for d, e in ordered}
    keep: set[str] = set()
    stack = [w for w in wanted if w in by_name]
    while stack:
        name = stack.pop()
        if name in keep:
            continue
        keep.add(name)
        stack += [u for u in by_name[name][1].names if u in by_name]
    return [d for d, _ in ordered if d.name in keep]


def raw_inputs(definitions: Sequence[Definition], raw_names: Sequence[str]) -> list[str]:
    """The raw features the definitions read, in the order of `raw_names`."""
    used: set[str] = set()
    for _, expression in parsed_in_order(definitions, raw_names):
        used.update(expression.names)
    return [n for n in raw_names if n in used]


def derive(
    definitions: Sequence[Definition],
    values: np.ndarray,
    raw_names: Sequence[str],
    rows: np.ndarray | None = None,
) -> dict[str, Evaluation]:
    """Every definition evaluated over the raw matrix `values` (n, len(raw_names)), or over
    its `rows` only."""
    position = {name: j for j, name in enumerate(raw_names)}
    n = values.shape[0] if rows is None else len(rows)
    columns: dict[str, np.ndarray] = {}
    results: dict[str, Evaluation] = {}
    for definition, expression in parsed_in_order(definitions, raw_names):
        for name in expression.names:
            if name not in columns and name in position:
                j = position[name]
                # A view of the column (no copy) for all rows; only the rows asked for else.
                columns[name] = values[:, j] if rows is None else values[rows, j]
        result = evaluate(expression, columns, n)
        results[definition.name] = result
        columns[definition.name] = result.values
    return results


def feature_columns(
    names: Sequence[str],
    values: np.ndarray,
    raw_names: Sequence[str],
    definitions: Sequence[Definition] = (),
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """The matrix a model reads: one column per name, raw ones taken from `values`, derived
    ones computed from `definitions`. Only the definitions `names` need are computed."""
    position = {name: j for j, name in enumerate(raw_names)}
    unknown = [n for n in names if n not in position and n not in {d.name for d in definitions}]
    if unknown:
        raise ExpressionError(f"unknown features: {', '.join(unknown)}")
    # The rows wanted, gathered once (whole rows are contiguous copies); every column below
    # is then a view of them.
    source = values if rows is None else values[rows]
    derived = derive(needed(definitions, raw_names, names), source, raw_names)
    out = np.empty((source.shape[0], len(names)), dtype=np.float64)
    i = 0
    while i < len(names):
        if names[i] in derived:
            out[:, i] = derived[names[i]].values
            i += 1
            continue
        # A run of raw features in their stored order is copied as one block, a row at a
        # time, rather than column by column.
        j, k = position[names[i]], 1
        while i + k < len(names) and position.get(names[i + k]) == j + k:
            k += 1
        out[:, i : i + k] = source[:, j : j + k]
        i += k
    return out
