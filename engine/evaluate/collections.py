"""Collections and their aggregates: the generic, three-valued machinery behind "since the latest
remission", "the marrow before cycle 1 of this line", "two samples a week apart".

An event is a *member* of a collection when its date is inside the window and its `where` holds;
both are three-valued (an unknown anchor, an unrecorded field), so membership is met, not met or
unknown. Per-element conditions are evaluated by the evaluator in use (durable-rules or the
reference), one element at a time; this module only windows, orders and aggregates their Kleene
outcomes, as decide.py aggregates decision rows. A listing the record does not say is complete
(Timeline.incomplete) may hold more members: answers that depend on it stay unknown.

Aggregates (each decided only when every possible completion agrees):
- count (of members, or of members meeting a condition): bounds [#met, #met + #unknown], open
  above for an incomplete listing; with a comparison it is a boolean;
- any / none / all: booleans through count;
- first / last / min / max of a field, at_max (the `take` field of the member with the highest
  value, earliest on ties): the value, unknown when an unknown member or value could change it,
  absent when there is decidedly no member;
- span_days: days between the first and the last member (0 for fewer than two);
- consecutive: the latest (or longest) run of members meeting a condition, in date order.
Members on the same date (and order hint) are simultaneous: no listing order separates them
(first/last/at_max consider all of them; a run counts them as one step).
"""
from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Iterable, Mapping

from engine.errors import EvaluationError
from engine.rules.model import Aggregate, Collection, DaysFrom, ParamRef, Window
from engine.evaluate.events import Event, Timeline
from engine.evaluate.facts import FactSheet
from engine.evaluate.logic import FALSE, TRUE, Outcome, Tri, all_of, unknown
from engine.evaluate.reference import evaluate_condition
from engine.evaluate.values import normalize

_ABSENT = object()
_UNKNOWN = object()


# --- per-element conditions ------------------------------------------------------------------------

class ElementEvaluator:
    """Evaluates a pack's per-element conditions through the evaluator in use, one element at a
    time, and remembers each outcome for the facts it read (an element's outcome depends only on
    its fields and the enclosing facts its conditions read)."""

    def __init__(self, pack: Any, params: Mapping[str, Any], evaluator: Any) -> None:
        self.pack, self.params, self.evaluator = pack, params, evaluator
        self.plan = pack.element_plan
        self.session = None
        self.cache: dict[tuple, dict[str, Tri]] = {}
        self._enclosing: dict[int, tuple[str, ...]] = {}
        # a collection's aggregates depend only on the timeline and the enclosing facts it reads
        # (anchors, conditions): (collection id, timeline, those facts' states) -> the results
        self.results: dict[tuple, list[tuple[str, Any, Any, Any, Any]]] = {}

    def reads(self, coll: Collection) -> tuple[str, ...]:
        """The enclosing facts a collection's membership and aggregates depend on (those of every
        condition over its event kinds: a superset, which is safe for remembering results)."""
        k = self.plan.stratum_of[coll.id]
        enc = self._enclosing.get(k)
        if enc is None:
            fields = self.plan.element_fields[k]
            enc = self._enclosing[k] = tuple(sorted({n for ev in self.plan.strata[k] for n in ev.reads if n not in fields}))
        anchors = tuple(a.fact if isinstance(a, DaysFrom) else a for _, a in coll.window.bounds()) if coll.window else ()
        return enc + anchors

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    def outcomes(self, coll_id: str, event: Event, sheet: FactSheet) -> dict[str, Tri]:
        """Outcome of each per-element condition of collection `coll_id` (or the course's items)
        for `event` (keys as in the plan)."""
        plan = self.plan
        k = plan.stratum_of[coll_id]
        evs = plan.strata[k]
        fields = plan.element_fields[k]
        enc = self._enclosing.get(k)
        if enc is None:
            enc = self._enclosing[k] = tuple(sorted({n for ev in evs for n in ev.reads if n not in fields}))
        vals = sheet.values
        key = (k, id(event), tuple(vals.get(n, _UNKNOWN if n in sheet.unknown else _ABSENT) for n in enc))
        hit = self.cache.get(key)
        if hit is not None:
            return hit
        es = FactSheet()
        for n in enc:
            if n in vals:
                es.values[n] = vals[n]
            else:
                if n in sheet.missing_because:
                    es.missing_because[n] = sheet.missing_because[n]
                if n in sheet.unknown:
                    es.unknown.add(n)
        for ev in evs:
            for n in ev.reads:
                if n not in fields or n in es.values or n in es.missing_because:
                    continue
                v = event.value(n)
                if v is not None:
                    es.values[n] = v
                else:
                    es.missing_because[n] = event.missing_root(n)
                    if n in event.unknown:
                        es.unknown.add(n)
        if self.session is None:
            self.session = self.evaluator.session(plan, self.pack.plan_identity("elements"), self.params, self.pack.file)
        fired = self.session.evaluate(k, es, {})
        out: dict[str, Tri] = {}
        for ev in evs:
            o = fired.get(ev.key)
            if o is Outcome.MET:
                out[ev.key] = TRUE
            elif o is Outcome.NOT_MET:
                out[ev.key] = FALSE
            else:
                tri = evaluate_condition(ev.cond, es, self.params, {})
                if tri.outcome is not Outcome.UNKNOWN:
                    raise EvaluationError(f"{self.pack.id}: {ev.key} on {event.id}: the {self.evaluator.name} "
                                          f"evaluator found it unknown, the reference evaluator {tri.outcome.value}")
                out[ev.key] = tri
        self.cache[key] = out
        return out


