"""The course fold: a pack's `course:` section run over a subject's timeline.

Generic: the items, state, transitions and outputs are the pack's. For each item, in date order,
the item sheet holds the subject's facts, the item's fields (`item.id`, `item.kind`,
`item.date` and the fields of its kind) and the state before the item (`state.<var>`); the pack
is evaluated on it (collections, derived facts, rules, decisions and transition guards, by the
evaluator in use); then every state variable takes its new value: the first transition (listed
order) that is met and sets it decides; an earlier unknown one makes it unknown unless every
candidate value agrees; none met keeps it. After the last item the course's own collections (over
`result` events: the folded items with their facts and decision outputs), derived facts, rules
and decisions are evaluated once: the course outputs.

State values are three-valued: a value, unset, or unknown with the facts that would decide it.
A `pending` variable is an open question dated at the item that opened it, naming what resolves
it; a later item's transition closes it as confirmed or refuted, and the resolution is recorded.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Mapping

from engine.errors import EvaluationError
from engine.rules.load import Pack
from engine.rules.model import AddTo, ClosePending, OpenPending, OutputOf, ParamRef, StateType
from engine.evaluate.decide import Undecided
from engine.evaluate.collections import ElementEvaluator, compute_collections, in_window, window_test
from engine.evaluate.events import Event, Timeline
from engine.evaluate.facts import FactSheet, add_derived
from engine.evaluate.logic import Outcome, all_of
from engine.evaluate.plan import ITEMS
from engine.evaluate.run import (Evaluator, PackResult, computed_facts, default_evaluator, evaluate_pack,
                                 resolve_params, run_plan)
from engine.evaluate.values import normalize, to_json

RESULT = "result"


@dataclass(frozen=True)
class StateValue:
    """One state variable's value: set (`value`), unset (`value` None), or unknown (`unknown`
    names the facts that would decide it). A pending variable also says what resolves it. An unset
    value copied from a fact that was not recorded remembers it (`absent`: what to record)."""
    value: Any = None
    unknown: tuple[str, ...] | None = None
    resolves: str | None = None
    opened_by: str | None = None
    absent: tuple[str, ...] | None = None

    @property
    def is_unknown(self) -> bool:
        return self.unknown is not None

    def to_json(self) -> Any:
        if self.unknown is not None:
            return {"unknown": list(self.unknown)}
        if self.resolves is not None:
            return {"open_since": to_json(self.value), "opened_by": self.opened_by, "resolves": self.resolves}
        return to_json(self.value)


@dataclass
class ItemResult:
    """One folded item: its evaluation, the state after it and what moved each variable."""
    index: int                                  # its place in the fold
    event: Event
    result: PackResult
    sheet: FactSheet
    state: dict[str, StateValue]
    moved: dict[str, str]                       # var -> transition id that set it, or "unknown: T1, T2"
    resolved: list[dict[str, Any]] = field(default_factory=list)   # pending variables closed here

    def state_json(self) -> dict[str, Any]:
        return {k: v.to_json() for k, v in self.state.items()}

    def pending(self) -> dict[str, dict[str, Any]]:
        """Pending questions open after this item, with what resolves them."""
        return {k: {"since": to_json(v.value), "opened_by": v.opened_by, "resolves": v.resolves}
                for k, v in self.state.items() if v.resolves is not None and v.unknown is None}


@dataclass
class CourseResult:
    pack: dict[str, str]
    items: list[ItemResult]
    unplaced: list[dict[str, Any]]              # events whose membership in the items is unknown
    state: dict[str, StateValue]
    final: PackResult
    final_sheet: FactSheet

    def outputs(self, pack: Pack | None = None) -> dict[str, Any]:
        """The course outcome: every course decision (its value; undecided: its decided fields with
        the rest null, or null), every state variable marked `output` (its final value, null when
        unknown), `indeterminate` (per undecided output: candidates and missing facts) and
        `pending` (questions still open at the end, with what resolves them)."""
        out: dict[str, Any] = {}
        undecided: dict[str, Any] = {}
        for did, d in self.final.decisions.items():
            dj = d.to_dict()
            if d.status == "decided":
                out[did] = dj["value"]
                continue
            shapes = [c for c in dj.get("candidates", []) if isinstance(c, dict)]
            out[did] = {k: dj.get("fields", {}).get(k) for k in sorted(set().union(*shapes))} if shapes else None
            undecided[did] = {"candidates": dj.get("candidates", []), "missing": d.missing}
        if pack is not None:
            for sv in pack.manifest.course.state:
                if not sv.output:
                    continue
                v = self.state[sv.name]
                out[sv.name] = None if v.unknown is not None else v.to_json()
                if v.unknown is not None:
                    undecided[sv.name] = {"missing": list(v.unknown)}
        out["pending"] = {k: {"since": to_json(v.value), "opened_by": v.opened_by, "resolves": v.resolves}
                          for k, v in self.state.items() if v.resolves is not None and v.unknown is None}
        out["indeterminate"] = undecided
        if self.unplaced:
            out["unplaced"] = self.unplaced
        return out


def _state_facts(sheet: FactSheet, state: Mapping[str, StateValue], where: str, prefix: str = "state.") -> None:
    for var, sv in state.items():
        name = prefix + var
        if sv.unknown is not None:
            sheet.mark_unknown(name, list(sv.unknown))
        elif sv.value is not None:
            sheet.values[name] = sv.value
            sheet.sources[name] = where
        else:
            sheet.mark_absent(name, list(sv.absent) if sv.absent else None)


def _initial(pack: Pack) -> dict[str, StateValue]:
    return {sv.name: StateValue(normalize(sv.initial) if sv.initial is not None else None)
            for sv in pack.manifest.course.state}


def select_items(pack: Pack, base: FactSheet, timeline: Timeline, params: Mapping[str, Any],
                 elements: ElementEvaluator) -> tuple[list[Event], list[dict[str, Any]]]:
    """The course's items in fold order, and the events whose membership is unknown."""
    items_def = pack.manifest.course.items
    bounds = window_test(items_def.window, base, params, computed_facts(pack))
    chosen, unplaced = [], []
    for e in timeline.of(items_def.events):
        w = in_window(e.date, bounds)
        if w.outcome is Outcome.NOT_MET:
            continue
        m = w
        if items_def.where is not None:
            m = all_of([w, elements.outcomes(ITEMS, e, base)[f"{ITEMS}:where"]])
        if m.outcome is Outcome.MET:
            chosen.append(e)
        elif m.outcome is Outcome.UNKNOWN:
            unplaced.append({"event": e.id, "kind": e.kind, "date": e.date.isoformat(), "missing": sorted(m.missing)})
    return chosen, unplaced


