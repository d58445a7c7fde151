"""Rules in plain words, for a physician reading `adjudicator rules explain PACK RULE`."""
from __future__ import annotations

from typing import Any

from engine.rules.load import Pack
from engine.rules.model import AllOf, AnyOf, AtLeast, Compare, Decision, FactRef, NotOf, ParamRef, Rule, RuleRef

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
    if isinstance(cond, AtLeast):
        return [pad + f"AT LEAST {cond.at_least} of:"] + [l for c in cond.of for l in condition_words(c, pack, depth + 1)]
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


UNKNOWN_WHEN = "any fact it needs is not recorded (and the rest does not decide it)"


def explain_rule(pack: Pack, rule_id: str) -> dict[str, Any]:
    """A rule, a decision table (`verdict`) or one of its rows (`verdict#ELIGIBLE`, `verdict#1`,
    or a row id alone when only one decision has it), in plain words with its source."""
    rule: Rule | None = next((r for r in pack.manifest.rules if r.id == rule_id), None)
    if rule is None:
        found = find_row(pack, rule_id)
        if found is None:
            dec = next((d for d in pack.manifest.decisions if d.id == rule_id), None)
            if dec is not None:
                return explain_decision(pack, dec)
            from engine.errors import InputError
            raise InputError(f"pack {pack.id} has no rule, decision or decision row {rule_id!r}",
                             expected="one of " + ", ".join(list(pack.rule_ids) + [
                                 k for d in pack.manifest.decisions for k in d.row_keys]))
        return explain_row(pack, *found)
    lines = condition_words(rule.when, pack)
    return {"pack": pack.identity(), "rule": rule.id, "title": rule.title, "kind": rule.kind,
            "basis": rule.basis, "citation": rule.source.citation, "source_text": rule.source.text,
            "note": rule.source.note, "condition": lines, "unknown_when": UNKNOWN_WHEN}


def find_row(pack: Pack, ref: str) -> tuple[Decision, int] | None:
    """(decision, row index) for `decision#row-id`, `decision#index`, or a row id that exactly one
    decision of the pack has; None when nothing matches. An ambiguous bare row id is an error."""
    hits = [(d, j) for d in pack.manifest.decisions for j, k in enumerate(d.row_keys) if k == ref]
    if not hits and "#" not in ref:
        hits = [(d, j) for d in pack.manifest.decisions for j, r in enumerate(d.rows) if r.id == ref]
        if len(hits) > 1:
            from engine.errors import InputError
            raise InputError(f"row id {ref!r} is in several decisions of pack {pack.id}",
                             expected="one of " + ", ".join(d.row_keys[j] for d, j in hits))
    return hits[0] if hits else None


def _output_words(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return str(value)


def explain_row(pack: Pack, dec: Decision, j: int) -> dict[str, Any]:
    """One decision-table row: its title, condition in plain words, output and the table's source."""
    row = dec.rows[j]
    src = dec.source
    return {"pack": pack.identity(), "rule": dec.row_keys[j], "decision": dec.id, "row": j + 1,
            "rows": len(dec.rows), "hit_policy": dec.hit_policy.value,
            "title": row.title or f"row {j + 1} of {dec.title or dec.id}", "kind": "decision row",
            "basis": "", "citation": src.citation if src else "", "source_text": src.text if src else "",
            "note": row.note, "condition": condition_words(row.when, pack),
            "then": row.then, "then_words": _output_words(row.then),
            "unknown_when": UNKNOWN_WHEN + (
                "; in a 'first' table an earlier row that is unknown also holds this row's output open"
                if dec.hit_policy.value == "first" and j else "")}


def explain_decision(pack: Pack, dec: Decision) -> dict[str, Any]:
    """A decision table: its rows (id, title, output) in priority order, the default."""
    src = dec.source
    rows = [{"row": k, "title": r.title, "then": r.then, "condition": condition_words(r.when, pack)}
            for k, r in zip(dec.row_keys, dec.rows)]
    return {"pack": pack.identity(), "rule": dec.id, "decision": dec.id, "title": dec.title or dec.id,
            "kind": "decision table", "basis": "", "hit_policy": dec.hit_policy.value,
            "citation": src.citation if src else "", "source_text": src.text if src else "",
            "note": src.note if src else "", "rows": rows, "default": dec.default,
            "complete": dec.complete, "condition": [], "unknown_when": UNKNOWN_WHEN}


def row_titles(pack: Pack) -> dict[str, str]:
    """Row key -> title (or '' when the row has none), for readable traces and diffs."""
    return {k: r.title for d in pack.manifest.decisions for k, r in zip(d.row_keys, d.rows)}


def rule_titles(pack: Pack) -> dict[str, str]:
    """Every rule id and row key of a pack -> its title."""
    out = {r.id: r.title for r in pack.manifest.rules}
    out.update(row_titles(pack))
    return out


def titles_of(registry: Any) -> dict[str, str]:
    """`<pack>:<rule or row key>` -> title for every pack loaded (names in traces and diffs)."""
    return {f"{p.id}:{k}": t for p in registry.packs.values() for k, t in rule_titles(p).items()}