# --- windows ------------------------------------------------------------------------------------

def _anchor(a: Any, sheet: FactSheet, params: Mapping[str, Any], computed: set[str]) -> tuple[Any, Tri | None]:
    """(date or None for an open bound, None) or (None, unknown Tri)."""
    name = a.fact if isinstance(a, DaysFrom) else a
    if name in sheet.values:
        d = sheet.values[name]
        if not isinstance(d, dt.date):
            raise EvaluationError(f"window anchor {name!r} is not a date: {d!r}")
        if isinstance(a, DaysFrom):
            days = params[a.days.param] if isinstance(a.days, ParamRef) else a.days
            d = d + dt.timedelta(days=int(normalize(days)))
        return d, None
    if name in sheet.unknown or name not in computed:
        return None, unknown(sheet.missing_roots(name))
    return None, None  # a state variable or aggregate without a value: the bound is open


def window_test(window: Window | None, sheet: FactSheet, params: Mapping[str, Any],
                computed: set[str]) -> list[tuple[str, Any, Tri | None]]:
    """The window's bounds resolved once per collection: (bound, date, unknown-or-None)."""
    if window is None:
        return []
    out = []
    for bound, a in window.bounds():
        d, u = _anchor(a, sheet, params, computed)
        if d is None and u is None:
            continue
        out.append((bound, d, u))
    return out


def in_window(date: dt.date, bounds: list[tuple[str, Any, Tri | None]]) -> Tri:
    parts = []
    for bound, d, u in bounds:
        if u is not None:
            parts.append(u)
            continue
        ok = {"after": date > d, "on_or_after": date >= d, "before": date < d, "on_or_before": date <= d}[bound]
        if not ok:
            return FALSE
    return all_of(parts) if parts else TRUE


# --- aggregates ------------------------------------------------------------------------------------

class _Member:
    __slots__ = ("event", "m", "outs")

    def __init__(self, event: Event, m: Tri, outs: dict[str, Tri]) -> None:
        self.event, self.m, self.outs = event, m, outs


def _cmp_bounds(op: str, lo: Decimal, hi: Decimal | None, k: Decimal) -> Outcome:
    """Three-valued comparison of a value known to lie in [lo, hi] (hi None: unbounded) with k."""
    def holds(o: str, x: Decimal) -> bool:
        return {"eq": x == k, "ne": x != k, "lt": x < k, "lte": x <= k, "gt": x > k, "gte": x >= k}[o]
    if hi is not None and lo == hi:
        return Outcome.MET if holds(op, lo) else Outcome.NOT_MET
    if op == "gte":
        return Outcome.MET if lo >= k else Outcome.NOT_MET if hi is not None and hi < k else Outcome.UNKNOWN
    if op == "gt":
        return Outcome.MET if lo > k else Outcome.NOT_MET if hi is not None and hi <= k else Outcome.UNKNOWN
    if op == "lte":
        return Outcome.MET if hi is not None and hi <= k else Outcome.NOT_MET if lo > k else Outcome.UNKNOWN
    if op == "lt":
        return Outcome.MET if hi is not None and hi < k else Outcome.NOT_MET if lo >= k else Outcome.UNKNOWN
    inside = lo <= k and (hi is None or k <= hi)
    if op == "eq":
        return Outcome.UNKNOWN if inside else Outcome.NOT_MET
    return Outcome.UNKNOWN if inside else Outcome.MET  # ne