def item_sheet(base: FactSheet, e: Event, state: Mapping[str, StateValue], where: str) -> FactSheet:
    sheet = base.copy()
    sheet.values["item.id"], sheet.values["item.kind"], sheet.values["item.date"] = e.id, e.kind, e.date
    for k in ("item.id", "item.kind", "item.date"):
        sheet.sources[k] = f"event {e.id}"
    for k, v in e.fields.items():
        sheet.values[k] = v
        if k in e.sources:
            sheet.sources[k] = e.sources[k]
    for k, roots in e.unknown.items():
        sheet.mark_unknown(k, roots)
    _state_facts(sheet, state, where)
    return sheet


def _assign(value: Any, old: StateValue, out_sheet: FactSheet, e: Event, params: Mapping[str, Any]) -> StateValue:
    """The value a transition gives a variable (before agreement among candidates)."""
    if value is None:
        return StateValue()
    if isinstance(value, OutputOf):
        n = value.fact
        if n in out_sheet.values:
            return StateValue(out_sheet.values[n])
        if n in out_sheet.unknown:
            return StateValue(unknown=tuple(out_sheet.missing_roots(n)))
        # not recorded: name it on the item (an event field as `<event id>:<field>`)
        roots = out_sheet.missing_because.get(n) or ([f"{e.id}:{n}"] if n not in ("item.date", "item.id", "item.kind") else [n])
        return StateValue(absent=tuple(roots))
    if isinstance(value, AddTo):
        if old.unknown is not None:
            return old
        step = normalize(params[value.add.param] if isinstance(value.add, ParamRef) else value.add)
        return StateValue((old.value if old.value is not None else Decimal(0)) + step)
    if isinstance(value, OpenPending):
        if old.unknown is None and old.resolves is not None:   # already open: keep the first evidence
            return old
        return StateValue(e.date, None, value.open, e.id)
    if isinstance(value, ClosePending):
        return StateValue()
    return StateValue(normalize(value))


