"""Evaluate a pack (and the packs it depends on) over a fact sheet: the one entry point that
use cases call. Strata in plan order; decisions as soon as their rows are known; outputs of a
decision become facts for later strata and for dependent packs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from engine.errors import EvaluationError, InputError
from engine.rules.load import Pack, Registry
from engine.rules.params import check_value
from engine.rules.model import OutputOf
from engine.evaluate.decide import DecisionResult, Undecided, decide
from engine.evaluate.facts import FactSheet, add_derived
from engine.evaluate.logic import FALSE, OUTCOME_TEXT, TRUE, Outcome, Tri
from engine.evaluate.plan import TRANSITION, Plan
from engine.evaluate.reference import evaluate_condition
from engine.evaluate.values import normalize, to_json


class Session(Protocol):
    def evaluate(self, stratum: int, sheet: FactSheet, results: Mapping[str, Tri]) -> dict[str, Outcome]: ...
    def close(self) -> None: ...


class Evaluator(Protocol):
    name: str
    # False (the compiled batch evaluator): a decision-table row that is not met gets no values
    # read. No record keeps them (a trace holds the rows that decided or held a decision open);
    # only `audit explain` shows one, for a row recorded met, and it evaluates with durable-rules.
    # A batch has about three refuted rows for every other rule, row and transition.
    refuted_row_inputs: bool

    def session(self, plan: Plan, pack_identity: Mapping[str, str], params: Mapping[str, Any],
                pack_file: str = "") -> Session: ...


@dataclass(slots=True)
class RuleResult:
    id: str
    outcome: Outcome
    missing: list[str] = field(default_factory=list)
    inputs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"rule": self.id, "outcome": OUTCOME_TEXT[self.outcome], "inputs": self.inputs}
        if self.missing:
            d["missing"] = self.missing
        return d


_KNOWN = {Outcome.MET: TRUE, Outcome.NOT_MET: FALSE}


@dataclass
class PackResult:
    pack: dict[str, str]
    parameters: dict[str, Any]
    rules: dict[str, RuleResult]
    rows: dict[str, RuleResult]
    decisions: dict[str, DecisionResult]
    evaluator: str
    transitions: dict[str, RuleResult] = field(default_factory=dict)   # course transitions, by id
    row_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # decision id -> row keys
    # the sheet the pack ended with (facts read, collections' aggregates, derived facts, outputs):
    # what a compact audit record keeps so that `audit explain` can evaluate the pack again
    sheet: FactSheet | None = field(default=None, repr=False)
    scope: str = "main"                                                # "course": the course's outputs
    definition: Any = field(default=None, repr=False)                  # the Pack evaluated
    fixed: dict[str, Any] | None = None    # outputs the committee decided, set over the pack's (a course item)

    def traced(self) -> list[RuleResult]:
        """What the audit trail records, in order: every rule, the decision-table rows that
        decided (met) or held a decision open (unknown), and the course transitions that moved or
        could have moved state."""
        rows = list(self.rules.values())
        for d in self.decisions.values():
            keys = self.row_keys.get(d.id, ())
            for j in d.rows_met + d.rows_unknown:
                r = self.rows.get(keys[j] if j < len(keys) else f"{d.id}#{j}")
                if r is not None:
                    rows.append(r)
        rows += [r for r in self.transitions.values() if r.outcome is not Outcome.NOT_MET]
        return rows

    def trace(self) -> list[dict[str, Any]]:
        """`traced()` with the values each rule read and the facts an unknown one misses (what
        `audit explain` shows; a compact audit record keeps only the outcomes)."""
        pid = self.pack["id"]
        out = []
        for r in self.traced():  # RuleResult.to_dict with the pack first, built once
            t = {"pack": pid, "rule": r.id, "outcome": OUTCOME_TEXT[r.outcome], "inputs": r.inputs}
            if r.missing:
                t["missing"] = r.missing
            out.append(t)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"pack": self.pack, "parameters": self.parameters, "evaluator": self.evaluator,
                "rules": [r.to_dict() for r in self.rules.values()],
                "decisions": {k: d.to_dict() for k, d in self.decisions.items()}}


def default_evaluator() -> Evaluator:
    from engine.evaluate.durable_adapter import DurableEvaluator
    return DurableEvaluator()


class ResolvedParams(dict):
    """The parameters in force for one pack (resolve_params' result): evaluating that pack again
    with them skips the checks."""
    pack_id: str = ""


def resolve_params(pack: Pack, overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The parameters in force: the pack's defaults, overridden by name (type- and choice-checked)."""
    if type(overrides) is ResolvedParams and overrides.pack_id == pack.id:
        return overrides
    params = ResolvedParams((p.name, p.value) for p in pack.manifest.parameters)
    params.pack_id = pack.id
    if not overrides:
        return params
    decl = {p.name: p for p in pack.manifest.parameters}
    for name, value in (overrides or {}).items():
        if name not in decl:
            raise InputError(f"pack {pack.id} has no parameter {name!r}",
                             expected="one of " + ", ".join(sorted(decl)) if decl else "no parameters")
        p = decl[name]
        if isinstance(value, str) and not isinstance(p.value, str):
            value = _coerce(value, p.value, pack.id, name)
        check_value(pack.id, name, value)
        if isinstance(p.value, bool) != isinstance(value, bool) or (
                isinstance(p.value, str) != isinstance(value, str)):
            raise InputError(f"parameter {name!r} of pack {pack.id} has the wrong type",
                             expected=type(p.value).__name__)
        if p.choices is not None and value not in p.choices:
            raise InputError(f"parameter {name!r} of pack {pack.id} cannot be {value!r}",
                             expected="one of " + ", ".join(map(str, p.choices)))
        params[name] = value
    return params


def _coerce(text: str, like: Any, pack_id: str, name: str) -> Any:
    try:
        if isinstance(like, bool):
            if text.lower() in ("true", "yes", "1"):
                return True
            if text.lower() in ("false", "no", "0"):
                return False
            raise ValueError
        if isinstance(like, int):
            return int(text)
        return float(text)
    except ValueError:
        raise InputError(f"parameter {name!r} of pack {pack_id}: cannot read {text!r}",
                         expected=type(like).__name__) from None


def _inputs(ev: Any, values: Mapping[str, Any], results: Mapping[str, Tri],
            as_json: dict[str, Any]) -> dict[str, Any]:
    """The values a rule read, as recorded (JSON forms cached per evaluation: rules share facts)."""
    out = {}
    for n in ev.reads:
        if n in values:
            j = as_json.get(n, _NO)
            if j is _NO:
                j = as_json[n] = to_json(values[n])
            out[n] = j
    for r in ev.refs:
        out["rule:" + r] = OUTCOME_TEXT[results[r].outcome]
    return out


_NO = object()


def evaluate_pack(pack: Pack, sheet: FactSheet, params: Mapping[str, Any] | None = None,
                  evaluator: Evaluator | None = None, timeline: Any = None,
                  elements: Any = None, on_stratum: Any = None) -> tuple[PackResult, FactSheet]:
    """Evaluate one pack; returns its result and the sheet extended with its collections' aggregates,
    derived facts and decision outputs. With a `timeline`, the pack's collections are computed from
    it (facts the sheet already holds are kept: a test may state an aggregate directly); a pack with
    a course is folded by engine.evaluate.course.run_course, which calls this once per item."""
    evaluator = evaluator or default_evaluator()
    params = resolve_params(pack, params)
    sheet = sheet.copy()
    m = pack.manifest
    if m.collections and timeline is not None:
        from engine.evaluate.collections import ElementEvaluator, compute_collections
        own = elements is None
        elements = elements or ElementEvaluator(pack, params, evaluator)
        try:
            given = [a.name for c in m.collections for a in c.facts if a.name in sheet.values]
            compute_collections(list(m.collections), pack.timeline["order"], sheet, timeline, params, elements,
                                computed_facts(pack), given)
        finally:
            if own:
                elements.close()
    add_derived(sheet, m.derived, params)
    rules, rows, transitions, decisions = run_plan(pack, pack.plan, "main", sheet, params, evaluator, on_stratum)
    ordered = {r: rules[r] for r in pack.rule_ids}
    ordered_dec = {d: decisions[d] for d in pack.decision_ids}
    return PackResult(pack.identity(), params, ordered, rows, ordered_dec, evaluator.name, transitions,
                      pack.plan.row_keys, sheet, definition=pack), sheet


def computed_facts(pack: Pack, scope: str = "main") -> set[str]:
    """State variables and aggregates: an anchor among them without a value leaves its bound open."""
    known = pack.known if scope == "main" else pack.timeline.get("course_known", {})
    return {n for n, info in known.items() if getattr(info, "computed", False)}


def run_plan(pack: Pack, plan: Plan, scope: str, sheet: FactSheet, params: Mapping[str, Any],
             evaluator: Evaluator, on_stratum: Any = None) -> tuple[dict[str, RuleResult], dict[str, RuleResult],
                                                                    dict[str, RuleResult], dict[str, DecisionResult]]:
    """Evaluate one plan stratum by stratum (the sheet grows with decision outputs): rule results,
    row results, transition results (by transition id) and decision results. `on_stratum(k,
    transitions, sheet)` runs before the first stratum (k = -1) and after each (the course
    publishes `new.<var>` there)."""
    results: dict[str, Tri] = {}
    rule_results: dict[str, RuleResult] = {}
    row_results: dict[str, RuleResult] = {}
    transitions: dict[str, RuleResult] = {}
    dec_results: dict[str, DecisionResult] = {}
    as_json: dict[str, Any] = {}
    resolve = _resolver(sheet)
    refuted_inputs = getattr(evaluator, "refuted_row_inputs", True)
    session = evaluator.session(plan, pack.plan_identity(scope), params, pack.file)
    # a batch session may split a stratum's decision tables by the fact their rows test first:
    # rows refuted by that test are not evaluated (not met, nothing read; their values read would
    # not be built anyway)
    split = None if refuted_inputs else getattr(session, "split", None)
    if on_stratum is not None:
        on_stratum(-1, transitions, sheet)
    try:
        for k, stratum in enumerate(plan.strata):
            sp = split(k, sheet) if split is not None else None
            if sp is None:
                fired = session.evaluate(k, sheet, results)
            else:
                fired = session.evaluate_split(sp, sheet, results)
                if sp.memo is None:
                    sp.memo = (dict.fromkeys(sp.refuted, FALSE),
                               {key: RuleResult(key, Outcome.NOT_MET) for key in sp.refuted})
                results.update(sp.memo[0])
                row_results.update(sp.memo[1])   # shared, never changed (as every RuleResult)
                stratum = sp.visit
            for ev in stratum:
                tri = _KNOWN.get(fired.get(ev.key))
                if tri is None:
                    tri = evaluate_condition(ev.cond, sheet, params, results)
                    if tri.outcome is not Outcome.UNKNOWN:
                        raise EvaluationError(f"{pack.id}: {ev.key}: the {evaluator.name} evaluator found it unknown, "
                                              f"the reference evaluator {tri.outcome.value}")
                    missing = sorted(tri.missing)
                else:
                    missing = []
                results[ev.key] = tri
                if ev.transition:   # a transition not met is not traced: its inputs are not built
                    tid = ev.key[len(TRANSITION):]
                    transitions[tid] = RuleResult(tid, tri.outcome, missing, {} if tri.outcome is Outcome.NOT_MET
                                                  else _inputs(ev, sheet.values, results, as_json))
                    continue
                if ev.decision:
                    row_results[ev.key] = RuleResult(ev.key, tri.outcome, missing, {} if (
                        tri.outcome is Outcome.NOT_MET and not refuted_inputs) else _inputs(ev, sheet.values, results, as_json))
                    continue
                rule_results[ev.key] = RuleResult(ev.key, tri.outcome, missing, _inputs(ev, sheet.values, results, as_json))
            for dec in plan.decisions_after[k]:
                only = sp.kept.get(dec.id) if sp is not None else None
                if only is None:
                    res = decide(dec, [results[k] for k in dec.row_keys], resolve)
                else:   # the refuted rows are not met: they change no hit policy's result
                    keys = dec.row_keys
                    res = decide(dec, {j: results[keys[j]] for j in only}, resolve, only)
                dec_results[dec.id] = res
                _publish(pack.id, dec.id, res, sheet)
            if on_stratum is not None:
                on_stratum(k, transitions, sheet)
    finally:
        session.close()
    return rule_results, row_results, transitions, dec_results


def _resolver(sheet: FactSheet) -> Any:
    """Output fields copied from facts (`{fact: ...}`): the value, None when decidedly absent, or
    Undecided (with the missing facts) when unknown."""
    def value_of(name: str) -> Any:
        if name in sheet.values:
            return sheet.values[name]
        if name in sheet.unknown:
            return Undecided(tuple(sheet.missing_roots(name)))
        return None

    def resolve(then: Any) -> Any:
        if isinstance(then, dict) and any(isinstance(v, OutputOf) for v in then.values()):
            return {k: value_of(v.fact) if isinstance(v, OutputOf) else v for k, v in then.items()}
        return then
    return resolve


def _publish(pack_id: str, dec_id: str, res: DecisionResult, sheet: FactSheet) -> None:
    """Decision outputs become facts. An undecided output is unknown (because of the decision's
    missing facts); a decided null is absent."""
    if res.hit_policy == "collect":
        return
    base = f"{pack_id}.{dec_id}"
    shapes = [c for c in res.candidates if c is not None]
    if shapes and all(isinstance(c, dict) for c in shapes):
        keys = set().union(*shapes)
        for k in keys:
            name = f"{base}.{k}"
            if k in res.fields:
                if res.fields[k] is not None:
                    sheet.values[name] = _norm(res.fields[k])
                else:
                    sheet.mark_absent(name, [base])
            else:
                sheet.mark_unknown(name, res.missing or [base])
        return
    if res.status == "decided":
        if res.value is not None:
            sheet.values[base] = _norm(res.value)
        else:
            sheet.mark_absent(base, [base])
    else:
        sheet.mark_unknown(base, res.missing or [base])


_norm = normalize


def evaluate_chain(registry: Registry, pack_id: str, sheet: FactSheet,
                   params: Mapping[str, Mapping[str, Any]] | None = None,
                   evaluator: Evaluator | None = None, timeline: Any = None) -> tuple[dict[str, PackResult], FactSheet]:
    """Evaluate a pack after everything it depends on; results by pack id, dependencies first. A
    pack with a course is folded over the timeline and its course outputs published."""
    evaluator = evaluator or default_evaluator()
    out: dict[str, PackResult] = {}
    for pack in registry.chain(pack_id):
        p = (params or {}).get(pack.id)
        if pack.manifest.course is not None:
            from engine.evaluate.course import run_course
            course = run_course(pack, sheet, timeline, p, evaluator)
            out[pack.id], sheet = course.final, course.final_sheet
        else:
            out[pack.id], sheet = evaluate_pack(pack, sheet, p, evaluator, timeline)
    return out, sheet
