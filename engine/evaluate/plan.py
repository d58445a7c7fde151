"""The evaluation plan of a pack: which rules and decision rows can be evaluated together.

Rules that read other rules' outcomes, or a decision's output, come in a later stratum. Both
evaluators follow the same plan, so they see the same facts at every step.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.errors import PackError
from engine.rules.model import Decision, FactType

if TYPE_CHECKING:
    from engine.rules.load import Pack


@dataclass(frozen=True)
class Evaluable:
    """A rule, or one row of a decision table (key `decision#row`)."""
    key: str
    cond: Any
    decision: str | None = None
    reads: tuple[str, ...] = ()   # facts read directly (static: computed once per pack)
    refs: tuple[str, ...] = ()    # rules referenced


@dataclass
class Plan:
    pack_id: str
    strata: list[list[Evaluable]]
    decisions_after: list[list[Decision]]
    fact_types: dict[str, FactType | None] = field(default_factory=dict)
    row_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # decision id -> its rows' keys


def build_plan(pack: "Pack") -> Plan:
    from engine.rules.load import PACK_FILE, decision_output_names, facts_read, rules_referenced

    m = pack.manifest
    items: dict[str, Evaluable] = {}
    for r in m.rules:
        items[r.id] = Evaluable(r.id, r.when, None, tuple(facts_read(r.when)), tuple(rules_referenced(r.when)))
    output_owner: dict[str, str] = {}
    for d in m.decisions:
        for k, row in zip(d.row_keys, d.rows):
            items[k] = Evaluable(k, row.when, d.id, tuple(facts_read(row.when)), tuple(rules_referenced(row.when)))
        for name in decision_output_names(m.id, d):
            output_owner[name] = d.id
    rows_of = {d.id: list(d.row_keys) for d in m.decisions}

    def deps(ev: Evaluable) -> list[str]:
        out = list(ev.refs)
        for name in ev.reads:
            if name in output_owner:
                out += rows_of[output_owner[name]]
        return out

    level: dict[str, int] = {}

    def visit(key: str, stack: tuple[str, ...]) -> int:
        if key in level:
            return level[key]
        if key in stack:
            cyc = " -> ".join(stack[stack.index(key):] + (key,))
            raise PackError(f"circular reference: {cyc}", file=str(pack.path / PACK_FILE), key=key)
        ds = deps(items[key])
        lv = 0
        for dk in ds:
            dl = visit(dk, stack + (key,))
            # a decision's output is ready only after its last row
            owner = items[dk].decision
            if owner is not None:
                dl = max(visit(r, stack + (key,)) for r in rows_of[owner])
            lv = max(lv, dl + 1)
        level[key] = lv
        return lv

    for k in items:
        visit(k, ())
    n = max(level.values(), default=-1) + 1
    strata: list[list[Evaluable]] = [[] for _ in range(n)]
    for k, ev in items.items():
        strata[level[k]].append(ev)
    after: list[list[Decision]] = [[] for _ in range(n)]
    for d in m.decisions:
        after[max(level[r] for r in rows_of[d.id])].append(d)
    types: dict[str, FactType | None] = {f.name: f.type for f in m.facts}
    for d in m.derived:
        types[d.name] = None if d.op == "first_present" else FactType.number
    return Plan(pack_id=m.id, strata=strata, decisions_after=after, fact_types=types,
                row_keys={d.id: d.row_keys for d in m.decisions})