def _same(a: StateValue, b: StateValue) -> bool:
    return (a.unknown is None and b.unknown is None and type(a.value) is type(b.value)
            and a.value == b.value and a.resolves == b.resolves and a.absent == b.absent)


def next_value(pack: Pack, var: str, old: StateValue, transitions: Mapping[str, Any], sheet: FactSheet,
               e: Event, params: Mapping[str, Any]) -> tuple[StateValue, str | None, dict[str, Any] | None]:
    """A variable's value after an item: the first met transition (listed order) that sets it
    decides (DMN `first` over that variable's rows); an earlier unknown row makes it unknown
    unless the candidate values agree; none met keeps it. Returns (value, what moved it, the
    resolution of a pending variable closed here)."""
    course = pack.manifest.course
    cands: list[StateValue] = []
    open_rows: list[str] = []
    roots: set[str] = set()
    decided_by: str | None = None
    for t in course.transitions:
        if var not in t.set:
            continue
        tr = transitions[t.id]
        if tr.outcome is Outcome.NOT_MET:
            continue
        cands.append(_assign(t.set[var], old, sheet, e, params))
        if tr.outcome is Outcome.UNKNOWN:
            open_rows.append(t.id)
            roots |= set(tr.missing)
            continue
        decided_by = t.id
        break
    if decided_by is None:
        cands.append(old)
    first = cands[0]
    if all(_same(first, c) for c in cands[1:]):
        value = first
    else:
        for c in cands:
            if c.unknown is not None:
                roots |= set(c.unknown)
        value = StateValue(unknown=tuple(sorted(roots)))
    if value.unknown is not None and open_rows:
        return value, "unknown: " + ", ".join(open_rows + [decided_by or "(kept)"]), None
    if decided_by is None:
        return value, None, None
    assigned = next(t.set[var] for t in course.transitions if t.id == decided_by)
    resolved = None
    if isinstance(assigned, ClosePending) and old.resolves is not None and old.unknown is None:
        resolved = {"variable": var, "as": assigned.close, "by": e.id, "transition": decided_by,
                    "opened_by": old.opened_by, "since": to_json(old.value)}
    return value, decided_by, resolved


def fix_outputs(sheet: FactSheet, fixed: Mapping[str, Any], item_id: str) -> None:
    """Set the outputs the committee decided on an item over the machine's (after each stratum)."""
    for name, value in fixed.items():
        sheet.unknown.discard(name)
        sheet.missing_because.pop(name, None)
        if value is None:
            sheet.mark_absent(name, [name])
        else:
            sheet.values[name] = normalize(value)
            sheet.sources[name] = f"committee decision on {item_id}"


class _Step:
    """One item's state update, published as `new.<var>` as soon as the transitions that set the
    variable are evaluated (a transition may read another variable's new value)."""

    def __init__(self, pack: Pack, state: Mapping[str, StateValue], e: Event, params: Mapping[str, Any],
                 fixed: Mapping[str, Any] | None = None) -> None:
        self.pack, self.old, self.e, self.params = pack, state, e, params
        self.fixed = fixed or {}
        self.new: dict[str, StateValue] = {}
        self.moved: dict[str, str] = {}
        self.resolved: list[dict[str, Any]] = []

    def __call__(self, k: int, transitions: Mapping[str, Any], sheet: FactSheet) -> None:
        if self.fixed:   # the committee's decision on this item: its outputs replace the machine's
            fix_outputs(sheet, self.fixed, self.e.id)   # before any later stratum (transitions) reads them
        for var in self.pack.plan.new_after.get(k, ()):
            value, moved, resolved = next_value(self.pack, var, self.old[var], transitions, sheet, self.e, self.params)
            self.new[var] = value
            if moved:
                self.moved[var] = moved
            if resolved:
                self.resolved.append(resolved)
            _state_facts(sheet, {var: value}, f"course state after {self.e.id}", prefix="new.")