def _roots(tris: Iterable[Tri]) -> set[str]:
    out: set[str] = set()
    for t in tris:
        out |= t.missing
    return out


def _publish_bounds(a: Aggregate, sheet: FactSheet, lo: int, hi: int | None, roots: set[str],
                    params: Mapping[str, Any], source: str) -> None:
    cmp = a.comparison
    if cmp is None:
        if hi is not None and lo == hi:
            sheet.put(a.name, lo)
        else:
            sheet.mark_unknown(a.name, sorted(roots))
    else:
        op, operand = cmp
        k = normalize(params[operand.param] if isinstance(operand, ParamRef) else operand)
        o = _cmp_bounds(op, Decimal(lo), None if hi is None else Decimal(hi), k)
        if o is Outcome.UNKNOWN:
            sheet.mark_unknown(a.name, sorted(roots))
        else:
            sheet.put(a.name, o is Outcome.MET)
    sheet.sources[a.name] = source


def _count(members: list[_Member], cond_key: str | None, negate: bool = False) -> tuple[int, int, set[str]]:
    """(#met, #unknown, roots of the unknown ones) of members meeting the condition."""
    met = unk = 0
    roots: set[str] = set()
    for mb in members:
        parts = [mb.m]
        if cond_key is not None:
            c = mb.outs[cond_key]
            if negate:
                c = FALSE if c.outcome is Outcome.MET else TRUE if c.outcome is Outcome.NOT_MET else c
            parts.append(c)
        t = all_of(parts)
        if t.outcome is Outcome.MET:
            met += 1
        elif t.outcome is Outcome.UNKNOWN:
            unk += 1
            roots |= t.missing
    return met, unk, roots


def _bounds(e: Event, f: str) -> tuple[Any, Any, list[str]]:
    """(low, high, roots) of an element's field; None bounds are open; equal bounds = known."""
    v = e.value(f)
    if v is not None:
        return v, v, []
    cands = [c for c in e.candidates.get(f, ()) if c is not None]
    if cands and len(cands) == len(e.candidates.get(f, ())):
        return min(cands), max(cands), e.missing_root(f)
    return None, None, e.missing_root(f)


def aggregate(a: Aggregate, coll_id: str, members: list[_Member], incomplete: list[str], sheet: FactSheet,
              params: Mapping[str, Any]) -> None:
    """Compute one aggregate over the members and put it on the sheet (value, absent or unknown)."""
    op = a.op
    src = f"collection {coll_id}"
    inc = set(incomplete)
    if op in ("count", "any", "none", "all"):
        key = f"{coll_id}:{a.name}" if a.condition is not None else None
        met, unk, roots = _count(members, key, negate=(op == "all"))
        hi = None if inc else met + unk
        roots |= inc
        if op == "count":
            _publish_bounds(a, sheet, met, hi, roots, params, src)
            return
        # any: count >= 1; none: count == 0; all: count(not cond) == 0
        o = _cmp_bounds("gte" if op == "any" else "eq", Decimal(met), None if hi is None else Decimal(hi),
                        Decimal(1 if op == "any" else 0))
        if o is Outcome.UNKNOWN:
            sheet.mark_unknown(a.name, sorted(roots))
        else:
            sheet.put(a.name, o is Outcome.MET)
        sheet.sources[a.name] = src
        return
    if op == "span_days":
        known = [mb.event.date for mb in members if mb.m.outcome is Outcome.MET]
        every = [mb.event.date for mb in members]
        lo = (max(known) - min(known)).days if known else 0
        hi = None if inc else ((max(every) - min(every)).days if every else 0)
        roots = _roots(mb.m for mb in members if mb.m.outcome is Outcome.UNKNOWN) | inc
        _publish_bounds(a, sheet, lo, hi, roots, params, src)
        return
    if op == "consecutive":
        key = f"{coll_id}:{a.name}"
        lo, hi, roots = _runs(members, key, a.run)
        if inc:
            lo, hi = 0, None
            roots |= inc
        _publish_bounds(a, sheet, lo, hi, roots, params, src)
        return
    if op in ("first", "last"):
        _first_last(a, members, inc, sheet, src)
        return
    if op in ("min", "max"):
        _min_max(a, members, inc, sheet, src)
        return
    if op == "at_max":
        _at_max(a, members, inc, sheet, src)
        return
    raise AssertionError(op)


def _when(mb: _Member) -> tuple:
    """Events at the same (date, order) are simultaneous: listing order never separates them."""
    return mb.event.date, mb.event.order


