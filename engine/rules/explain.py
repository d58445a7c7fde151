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
    or a row id alone when only one decision has it), in plain words with its source; in a pack
    with collections or a course also a collection, a course transition, or `course` (the whole
    course section), rendered as `lines`."""
    m = pack.manifest
    rules = list(m.rules) + (list(m.course.rules) if m.course else [])
    rule: Rule | None = next((r for r in rules if r.id == rule_id), None)
    if rule is None:
        found = find_row(pack, rule_id)
        if found is None:
            dec = next((d for d in _decisions(pack) if d.id == rule_id), None)
            if dec is not None:
                return explain_decision(pack, dec)
            other = explain_timeline(pack, rule_id)
            if other is not None:
                return other
            from engine.errors import InputError
            colls = list(m.collections) + (list(m.course.collections) if m.course else [])
            raise InputError(f"pack {pack.id} has no rule, decision or decision row {rule_id!r}"
                             + (" (nor collection or course transition)" if colls or m.course else ""),
                             expected="one of " + ", ".join([r.id for r in rules] + [
                                 k for d in _decisions(pack) for k in d.row_keys] + [c.id for c in colls] + (
                                 ["course"] + [t.id for t in m.course.transitions] if m.course else [])))
        return explain_row(pack, *found)
    lines = condition_words(rule.when, pack)
    return {"pack": pack.identity(), "rule": rule.id, "title": rule.title, "kind": rule.kind,
            "basis": rule.basis, "citation": rule.source.citation, "source_text": rule.source.text,
            "note": rule.source.note, "condition": lines, "unknown_when": UNKNOWN_WHEN}


def _decisions(pack: Pack) -> list[Decision]:
    m = pack.manifest
    return list(m.decisions) + (list(m.course.decisions) if m.course else [])


def explain_timeline(pack: Pack, ref: str) -> dict[str, Any] | None:
    """A collection, a course transition or `course` as plain-words lines (None: no such thing)."""
    m = pack.manifest
    colls = list(m.collections) + (list(m.course.collections) if m.course else [])
    coll = next((c for c in colls if c.id == ref), None)
    if coll is not None:
        return {"pack": pack.identity(), "collection": coll.id, "lines": collection_words(coll, pack)}
    if m.course is not None:
        if ref == "course":
            return {"pack": pack.identity(), "course": True, "lines": course_words(pack)}
        t = next((t for t in m.course.transitions if t.id == ref), None)
        if t is not None:
            return {"pack": pack.identity(), "transition": t.id, "lines": transition_words(t, pack)}
    return None


def find_row(pack: Pack, ref: str) -> tuple[Decision, int] | None:
    """(decision, row index) for `decision#row-id`, `decision#index`, or a row id that exactly one
    decision of the pack has; None when nothing matches. An ambiguous bare row id is an error."""
    hits = [(d, j) for d in _decisions(pack) for j, k in enumerate(d.row_keys) if k == ref]
    if not hits and "#" not in ref:
        hits = [(d, j) for d in _decisions(pack) for j, r in enumerate(d.rows) if r.id == ref]
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
    return {k: r.title for d in _decisions(pack) for k, r in zip(d.row_keys, d.rows)}


def rule_titles(pack: Pack) -> dict[str, str]:
    """Every rule id and row key of a pack -> its title."""
    out = {r.id: r.title for r in pack.manifest.rules}
    out.update(row_titles(pack))
    return out


def titles_of(registry: Any) -> dict[str, str]:
    """`<pack>:<rule or row key>` -> title for every pack loaded (names in traces and diffs).
    A registry from the cache knows every pack's titles without unpickling the pack (LazyPacks)."""
    packs = registry.packs
    cached = getattr(packs, "titles", None)
    return {f"{pid}:{k}": t for pid in packs
            for k, t in (cached(pid) if cached else rule_titles(packs[pid])).items()}


# --- collections and the course -------------------------------------------------------------------

def _anchor_words(a: Any, pack: Pack) -> str:
    from engine.rules.model import DaysFrom
    if isinstance(a, DaysFrom):
        days = _operand(a.days, pack, False) if isinstance(a.days, ParamRef) else str(a.days)
        return f"{a.fact} {'+' if not str(days).startswith('-') else ''}{days} days"
    return str(a)


_BOUND = {"after": "after", "on_or_after": "on or after", "before": "before", "on_or_before": "on or before"}