def _cand(v: Any) -> Any:
    return None if v is None or isinstance(v, (dict, list, Undecided)) else normalize(v)


def result_event(item: ItemResult) -> Event:
    """A folded item as an event of kind `result`: its facts, its undecided outputs unknown (with
    their candidate values), for the course's collections."""
    s = item.sheet
    ev = Event(RESULT, item.event.date, item.event.id, dict(s.values), dict(s.sources), item.event.order,
               key=f"{item.index:06d}")
    for n in s.unknown:
        ev.unknown[n] = s.missing_roots(n)
    pid = item.result.pack["id"]
    for d in item.result.decisions.values():
        if d.status == "decided":
            continue
        shapes = [c for c in d.candidates if isinstance(c, dict)]
        if shapes and len(shapes) == len(d.candidates):
            for k in set().union(*shapes):
                name = f"{pid}.{d.id}.{k}"
                if name not in s.values:
                    ev.candidates[name] = tuple(_cand(c.get(k)) for c in shapes)
        elif d.candidates and not shapes:
            ev.candidates[f"{pid}.{d.id}"] = tuple(_cand(c) for c in d.candidates)
    return ev


def run_course(pack: Pack, sheet: FactSheet, timeline: Timeline | None, params: Mapping[str, Any] | None = None,
               evaluator: Evaluator | None = None,
               fixed: Mapping[str, Mapping[str, Any]] | None = None) -> CourseResult:
    """Fold the pack's course over the timeline; the subject's facts are `sheet`. `fixed`: item id ->
    per-item decision outputs (`<pack>.<decision>[.<field>]` -> value) that the committee decided:
    the state and the course outputs fold over them; the item's own result stays the machine's."""
    if pack.manifest.course is None:
        raise EvaluationError(f"pack {pack.id} has no course")
    evaluator = evaluator or default_evaluator()
    params = resolve_params(pack, params)
    timeline = timeline or Timeline()
    course = pack.manifest.course
    elements = ElementEvaluator(pack, params, evaluator)
    try:
        events, unplaced = select_items(pack, sheet, timeline, params, elements)
        state = _initial(pack)
        items: list[ItemResult] = []
        where = "course state: initial"
        for e in events:
            s = item_sheet(sheet, e, state, where)
            step = _Step(pack, state, e, params, (fixed or {}).get(e.id))
            result, out_sheet = evaluate_pack(pack, s, params, evaluator, timeline, elements, step)
            result.fixed = step.fixed or None   # kept in the audit record: `audit explain` sets them again
            state = {var: step.new[var] for var in state}
            items.append(ItemResult(len(items), e, result, out_sheet, state, step.moved, step.resolved))
            where = f"course state after {e.id}"
        final_sheet = sheet.copy()
        _state_facts(final_sheet, state, where)
        results_tl = timeline.with_events(result_event(i) for i in items)
        if course.collections:
            compute_collections(list(course.collections), pack.timeline["course_order"], final_sheet, results_tl,
                                params, elements, computed_facts(pack, "course"))
        add_derived(final_sheet, list(course.derived), params)
        rules, rows, _, decisions = run_plan(pack, pack.course_plan, "course", final_sheet, params, evaluator)
    finally:
        elements.close()
    final = PackResult(pack.identity(), params, {r.id: rules[r.id] for r in course.rules}, rows,
                       {d.id: decisions[d.id] for d in course.decisions}, evaluator.name,
                       row_keys=pack.course_plan.row_keys, sheet=final_sheet, scope="course",
                       definition=pack)
    return CourseResult(pack.identity(), items, unplaced, state, final, final_sheet)
