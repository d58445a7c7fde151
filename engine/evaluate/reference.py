"""The reference evaluator: the rule language in plain Python, used by the tests against the
durable-rules engine (differential testing) and to name the missing facts behind an unknown.
"""
from __future__ import annotations

from typing import Any, Mapping

from engine.rules.model import AllOf, AnyOf, AtLeast, Compare, FactRef, NotOf, RuleRef
from engine.evaluate.compare import compare, fact_difference, factref_times, literal
from engine.evaluate.facts import FactSheet
from engine.evaluate.logic import FALSE, TRUE, Outcome, Tri, all_of, any_of, at_least, not_, unknown
from engine.evaluate.plan import Plan
from engine.evaluate.values import normalize


def evaluate_condition(cond: Any, sheet: FactSheet, params: Mapping[str, Any],
                       results: Mapping[str, Tri]) -> Tri:
    if isinstance(cond, AllOf):
        return all_of(evaluate_condition(c, sheet, params, results) for c in cond.all)
    if isinstance(cond, AnyOf):
        return any_of(evaluate_condition(c, sheet, params, results) for c in cond.any)
    if isinstance(cond, NotOf):
        return not_(evaluate_condition(cond.not_, sheet, params, results))
    if isinstance(cond, RuleRef):
        return results[cond.rule]
    if isinstance(cond, AtLeast):
        return at_least(cond.at_least, [evaluate_condition(c, sheet, params, results) for c in cond.of])
    assert isinstance(cond, Compare)
    return _compare(cond, sheet, params)


def _compare(c: Compare, sheet: FactSheet, params: Mapping[str, Any]) -> Tri:
    op = c.op
    if c.param is not None:
        left = normalize(params[c.param])
    else:
        present = c.fact in sheet.values
        if op in ("exists", "missing"):
            if present:
                return TRUE if op == "exists" else FALSE
            if c.fact in sheet.unknown:  # a computed fact that may or may not have a value
                return unknown(sheet.missing_roots(c.fact))
            return FALSE if op == "exists" else TRUE
        ref = c.operand if isinstance(c.operand, FactRef) else None
        if not present or (ref is not None and ref.fact not in sheet.values):
            # name every fact the comparison still needs, on both sides
            missing = [] if present else sheet.missing_roots(c.fact)
            if ref is not None and ref.fact not in sheet.values:
                missing = missing + sheet.missing_roots(ref.fact)
            return unknown(missing)
        left = sheet.values[c.fact]
    if op == "in":
        return TRUE if any(compare("eq", left, literal(v, params)) for v in c.in_) else FALSE
    if op == "between":
        lo, hi = (literal(v, params) for v in c.between)
        return TRUE if compare("gte", left, lo) and compare("lte", left, hi) else FALSE
    o = c.operand
    if isinstance(o, FactRef):
        diff = fact_difference(left, sheet.values[o.fact], factref_times(o, params))
        return TRUE if compare(op, diff, type(diff)(0)) else FALSE
    return TRUE if compare(op, left, literal(o, params)) else FALSE


class ReferenceSession:
    def __init__(self, plan: Plan, params: Mapping[str, Any]) -> None:
        self.plan, self.params = plan, params

    def evaluate(self, stratum: int, sheet: FactSheet, results: Mapping[str, Tri]) -> dict[str, Outcome]:
        return {ev.key: evaluate_condition(ev.cond, sheet, self.params, results).outcome
                for ev in self.plan.strata[stratum]}

    def close(self) -> None:
        pass


class ReferenceEvaluator:
    """Evaluates plans in plain Python; the same interface as the durable-rules adapter."""

    name = "reference"
    refuted_row_inputs = True    # every row's values read: `audit explain` shows them (run.Evaluator)

    def session(self, plan: Plan, pack_identity: Mapping[str, str], params: Mapping[str, Any],
                pack_file: str = "") -> ReferenceSession:
        return ReferenceSession(plan, params)
