"""The evaluation plans of a pack: which conditions can be evaluated together.

Rules that read other rules' outcomes, or a decision's output, come in a later stratum. Both
evaluators follow the same plans, so they see the same facts at every step. A pack has up to three:
- `main`: its rules and decision rows, plus (in a pack with a course) the course's transitions,
  evaluated once per sheet (once per course item);
- `elements`: the per-element conditions of its collections (a collection's `where` and the
  conditions of its aggregates), one stratum per collection, evaluated once per element;
- `course`: the course's own rules and decisions, evaluated once after the fold.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable

from pydantic import BaseModel

from engine.errors import PackError
from engine.rules.model import Collection, Decision, FactType, OutputOf, Rule, Transition

if TYPE_CHECKING:
    from engine.rules.load import Pack

TRANSITION = "transition:"
NEW = "new."          # `new.<var>`: a state variable's value after the item (read by transitions)
ITEMS = "~items"      # the element-plan stratum of the course's item selection


@dataclass(frozen=True)
class Evaluable:
    """A rule, one row of a decision table (key `decision#row`), a course transition (key
    `transition:<id>`) or a per-element condition (key `<collection>:where` / `<collection>:<fact>`)."""
    key: str
    cond: Any
    decision: str | None = None
    reads: tuple[str, ...] = ()   # facts read directly (static: computed once per pack)
    refs: tuple[str, ...] = ()    # rules referenced
    transition: bool = False
    needs: tuple[str, ...] = ()   # facts a transition's assignments copy (ordering only)


@dataclass
class Plan:
    pack_id: str
    strata: list[list[Evaluable]]
    decisions_after: list[list[Decision]]
    fact_types: dict[str, FactType | None] = field(default_factory=dict)
    scope: str = "main"
    # elements plan: collection id -> its stratum; per stratum, the element fields (names the
    # element's values shadow)
    stratum_of: dict[str, int] = field(default_factory=dict)
    element_fields: list[frozenset[str]] = field(default_factory=list)
    row_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # decision id -> its rows' keys
    # main plan of a course pack: the state variables whose new value (`new.<var>`) is published
    # after each stratum (-1: before the first; variables no transition sets)
    new_after: dict[int, list[str]] = field(default_factory=dict)


def _stratify(pack: "Pack", pack_id: str, rules: Iterable[Rule], decisions: Iterable[Decision],
              transitions: Iterable[Transition] = (), scope: str = "main") -> Plan:
    from engine.rules.load import PACK_FILE, decision_output_names, facts_read, rules_referenced

    rules, decisions = list(rules), list(decisions)
    items: dict[str, Evaluable] = {}
    for r in rules:
        items[r.id] = Evaluable(r.id, r.when, None, tuple(facts_read(r.when)), tuple(rules_referenced(r.when)))
    output_owner: dict[str, str] = {}
    for d in decisions:
        for k, row in zip(d.row_keys, d.rows):
            items[k] = Evaluable(k, row.when, d.id, tuple(facts_read(row.when)), tuple(rules_referenced(row.when)))
        for name in decision_output_names(pack_id, d):
            output_owner[name] = d.id
    setters: dict[str, list[str]] = {}   # `new.<var>` -> the transitions that set var
    transitions = list(transitions)
    for t in transitions:
        k = TRANSITION + t.id
        needs = tuple(v.fact for v in t.set.values() if isinstance(v, OutputOf))
        items[k] = Evaluable(k, t.when, None, tuple(facts_read(t.when)), tuple(rules_referenced(t.when)), True, needs)
        for var in t.set:
            setters.setdefault(NEW + var, []).append(k)
    rows_of = {d.id: list(d.row_keys) for d in decisions}

    def deps(ev: Evaluable) -> list[str]:
        out = list(ev.refs)
        for name in ev.reads + ev.needs:
            if name in output_owner:
                out += rows_of[output_owner[name]]
            elif name in setters:   # a transition reading another variable's new value
                out += setters[name]
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
    for d in decisions:
        after[max(level[r] for r in rows_of[d.id])].append(d)
    new_after: dict[int, list[str]] = {}
    m = pack.manifest
    if m.course is not None and scope == "main":
        for sv in m.course.state:
            keys = setters.get(NEW + sv.name, [])
            new_after.setdefault(max((level[k] for k in keys), default=-1), []).append(sv.name)
    types: dict[str, FactType | None] = {f.name: f.type for f in m.facts}
    for d in m.derived:
        types[d.name] = None if d.op == "first_present" else FactType.number
    return Plan(pack_id=m.id, strata=strata, decisions_after=after, fact_types=types, scope=scope,
                row_keys={d.id: d.row_keys for d in decisions}, new_after=new_after)


def build_plan(pack: "Pack") -> Plan:
    """The main plan: rules, decision rows and (course packs) transitions."""
    m = pack.manifest
    return _stratify(pack, m.id, m.rules, m.decisions, m.course.transitions if m.course else ())


def build_course_plan(pack: "Pack") -> Plan | None:
    """The plan evaluated once after the fold (None without a course)."""
    m = pack.manifest
    if m.course is None:
        return None
    return _stratify(pack, m.id, m.course.rules, m.course.decisions, (), "course")


def element_conditions(c: Collection) -> list[tuple[str, Any]]:
    """(key, condition) of each per-element condition of a collection."""
    out = []
    if c.where is not None:
        out.append((f"{c.id}:where", c.where))
    for a in c.facts:
        if isinstance(a.condition, BaseModel):
            out.append((f"{c.id}:{a.name}", a.condition))
    return out


def build_element_plan(pack: "Pack", element_fields: dict[str, frozenset[str]]) -> Plan | None:
    """The per-element conditions of every collection of the pack and of its course (and the
    course's item selection), one stratum per set of event kinds: an element is asserted once and
    every condition over its kind is decided together (None when there is none)."""
    from engine.rules.load import facts_read, rules_referenced

    m = pack.manifest
    colls = list(m.collections) + (list(m.course.collections) if m.course else [])
    if not colls and m.course is None:
        return None
    groups: dict[tuple[str, ...], list[tuple[str, list[tuple[str, Any]]]]] = {}
    for c in colls:
        groups.setdefault(tuple(sorted(set(c.events))), []).append((c.id, element_conditions(c)))
    if m.course is not None:   # the course's item selection is a per-element condition too
        conds = [(f"{ITEMS}:where", m.course.items.where)] if m.course.items.where else []
        groups.setdefault(tuple(sorted(set(m.course.items.events))), []).append((ITEMS, conds))
    strata: list[list[Evaluable]] = []
    stratum_of: dict[str, int] = {}
    fields: list[frozenset[str]] = []
    for members in groups.values():
        evs: list[Evaluable] = []
        names: set[str] = set()
        for cid, cs in members:
            stratum_of[cid] = len(strata)
            evs += [Evaluable(k, cond, None, tuple(facts_read(cond)), tuple(rules_referenced(cond))) for k, cond in cs]
            names |= element_fields.get(cid, frozenset())
        strata.append(evs)
        fields.append(frozenset(names))
    return Plan(pack_id=m.id, strata=strata, decisions_after=[[] for _ in strata], scope="elements",
                stratum_of=stratum_of, element_fields=fields)
