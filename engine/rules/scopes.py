"""What each part of a pack may read, with types, and the load-time checks of the temporal
constructs (event kinds, collections, the course).

Scopes (docs/rule-language.md, "What a condition can read"):
- main: declared facts, derived facts, the pack's decision outputs, dependency outputs, the
  aggregates of its collections and, in a pack with a course, `state.<var>`, `item.id`,
  `item.kind`, `item.date` and the fields of the item kinds;
- a collection's per-element conditions: the fields of its event kinds and `event.*` (the
  element's), plus the facts known before collections are computed (declared, dependency
  outputs, state, item, earlier collections' aggregates);
- course (after the fold): declared facts, dependency outputs, `state.<var>` (final values), the
  course's collections, derived facts and decision outputs; a course collection over `result`
  events reads any main-scope fact of the folded items.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping

from engine.rules.model import (AddTo, Aggregate, ClosePending, Collection, Compare, DaysFrom, Decision,
                                FactRef, FactType, OpenPending, OutputOf, ParamRef, RuleRef, StateType)

RESULT_KIND = "result"      # a course item with its facts and decision outputs, after the fold
STATE_PREFIX = "state."
_PY = {"str": FactType.string, "bool": FactType.boolean, "int": FactType.number, "float": FactType.number}


@dataclass(frozen=True)
class FactInfo:
    """A readable fact: its type (None = any) and allowed string values."""
    type: FactType | None
    values: tuple[str, ...] | None = None
    computed: bool = False   # state, aggregate: an unset value leaves a window bound open


EVENT_FIELDS = {"event.date": FactInfo(FactType.date), "event.id": FactInfo(FactType.string),
                "event.kind": FactInfo(FactType.string)}
ITEM_FACTS = {"item.date": FactType.date, "item.id": FactType.string, "item.kind": FactType.string}


Fail = Callable[..., None]


def _numeric(t: FactType | None) -> bool:
    return t in (FactType.number, FactType.integer)


def state_fact_type(t: StateType) -> FactType:
    return FactType.date if t is StateType.pending else FactType(t.value)


def aggregate_type(a: Aggregate, element: Mapping[str, FactInfo]) -> FactInfo:
    op = a.op
    if op in ("count", "span_days", "consecutive"):
        return FactInfo(FactType.boolean if a.comparison else FactType.integer, computed=True)
    if op in ("any", "all", "none"):
        return FactInfo(FactType.boolean, computed=True)
    field = a.take if op == "at_max" else a.field
    info = element.get(field or "", FactInfo(None))
    return FactInfo(info.type, info.values, computed=True)


def check_condition(cond: Any, base: tuple, known: Mapping[str, FactInfo], params: Mapping[str, Any],
                    rule_ids: Iterable[str] | None, dep_prefixes: tuple[str, ...], fail: Fail,
                    where: str = "") -> None:
    """Every rule reference, parameter and fact a condition reads exists, with compatible types.
    `rule_ids` None: rule references are not allowed here (per-element conditions)."""
    from engine.rules.load import facts_read, walk
    rule_ids = set(rule_ids) if rule_ids is not None else None
    for node, path in walk(cond, base):
        if isinstance(node, RuleRef):
            if rule_ids is None:
                fail(f"{where}a per-element condition cannot refer to a rule ({node.rule!r}): rules are "
                     f"evaluated once per sheet, not per element", *path, "rule")
            elif node.rule not in rule_ids:
                fail(f"reference to unknown rule {node.rule!r}", *path, "rule")
        if not isinstance(node, Compare):
            continue
        if node.param is not None and node.param not in params:
            fail(f"unknown parameter {node.param!r}", *path, "param")
        for name in facts_read(node):
            if name not in known and not name.startswith(dep_prefixes):
                hint = (" (not a state variable of the course)" if name.startswith(STATE_PREFIX)
                        else " (declare it under facts:, derived:, events: or as a decision or aggregate output)")
                fail(f"{where}reads undeclared fact {name!r}{hint}", *path)
        ops = node.operand if node.op == "between" else [node.operand]
        for o in ops if node.op != "in" else []:
            if isinstance(o, ParamRef) and o.param not in params:
                fail(f"unknown parameter {o.param!r}", *path, node.op)
            if isinstance(o, FactRef) and isinstance(o.times, ParamRef) and o.times.param not in params:
                fail(f"unknown parameter {o.times.param!r}", *path, node.op)
        info = known.get(node.fact) if node.fact else None
        if info is not None:
            if node.op in ("lt", "lte", "gt", "gte", "between") and info.type in (FactType.string, FactType.boolean):
                fail(f"'{node.op}' needs a number or date; {node.fact!r} is {info.type.value}", *path, node.op)
            if info.values is not None:
                lits = node.operand if node.op == "in" else ([node.operand] if node.op in ("eq", "ne") else [])
                for lit in lits:
                    if isinstance(lit, str) and lit not in info.values:
                        fail(f"{lit!r} is not an allowed value of {node.fact!r} ({', '.join(info.values)})", *path, node.op)


# --- the checks ---------------------------------------------------------------------------------

def check_timeline_constructs(pack: Any, known_main: dict[str, FactInfo], params: Mapping[str, Any],
                              rule_ids: set[str], dep_prefixes: tuple[str, ...], fail: Fail) -> dict[str, Any]:
    """Check events, collections and the course; extend `known_main` with what they define.
    Returns what evaluation needs: collection order and element fields per collection."""
    m = pack.manifest
    kinds: dict[str, dict[str, FactInfo]] = {}
    for i, ek in enumerate(m.events):
        if ek.kind in kinds:
            fail(f"event kind {ek.kind!r} is declared twice", "events", i, "kind")
        if ek.kind == RESULT_KIND:
            fail(f"'{RESULT_KIND}' is the course's own event kind (each folded item); do not declare it",
                 "events", i, "kind")
        fields: dict[str, FactInfo] = {}
        for j, f in enumerate(ek.fields):
            if f.name in fields or f.name.startswith(("event.", "item.", STATE_PREFIX)):
                fail(f"event field {f.name!r} is declared twice or uses a reserved prefix",
                     "events", i, "fields", j, "name")
            fields[f.name] = FactInfo(f.type, tuple(f.values) if f.values else None)
        kinds[ek.kind] = fields

    course = m.course
    # the course's state and its items' facts are known to the main scope
    if course is not None:
        for j, k in enumerate(course.items.events):
            if k not in kinds:
                fail(f"course items read undeclared event kind {k!r}", "course", "items", "events", j,
                     expected="a kind declared under events:")
        seen: set[str] = set()
        for j, sv in enumerate(course.state):
            if sv.name in seen:
                fail(f"state variable {sv.name!r} is declared twice", "course", "state", j, "name")
            seen.add(sv.name)
            _check_initial(sv, fail, ("course", "state", j, "initial"))
            known_main[STATE_PREFIX + sv.name] = FactInfo(state_fact_type(sv.type),
                                                         tuple(sv.values) if sv.values else None, computed=True)
        for name, t in ITEM_FACTS.items():
            known_main[name] = FactInfo(t)
        item_kinds = [k for k in course.items.events if k in kinds]
        for k in item_kinds:
            for name, info in kinds[k].items():
                known_main.setdefault(name, info)
        known_main["item.kind"] = FactInfo(FactType.string, tuple(item_kinds))

    # collections: ids, kinds, aggregates, order (an aggregate or anchor may read another's facts)
    before_collections = dict(known_main)   # derived facts and decisions come later
    order, element_fields = _check_collections(
        pack, list(m.collections), ("collections",), kinds, before_collections, known_main, params,
        dep_prefixes, fail, result_fields=None)
    out: dict[str, Any] = {"order": order, "element_fields": element_fields, "kinds": kinds}
    if course is None:
        return out

    # course items: a per-element selection
    ip = ("course", "items")
    item_fields = {n: i for k in course.items.events if k in kinds for n, i in kinds[k].items()}
    item_fields.update(EVENT_FIELDS)
    if course.items.where is not None:
        check_condition(course.items.where, ip + ("where",), {**before_collections, **item_fields}, params,
                        None, dep_prefixes, fail, "course items: ")
    _check_window(course.items.window, ip + ("window",), before_collections, params, fail)
    from engine.evaluate.plan import ITEMS
    out["element_fields"][ITEMS] = frozenset(item_fields)
    return out


def check_course_after(pack: Any, known_main: dict[str, FactInfo], declared: dict[str, FactInfo],
                       params: Mapping[str, Any], rule_ids: set[str], dep_prefixes: tuple[str, ...],
                       kinds: dict[str, dict[str, FactInfo]], fail: Fail, out: dict[str, Any]) -> None:
    """Transitions (main scope, complete) and the course's own collections, derived facts, rules and
    decisions (course scope)."""
    from engine.rules.load import decision_output_names
    m = pack.manifest
    course = m.course
    if course.report is not None:
        decs = {d.id: d for d in m.decisions}
        rep = course.report
        if rep.item not in decs:
            fail(f"course report names unknown decision {rep.item!r}", "course", "report", "item",
                 expected="one of " + ", ".join(decs))
        fields = set(decision_output_names(m.id, decs[rep.item])) if rep.item in decs else set()
        for j, f in enumerate(rep.flags):
            if f"{m.id}.{rep.item}.{f}" not in fields:
                fail(f"course report flag {f!r} is not a field of decision {rep.item}", "course", "report", "flags", j)
        for j, d in enumerate(rep.details):
            if d not in decs:
                fail(f"course report names unknown decision {d!r}", "course", "report", "details", j)
        for j, d in enumerate(rep.review):
            if d not in decs:
                fail(f"course report names unknown decision {d!r}", "course", "report", "review", j)
            elif decs[d].hit_policy.value != "collect" or not all(isinstance(r.then, str) for r in decs[d].rows):
                fail(f"review decision {d!r} must be a 'collect' table whose rows output a message (text)",
                     "course", "report", "review", j)
    state = {sv.name: sv for sv in course.state}
    # a transition may also read `new.<var>`: the value the variable takes after this item
    known_tr = dict(known_main)
    for sv in course.state:
        known_tr["new." + sv.name] = FactInfo(state_fact_type(sv.type), tuple(sv.values) if sv.values else None,
                                              computed=True)
    tids: set[str] = set()
    for i, t in enumerate(course.transitions):
        tp = ("course", "transitions", i)
        if t.id in tids:
            fail(f"duplicate transition id {t.id!r}", *tp, "id")
        tids.add(t.id)
        check_condition(t.when, tp + ("when",), known_tr, params, rule_ids, dep_prefixes, fail,
                        f"transition {t.id}: ")
        for var, value in t.set.items():
            if var not in state:
                fail(f"transition {t.id} sets unknown state variable {var!r}", *tp, "set", var,
                     expected="one of " + (", ".join(state) or "(no state declared)"))
            _check_assignment(t.id, state[var], value, known_tr, params, dep_prefixes, fail, tp + ("set", var))

    # the course scope: declared facts, dependency outputs, final state, then its own facts
    known: dict[str, FactInfo] = dict(declared)
    for sv in course.state:
        known[STATE_PREFIX + sv.name] = FactInfo(state_fact_type(sv.type), tuple(sv.values) if sv.values else None,
                                                computed=True)
    result_fields = dict(known_main)
    result_fields.update(EVENT_FIELDS)
    order, fields = _check_collections(pack, list(course.collections), ("course", "collections"), kinds,
                                       dict(known), known, params, dep_prefixes, fail, result_fields)
    out["course_order"] = order
    out["element_fields"].update(fields)
    derived_names = set()
    for i, d in enumerate(course.derived):
        if d.name in known:
            fail(f"derived fact {d.name!r} is declared twice", "course", "derived", i, "name")
        args = [d.args.fact] if d.op == "lookup" else list(d.args)
        for a in args:
            if isinstance(a, str) and a not in known and not a.startswith(dep_prefixes):
                fail(f"course derived fact {d.name!r} reads {a!r}, which is not known after the fold",
                     "course", "derived", i)
            if isinstance(a, ParamRef) and a.param not in params:
                fail(f"unknown parameter {a.param!r}", "course", "derived", i)
        known[d.name] = FactInfo(None if d.op == "first_present" else FactType.number)
        derived_names.add(d.name)
    main_decisions = {d.id for d in m.decisions}
    for i, d in enumerate(course.decisions):
        if d.id in main_decisions:
            fail(f"course decision id {d.id!r} is also a decision of the pack", "course", "decisions", i, "id")
        for name, t in decision_output_names(m.id, d).items():
            known[name] = _output_info(t, known)
    crule_ids = {r.id for r in course.rules}
    for i, r in enumerate(course.rules):
        if r.id in rule_ids:
            fail(f"course rule id {r.id!r} is also a rule of the pack", "course", "rules", i, "id")
        check_condition(r.when, ("course", "rules", i, "when"), known, params, crule_ids, dep_prefixes, fail)
    for i, d in enumerate(course.decisions):
        for j, row in enumerate(d.rows):
            check_condition(row.when, ("course", "decisions", i, "rows", j, "when"), known, params, crule_ids,
                            dep_prefixes, fail)
        _check_output_refs(d, known, dep_prefixes, fail, ("course", "decisions", i))
    out["course_known"] = known


def _output_info(t: str, known: Mapping[str, FactInfo]) -> FactInfo:
    if t.startswith("fact:"):
        return known.get(t[5:], FactInfo(None))
    return FactInfo(_PY.get(t))


def _check_output_refs(d: Decision, known: Mapping[str, FactInfo], dep_prefixes: tuple[str, ...], fail: Fail,
                       base: tuple) -> None:
    outs = [(("rows", j, "then"), r.then) for j, r in enumerate(d.rows)] + [(("default",), d.default)]
    for path, v in outs:
        if isinstance(v, dict):
            for k, fv in v.items():
                if isinstance(fv, OutputOf) and fv.fact not in known and not fv.fact.startswith(dep_prefixes):
                    fail(f"decision {d.id} output {k!r} copies undeclared fact {fv.fact!r}", *base, *path, k)


def check_output_refs(d: Decision, known: Mapping[str, FactInfo], dep_prefixes: tuple[str, ...], fail: Fail,
                      base: tuple) -> None:
    _check_output_refs(d, known, dep_prefixes, fail, base)


def _check_initial(sv: Any, fail: Fail, path: tuple) -> None:
    v = sv.initial
    if v is None:
        return
    t = sv.type
    ok = {StateType.boolean: isinstance(v, bool), StateType.integer: isinstance(v, int) and not isinstance(v, bool),
          StateType.number: isinstance(v, (int, float)) and not isinstance(v, bool),
          StateType.string: isinstance(v, str), StateType.date: False, StateType.pending: False}[t]
    if not ok:
        fail(f"initial value {v!r} of state variable {sv.name!r} does not fit its type {t.value}", *path,
             expected=f"a {t.value}" if t not in (StateType.date, StateType.pending) else "no initial value (unset)")
    if isinstance(v, str) and sv.values and v not in sv.values:
        fail(f"initial value {v!r} of {sv.name!r} is not one of its values", *path)


def _check_assignment(tid: str, sv: Any, value: Any, known: Mapping[str, FactInfo], params: Mapping[str, Any],
                      dep_prefixes: tuple[str, ...], fail: Fail, path: tuple) -> None:
    t = sv.type
    what = f"transition {tid} sets {sv.name!r} ({t.value})"
    if value is None:
        if t is StateType.pending:
            fail(f"{what} to null: close a pending variable with {{close: confirmed}} or {{close: refuted}}", *path)
        return
    if isinstance(value, (OpenPending, ClosePending)):
        if t is not StateType.pending:
            fail(f"{what} with open/close, which only a pending variable takes", *path)
        return
    if t is StateType.pending:
        fail(f"{what}: a pending variable is set with {{open: what resolves it}} or {{close: ...}}", *path)
    if isinstance(value, AddTo):
        if t not in (StateType.integer, StateType.number):
            fail(f"{what} with add, which needs a number", *path)
        if isinstance(value.add, ParamRef) and value.add.param not in params:
            fail(f"unknown parameter {value.add.param!r}", *path)
        return
    if isinstance(value, OutputOf):
        if value.fact not in known and not value.fact.startswith(dep_prefixes):
            fail(f"{what} from undeclared fact {value.fact!r}", *path)
        src = known.get(value.fact)
        if src is not None and src.type is not None and src.type != state_fact_type(t) and not (
                _numeric(src.type) and t in (StateType.integer, StateType.number)):
            fail(f"{what} from {value.fact!r}, which is {src.type.value}", *path, expected=t.value)
        return
    ok = {StateType.boolean: isinstance(value, bool),
          StateType.integer: isinstance(value, int) and not isinstance(value, bool),
          StateType.number: isinstance(value, (int, float)) and not isinstance(value, bool),
          StateType.string: isinstance(value, str), StateType.date: False}[t]
    if not ok:
        fail(f"{what} to {value!r}", *path, expected=f"a {t.value}" + (" fact ({fact: ...})" if t is StateType.date else ""))
    if isinstance(value, str) and sv.values and value not in sv.values:
        fail(f"{what} to {value!r}, not one of its values ({', '.join(sv.values)})", *path)


def _anchor_fact(a: Any) -> str:
    return a.fact if isinstance(a, DaysFrom) else a


def _check_window(window: Any, base: tuple, known: Mapping[str, FactInfo], params: Mapping[str, Any],
                  fail: Fail) -> list[str]:
    reads: list[str] = []
    if window is None:
        return reads
    for bound, a in window.bounds():
        name = _anchor_fact(a)
        info = known.get(name)
        if info is None:
            fail(f"window anchor {name!r} is not a known date fact", *base, bound,
                 expected="a declared date fact, item.date, a date state variable or a date aggregate computed earlier")
        elif info.type not in (FactType.date, None):
            fail(f"window anchor {name!r} is {info.type.value}, not a date", *base, bound, expected="a date fact")
        if isinstance(a, DaysFrom) and isinstance(a.days, ParamRef) and a.days.param not in params:
            fail(f"unknown parameter {a.days.param!r}", *base, bound)
        reads.append(name)
    return reads


def _check_collections(pack: Any, colls: list[Collection], base: tuple, kinds: dict[str, dict[str, FactInfo]],
                       enclosing: dict[str, FactInfo], known_out: dict[str, FactInfo], params: Mapping[str, Any],
                       dep_prefixes: tuple[str, ...], fail: Fail,
                       result_fields: dict[str, FactInfo] | None) -> tuple[list[int], dict[str, frozenset[str]]]:
    """Check one list of collections; add their aggregates to `known_out`; return their evaluation
    order (indices) and element fields. A collection may read another's aggregates (anchors,
    conditions): that order must have no cycle."""
    from engine.rules.load import facts_read
    defined_by: dict[str, int] = {}
    all_ids = {c.id for c in pack.manifest.collections} | (
        {c.id for c in pack.manifest.course.collections} if pack.manifest.course else set())
    seen_ids: set[str] = set()
    infos: list[dict[str, FactInfo]] = []
    for i, c in enumerate(colls):
        if c.id in seen_ids:
            fail(f"collection {c.id!r} is declared twice", *base, i, "id")
        seen_ids.add(c.id)
        fields: dict[str, FactInfo] = dict(EVENT_FIELDS)
        for j, k in enumerate(c.events):
            if k == RESULT_KIND and result_fields is not None:
                fields.update(result_fields)
            elif k not in kinds:
                extra = f" (or '{RESULT_KIND}' in a course collection)" if result_fields is not None else ""
                fail(f"collection {c.id} reads undeclared event kind {k!r}", *base, i, "events", j,
                     expected="a kind declared under events:" + extra)
            else:
                for n, info in kinds[k].items():
                    fields.setdefault(n, info)
        infos.append(fields)
        for j, a in enumerate(c.facts):
            if a.name in known_out or a.name in defined_by or a.name in all_ids:
                fail(f"aggregate fact {a.name!r} is declared twice", *base, i, "facts", j, "name")
            defined_by[a.name] = i
    # types of every aggregate (now that the element fields are known)
    agg_info: dict[str, FactInfo] = {}
    for i, c in enumerate(colls):
        for a in c.facts:
            agg_info[a.name] = aggregate_type(a, infos[i])
    deps: dict[int, set[int]] = {i: set() for i in range(len(colls))}
    for i, c in enumerate(colls):
        fields = infos[i]
        scope = {**enclosing, **agg_info, **fields}
        reads: list[str] = []
        if c.where is not None:
            check_condition(c.where, base + (i, "where"), scope, params, None, dep_prefixes, fail, f"collection {c.id}: ")
            reads += [n for n in facts_read(c.where) if n not in fields]
        reads += _check_window(c.window, base + (i, "window"), {**enclosing, **agg_info}, params, fail)
        for j, a in enumerate(c.facts):
            ap = base + (i, "facts", j)
            if a.condition is not None:
                check_condition(a.condition, ap + (a.op,), scope, params, None, dep_prefixes, fail,
                                f"collection {c.id}, {a.name}: ")
                reads += [n for n in facts_read(a.condition) if n not in fields]
            for f in (a.field, a.take):
                if f is not None and f not in fields:
                    fail(f"aggregate {a.name!r} reads {f!r}, which is not a field of {', '.join(c.events)}",
                         *ap, a.op, expected="a declared field of the event kind, or event.date")
            if a.op in ("min", "max", "at_max"):
                ft = fields.get(a.field or "", FactInfo(None)).type
                if ft not in (FactType.number, FactType.integer, FactType.date, None):
                    fail(f"'{a.op}' of {a.name!r} needs a number or date field; {a.field!r} is {ft.value}", *ap, a.op)
            cmp = a.comparison
            if cmp and isinstance(cmp[1], ParamRef) and cmp[1].param not in params:
                fail(f"unknown parameter {cmp[1].param!r}", *ap, cmp[0])
        for n in reads:
            if n in defined_by and n not in fields:
                deps[i].add(defined_by[n])
    order: list[int] = []
    state: dict[int, int] = {}

    def visit(i: int, stack: tuple[int, ...]) -> None:
        if state.get(i) == 2:
            return
        if i in stack:
            cyc = " -> ".join(colls[k].id for k in stack[stack.index(i):] + (i,))
            fail(f"cycle between collections: {cyc} (a window anchor or condition reads an aggregate "
                 f"that depends on it)", *base, i, "id")
        for d in sorted(deps[i]):
            visit(d, stack + (i,))
        state[i] = 2
        order.append(i)

    for i in range(len(colls)):
        visit(i, ())
    known_out.update(agg_info)
    return order, {c.id: frozenset(infos[i]) for i, c in enumerate(colls)}