def collection_words(c: Any, pack: Pack) -> list[str]:
    """A collection in plain words: which events, which window, which condition, which facts."""
    lines = [f"collection {c.id}: {c.title}", f"  events of kind: {', '.join(c.events)}"]
    if c.description:
        lines.append(f"  ({c.description})")
    if c.window is not None:
        lines.append("  dated " + " and ".join(f"{_BOUND[b]} {_anchor_words(a, pack)}" for b, a in c.window.bounds()))
    if c.where is not None:
        lines.append("  where (for each event):")
        lines += ["    " + l for l in condition_words(c.where, pack)]
    if c.assume_complete:
        lines.append("  the recorded events are taken as all there are")
    for a in c.facts:
        lines.append(f"  fact {a.name} = " + aggregate_words(a, pack))
        if a.condition is not None:
            lines += ["      " + l for l in condition_words(a.condition, pack)]
    return lines


def aggregate_words(a: Any, pack: Pack) -> str:
    op = a.op
    cmp = ""
    if a.comparison:
        o, v = a.comparison
        cmp = f" {WORDS[o]} {_operand(v, pack)}"
    if op == "count":
        return ("the number of events" + (" meeting:" if a.condition is not None else "")) + cmp
    if op == "any":
        return "whether any event" + (" meets:" if a.condition is not None else " is in it")
    if op == "none":
        return "whether no event" + (" meets:" if a.condition is not None else " is in it")
    if op == "all":
        return "whether every event meets:"
    if op in ("first", "last", "min", "max"):
        return {"first": "the earliest event's", "last": "the latest event's", "min": "the lowest",
                "max": "the highest"}[op] + f" {a.field}"
    if op == "span_days":
        return "days from the earliest to the latest event" + cmp
    if op == "consecutive":
        return f"the {a.run} run of consecutive events meeting:" + (f" ({cmp.strip()})" if cmp else "")
    if op == "at_max":
        return f"{a.take} of the event with the highest {a.at_max} (earliest on ties)"
    return op


def _assignment_words(v: Any) -> str:
    from engine.rules.model import AddTo, ClosePending, OpenPending, OutputOf
    if v is None:
        return "unset"
    if isinstance(v, OutputOf):
        return v.fact
    if isinstance(v, AddTo):
        return f"+ {v.add.param if isinstance(v.add, ParamRef) else v.add}"
    if isinstance(v, OpenPending):
        return f"OPEN (dated at the item; resolved by: {v.open})"
    if isinstance(v, ClosePending):
        return f"CLOSE as {v.close}"
    return repr(v)


def transition_words(t: Any, pack: Pack) -> list[str]:
    lines = [f"transition {t.id}: {t.title}", f"  source: {t.source.citation}", f"    \"{t.source.text}\""]
    if t.source.note:
        lines.append(f"  note: {t.source.note}")
    lines.append("  when:")
    lines += ["    " + l for l in condition_words(t.when, pack)]
    lines.append("  then: " + "; ".join(f"{k} := {_assignment_words(v)}" for k, v in t.set.items()))
    return lines


def course_words(pack: Pack) -> list[str]:
    """The whole course section: items, state, transitions, collections and outputs."""
    c = pack.manifest.course
    lines = [f"course of {pack.id} {pack.version}", f"  folds over events of kind {', '.join(c.items.events)}, "
             "in date order"]
    if c.items.window is not None:
        lines.append("  dated " + " and ".join(f"{_BOUND[b]} {_anchor_words(a, pack)}" for b, a in c.items.window.bounds()))
    if c.items.where is not None:
        lines.append("  where:")
        lines += ["    " + l for l in condition_words(c.items.where, pack)]
    lines.append("state (read as state.<name>; new.<name> after the item):")
    for sv in c.state:
        init = "unset" if sv.initial is None else repr(sv.initial)
        lines.append(f"  {sv.name} ({sv.type.value}, starts {init})" + (f": {sv.description}" if sv.description else "")
                     + ("  [course output]" if sv.output else ""))
    lines.append("transitions (per variable, the first met row that sets it decides; none met keeps it):")
    for t in c.transitions:
        lines += ["  " + l for l in transition_words(t, pack)]
    for coll in c.collections:
        lines += ["  " + l for l in collection_words(coll, pack)]
    for r in c.rules:
        lines.append(f"  rule {r.id}: {r.title}")
        lines += ["    " + l for l in condition_words(r.when, pack)]
    for d in c.decisions:
        lines.append(f"  output {d.id}: {d.title}" + (f"  (source: {d.source.citation})" if d.source else ""))
        for j, row in enumerate(d.rows):
            lines.append(f"    row {j}: then {_then_words(row.then)}" + (f"   [{row.note}]" if row.note else ""))
            lines += ["      " + l for l in condition_words(row.when, pack)]
        if d.default is not None:
            lines.append(f"    otherwise: {_then_words(d.default)}")
    return lines


def _then_words(then: Any) -> str:
    from engine.rules.model import OutputOf
    if isinstance(then, dict):
        return "{" + ", ".join(f"{k}: " + (f"<{v.fact}>" if isinstance(v, OutputOf) else repr(v))
                               for k, v in then.items()) + "}"
    return repr(then)