def _first_last(a: Aggregate, members: list[_Member], inc: set[str], sheet: FactSheet, src: str) -> None:
    seq = members if a.op == "first" else list(reversed(members))
    possible: list[_Member] = []
    chosen: _Member | None = None
    for mb in seq:
        if chosen is not None and _when(mb) != _when(chosen):
            break
        possible.append(mb)
        if chosen is None and mb.m.outcome is Outcome.MET:
            chosen = mb
    if chosen is None:  # no certain member: decidedly empty only without unknown members
        if not possible and not inc:
            sheet.mark_absent(a.name)
            return
        sheet.mark_unknown(a.name, sorted(_roots(mb.m for mb in possible) | inc))
        return
    others = [mb for mb in possible if mb is not chosen]
    if inc:
        sheet.mark_unknown(a.name, sorted(inc | _roots(mb.m for mb in others)))
        return
    values = [mb.event.value(a.field) for mb in possible]
    if all(v is not None for v in values) and len(set(map(repr, values))) == 1:
        sheet.put(a.name, values[0])
        sheet.sources[a.name] = chosen.event.sources.get(a.field, f"{src} ({chosen.event.id})")
        return
    if len(possible) == 1 and chosen.event.unknown.get(a.field) is None:
        # the member is certain and its field is not recorded: no value (as a fact not recorded)
        sheet.mark_absent(a.name, chosen.event.missing_root(a.field))
        return
    roots = _roots(mb.m for mb in others)
    for mb, v in zip(possible, values):
        if v is None:
            roots |= set(mb.event.missing_root(a.field))
    sheet.mark_unknown(a.name, sorted(roots))


def _min_max(a: Aggregate, members: list[_Member], inc: set[str], sheet: FactSheet, src: str) -> None:
    use_min = a.op == "min"
    if not members:
        if inc:
            sheet.mark_unknown(a.name, sorted(inc))
        else:
            sheet.mark_absent(a.name)
        return
    roots: set[str] = set(inc)
    best_certain: Any = None      # the best value any certain member reaches for sure (min: its high bound)
    best_possible: Any = None     # the best value any member could reach (min: its low bound)
    open_ = bool(inc)
    for mb in members:
        lo, hi, r = _bounds(mb.event, a.field)
        roots |= set(r)
        if mb.m.outcome is Outcome.UNKNOWN:
            roots |= mb.m.missing
        reach = lo if use_min else hi
        sure = hi if use_min else lo
        if reach is None:
            open_ = True
        elif best_possible is None or (reach < best_possible if use_min else reach > best_possible):
            best_possible = reach
        if mb.m.outcome is Outcome.MET and sure is not None:
            if best_certain is None or (sure < best_certain if use_min else sure > best_certain):
                best_certain = sure
    if not open_ and best_certain is not None and best_possible == best_certain:
        sheet.put(a.name, best_certain)
        sheet.sources[a.name] = src
    else:
        sheet.mark_unknown(a.name, sorted(roots))


def _at_max(a: Aggregate, members: list[_Member], inc: set[str], sheet: FactSheet, src: str) -> None:
    if not members:
        if inc:
            sheet.mark_unknown(a.name, sorted(inc))
        else:
            sheet.mark_absent(a.name)
        return
    bounds = [_bounds(mb.event, a.at_max) for mb in members]
    certain = [(i, lo) for i, (mb, (lo, hi, _)) in enumerate(zip(members, bounds))
               if mb.m.outcome is Outcome.MET and lo is not None]
    floor = max((lo for _, lo in certain), default=None)
    possible = []
    for i, (mb, (lo, hi, _)) in enumerate(zip(members, bounds)):
        if floor is not None and hi is not None:
            # beaten for sure: a strictly earlier certain member at least as high, or any other
            # certain member higher (simultaneous ties stay possible: no listing order decides)
            beaten = any((_when(members[j]) < _when(mb) and lj >= hi) or lj > hi for j, lj in certain if j != i)
            if beaten:
                continue
        possible.append(i)
    roots: set[str] = set(inc)
    for i in possible:
        roots |= set(bounds[i][2]) | members[i].m.missing
    if inc or not certain:
        sheet.mark_unknown(a.name, sorted(roots))
        return
    takes = [members[i].event.value(a.take) for i in possible]
    if all(v is not None for v in takes) and len(set(map(repr, takes))) == 1:
        sheet.put(a.name, takes[0])
        sheet.sources[a.name] = members[possible[0]].event.sources.get(a.take, f"{src} ({members[possible[0]].event.id})")
        return
    for i in possible:
        if members[i].event.value(a.take) is None:
            roots |= set(members[i].event.missing_root(a.take))
    sheet.mark_unknown(a.name, sorted(roots))


