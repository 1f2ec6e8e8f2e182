"""Row filters of permits: a small expression language over a dataset's columns.

A filter is written like a Python condition, for example
``year >= 2015 and region in ('11', '75')`` or ``not (sex == 2)``: names are columns;
values are numbers, strings, ``True``/``False``/``None``; the operators are ``==``,
``!=``, ``<``, ``<=``, ``>``, ``>=``, ``in``, ``not in``, ``and``, ``or``, ``not``.
Nothing else parses (no calls, attributes, arithmetic): a filter can only select rows.
It becomes a pyarrow compute expression, so a reader applies it while scanning.
"""

from __future__ import annotations

import ast
from collections.abc import Collection
from typing import Any

import pyarrow.compute as pc

from hdh.errors import InvalidInput

_COMPARE = {
    ast.Eq: "__eq__",
    ast.NotEq: "__ne__",
    ast.Lt: "__lt__",
    ast.LtE: "__le__",
    ast.Gt: "__gt__",
    ast.GtE: "__ge__",
}


def _bad(text: str, problem: str) -> InvalidInput:
    return InvalidInput(
        f"row filter {text!r}: {problem}",
        hint="write e.g. year >= 2015 and region in ('11', '75'), with the permit's columns",
    )


def parse(text: str, columns: Collection[str]) -> tuple[str, Any]:
    """The filter normalised (as it will be stored) and as a pyarrow expression; refused
    when it is not valid or names a column outside ``columns``."""
    if len(text) > 2000:
        raise _bad(text[:40] + "…", "it is longer than 2000 characters")
    try:
        tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as exc:
        raise _bad(text, f"it is not a valid expression ({exc.msg})") from None
    used: set[str] = set()

    def value(node: ast.expr) -> Any:
        if isinstance(node, ast.Constant) and (
            node.value is None or isinstance(node.value, str | int | float | bool)
        ):
            return node.value
        if (
            isinstance(node, ast.UnaryOp)
            and isinstance(node.op, ast.USub)
            and isinstance(node.operand, ast.Constant)
            and isinstance(node.operand.value, int | float)
        ):
            return -node.operand.value
        raise _bad(
            text, f"{ast.unparse(node)!r} is not a value (a number, text, True, False, None)"
        )

    def column(node: ast.expr) -> Any:
        if not isinstance(node, ast.Name):
            raise _bad(text, f"{ast.unparse(node)!r} is not a column name")
        if node.id not in columns:
            raise _bad(text, f"column {node.id!r} is not one the permit allows")
        used.add(node.id)
        return pc.field(node.id)

    def walk(node: ast.expr) -> Any:
        if isinstance(node, ast.BoolOp):
            parts = [walk(v) for v in node.values]
            out = parts[0]
            for part in parts[1:]:
                out = (out & part) if isinstance(node.op, ast.And) else (out | part)
            return out
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return ~walk(node.operand)
        if isinstance(node, ast.Compare):
            left = node.left
            out = None
            for op, right in zip(node.ops, node.comparators, strict=True):
                if isinstance(op, ast.In | ast.NotIn):
                    if not isinstance(right, ast.Tuple | ast.List):
                        raise _bad(text, "'in' needs a list of values, e.g. ('11', '75')")
                    test = column(left).isin([value(v) for v in right.elts])
                    test = ~test if isinstance(op, ast.NotIn) else test
                elif type(op) in _COMPARE:
                    if isinstance(left, ast.Name):
                        test = getattr(column(left), _COMPARE[type(op)])(value(right))
                    elif isinstance(right, ast.Name):  # 2015 <= year
                        mirrored = {"__lt__": "__gt__", "__le__": "__ge__", "__gt__": "__lt__",
                                    "__ge__": "__le__"}  # fmt: skip
                        name = _COMPARE[type(op)]
                        test = getattr(column(right), mirrored.get(name, name))(value(left))
                    else:
                        raise _bad(text, "a comparison needs a column on one side")
                else:
                    raise _bad(text, f"the operator {type(op).__name__} is not allowed")
                out = test if out is None else out & test
                left = right
            return out
        raise _bad(text, f"{ast.unparse(node)!r} is not allowed in a row filter")

    expression = walk(tree.body)
    if not used:
        raise _bad(text, "it names no column")
    return ast.unparse(tree.body), expression
