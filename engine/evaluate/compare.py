"""Comparison semantics shared by both evaluators (operators, operands, fact-vs-fact)."""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Mapping

from engine.errors import EvaluationError
from engine.rules.model import FactRef, ParamRef
from engine.evaluate.values import normalize

NEGATE = {"eq": "ne", "ne": "eq", "lt": "gte", "gte": "lt", "lte": "gt", "gt": "lte"}


def literal(o: Any, params: Mapping[str, Any]) -> Any:
    """A literal or parameter operand in canonical form."""
    if isinstance(o, ParamRef):
        return normalize(params[o.param])
    return normalize(o)


def fact_difference(x: Any, y: Any, times: Any) -> Decimal:
    """x - times * y, exactly; dates give days. Both evaluators compare this with 0."""
    if isinstance(x, dt.date) and isinstance(y, dt.date):
        if times != 1:
            raise EvaluationError("a date can only be compared with another date unscaled")
        return Decimal((x - y).days)
    if isinstance(x, Decimal) and isinstance(y, Decimal):
        return x - normalize(times) * y
    raise EvaluationError(f"cannot compare {x!r} with {times} x {y!r}")


def compare(op: str, left: Any, right: Any) -> bool:
    if op == "eq":
        return type(left) is type(right) and left == right
    if op == "ne":
        return not (type(left) is type(right) and left == right)
    if type(left) is not type(right):
        raise EvaluationError(f"cannot order {left!r} against {right!r}")
    if op == "lt":
        return left < right
    if op == "lte":
        return left <= right
    if op == "gt":
        return left > right
    if op == "gte":
        return left >= right
    raise AssertionError(op)


def factref_times(o: FactRef, params: Mapping[str, Any]) -> Any:
    return literal(o.times, params) if isinstance(o.times, ParamRef) else o.times