def _runs(members: list[_Member], key: str, which: str) -> tuple[int, int, set[str]]:
    """Run lengths in the worst and the best completion. Simultaneous members (same date) count
    as one step that meets the condition only if all of them do. Each step extends the run, is
    skipped (no member) or breaks it; the run length is monotone in that choice."""
    def choice(mb: _Member, best: bool) -> str:
        m, c = mb.m.outcome, mb.outs[key].outcome
        if m is Outcome.MET:
            return "extend" if c is Outcome.MET or (best and c is Outcome.UNKNOWN) else "break"
        # membership unknown
        if c is Outcome.MET:
            return "extend" if best else "skip"
        if c is Outcome.NOT_MET:
            return "skip" if best else "break"
        return "extend" if best else "break"

    steps: list[list[_Member]] = []
    for mb in members:
        if steps and _when(steps[-1][0]) == _when(mb):
            steps[-1].append(mb)
        else:
            steps.append([mb])

    def run(best: bool) -> int:
        cur = longest = 0
        for group in steps:
            chs = {choice(mb, best) for mb in group}
            ch = "break" if "break" in chs else "extend" if "extend" in chs else "skip"
            if ch == "extend":
                cur += 1
                longest = max(longest, cur)
            elif ch == "break":
                cur = 0
        return cur if which == "latest" else longest

    roots = set()
    for mb in members:
        if mb.m.outcome is Outcome.UNKNOWN or mb.outs[key].outcome is Outcome.UNKNOWN:
            roots |= mb.m.missing | mb.outs[key].missing
    return run(False), run(True), roots


# --- the entry point --------------------------------------------------------------------------------

def compute_collections(colls: list[Collection], order: list[int], sheet: FactSheet, timeline: Timeline,
                        params: Mapping[str, Any], elements: ElementEvaluator, computed: set[str],
                        given: Iterable[str] = ()) -> None:
    """Every collection's aggregates onto the sheet, in dependency order. Facts already `given`
    (a test that states an aggregate directly) are left as given."""
    given = set(given)
    for i in order:
        c = colls[i]
        if given and all(a.name in given for a in c.facts):
            continue
        memo_key = (c.id, id(timeline), tuple(_state_of(sheet, n) for n in elements.reads(c)))
        memo = elements.results.get(memo_key)
        if memo is not None:
            for name, value, roots, unknown_, source in memo:
                if name in given:
                    continue
                _restore(sheet, name, value, roots, unknown_, source)
            continue
        bounds = window_test(c.window, sheet, params, computed)
        has_conds = bool(c.where is not None or any(a.condition is not None for a in c.facts))
        members: list[_Member] = []
        for e in timeline.of(c.events):
            w = in_window(e.date, bounds)
            if w is FALSE:
                continue
            outs = elements.outcomes(c.id, e, sheet) if has_conds else {}
            m = all_of([w, outs[f"{c.id}:where"]]) if c.where is not None else w
            if m.outcome is Outcome.NOT_MET:
                continue
            members.append(_Member(e, m, outs))
        incomplete = [] if c.assume_complete else sorted(
            {timeline.incomplete[k] for k in c.events if k in timeline.incomplete})
        for a in c.facts:
            if a.name in given:
                continue
            aggregate(a, c.id, members, incomplete, sheet, params)
        elements.results[memo_key] = [(a.name, sheet.values.get(a.name, _ABSENT), sheet.missing_because.get(a.name),
                                       a.name in sheet.unknown, sheet.sources.get(a.name)) for a in c.facts]


def _state_of(sheet: FactSheet, name: str) -> Any:
    if name in sheet.values:
        return sheet.values[name]
    if name in sheet.unknown:
        return (_UNKNOWN, tuple(sheet.missing_roots(name)))
    return (_ABSENT, tuple(sheet.missing_roots(name)))


def _restore(sheet: FactSheet, name: str, value: Any, roots: Any, unknown_: bool, source: Any) -> None:
    if value is not _ABSENT:
        sheet.put(name, value)
    elif unknown_:
        sheet.mark_unknown(name, roots)
    else:
        sheet.mark_absent(name, roots)
    if source is not None:
        sheet.sources[name] = source
