"""Rules in plain words, for a physician reading `adjudicator rules explain PACK RULE`."""
from __future__ import annotations

from typing import Any

from engine.rules.load import Pack
from engine.rules.model import AllOf, AnyOf, Compare, FactRef, NotOf, ParamRef, Rule, RuleRef

WORDS = {"eq": "is", "ne": "is not", "lt": "is less than", "lte": "is at most",
         "gt": "is greater than", "gte": "is at least"}


def _operand(o: Any, pack: Pack, with_unit: bool = True) -> str:
    if isinstance(o, ParamRef):
        p = next(p for p in pack.manifest.parameters if p.name == o.param)
        tag = ", operational" if p.operational else ""
        unit = f" {p.unit}" if p.unit and with_unit else ""
        return f"{p.value}{unit} (parameter {p.name}{tag})"
    if isinstance(o, FactRef):
        times = _operand(o.times, pack, False) if isinstance(o.times, ParamRef) else str(o.times)
        return o.fact if times == "1" else f"{times} x {o.fact}"
    return str(o)


def _unit(pack: Pack, fact: str | None) -> str:
    d = next((f for f in pack.manifest.facts if f.name == fact), None)
    return f" {d.unit}" if d is not None and d.unit and not d.unit.startswith("x ") else ""


def condition_words(cond: Any, pack: Pack, depth: int = 0) -> list[str]:
    pad = "  " * depth
    if isinstance(cond, AllOf):
        return [pad + "ALL of:"] + [l for c in cond.all for l in condition_words(c, pack, depth + 1)]
    if isinstance(cond, AnyOf):
        return [pad + "ANY of:"] + [l for c in cond.any for l in condition_words(c, pack, depth + 1)]
    if isinstance(cond, NotOf):
        return [pad + "NOT:"] + condition_words(cond.not_, pack, depth + 1)
    if isinstance(cond, RuleRef):
        r = next((r for r in pack.manifest.rules if r.id == cond.rule), None)
        return [pad + f"rule {cond.rule} is met" + (f" ({r.title})" if r else "")]
    assert isinstance(cond, Compare)
    left = cond.fact if cond.fact else f"parameter {cond.param}"
    op, o = cond.op, cond.operand
    if op == "exists":
        return [pad + f"{left} is recorded"]
    if op == "missing":
        return [pad + f"{left} is not recorded"]
    if op == "in":
        return [pad + f"{left} is one of {', '.join(map(str, o))}"]
    if op == "between":
        return [pad + f"{left} is between {_operand(o[0], pack)} and {_operand(o[1], pack)}{_unit(pack, cond.fact)} (inclusive)"]
    unit = "" if isinstance(o, FactRef) else _unit(pack, cond.fact)
    return [pad + f"{left} {WORDS[op]} {_operand(o, pack)}{unit}"]


def explain_rule(pack: Pack, rule_id: str) -> dict[str, Any]:
    rule: Rule | None = next((r for r in pack.manifest.rules if r.id == rule_id), None)
    if rule is None:
        from engine.errors import InputError
        raise InputError(f"pack {pack.id} has no rule {rule_id!r}",
                         expected="one of " + ", ".join(r.id for r in pack.manifest.rules))
    lines = condition_words(rule.when, pack)
    return {"pack": pack.identity(), "rule": rule.id, "title": rule.title, "kind": rule.kind,
            "basis": rule.basis, "citation": rule.source.citation, "source_text": rule.source.text,
            "note": rule.source.note, "condition": lines,
            "unknown_when": "any fact it needs is not recorded (and the rest does not decide it)"}
