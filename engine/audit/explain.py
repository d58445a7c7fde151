"""`adjudicator audit explain DECISION`: every rule's outcome and the values it read, recomputed
from the record's stored facts with the pinned pack, and whether the recomputation agrees.

The one way to get a stored record's explained trace (the committee report, the packets, the
diff and the command read it here). A compact record (engine.audit.compact) keeps each rule's
outcome and the facts its packs ended with; the pack with the recorded id, version and sha256
is evaluated again on those facts (one evaluation per recorded evaluation, each on its own
sheet), with the recorded parameters (within a run: the run's, from its start record), by
durable-rules unless told otherwise. Every recorded outcome is compared with the recomputed
one: a difference is reported, never hidden. A record of the earlier full format (its trace
holds the values read) is shown as recorded.

The pinned pack comes from the rules folder when it holds that exact pack (same sha256), else
from the trail's own copy of the pack (a `__pack__` record written when a run or a decision
first used it; engine.audit.packs), else the record cannot be recomputed and the explanation
says so.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.audit.compact import OUTCOMES, is_compact, trace_rows


@dataclass
class Explanation:
    """A record's explained trace and what the recomputation found."""
    decision_id: str
    subject_id: str
    use_case: str
    item: str | None
    format: str                                   # "outcomes/1" (compact) or "full" (values stored)
    trace: list[dict[str, Any]]                   # {pack, rule, outcome, inputs, missing[, recorded]}
    recomputed: bool = False
    evaluator: str | None = None
    agrees: bool | None = None                    # None: not recomputed
    disagreements: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)   # why it could not be recomputed
    packs: list[dict[str, Any]] = field(default_factory=list)   # identity + where the pack came from

    def to_dict(self) -> dict[str, Any]:
        return {"decision_id": self.decision_id, "subject_id": self.subject_id, "use_case": self.use_case,
                "item": self.item, "format": self.format, "recomputed": self.recomputed,
                "evaluator": self.evaluator, "agrees": self.agrees, "disagreements": self.disagreements,
                "problems": self.problems, "packs": self.packs, "trace": self.trace}


def _field(record: Any, key: str) -> Any:
    """A record's field, parsed: a StoredDecision, or a row whose JSON columns are text."""
    v = record[key] if isinstance(record, Mapping) else getattr(record, key)
    if isinstance(v, str) and key in ("input", "trace", "packs", "parameters", "outcome"):
        return json.loads(v)
    return v


def explain(record: Any, registry: Any, *, store: Any = None, evaluator: Any = None,
            recompute: bool = True) -> Explanation:
    """The explained trace of one stored record (StoredDecision or row). `store` lets the run's
    parameters and the trail's copy of a pack be found; `recompute=False` returns the recorded
    outcomes only (no values read)."""
    trace = _field(record, "trace")
    base = dict(decision_id=_field(record, "decision_id"), subject_id=_field(record, "subject_id"),
                use_case=_field(record, "use_case"), item=_field(record, "item"))
    if not is_compact(trace):
        rows = trace_rows(trace)
        return Explanation(**base, format="full", trace=[dict(t) for t in rows],
                           problems=[] if rows else ["the record holds no rule outcomes (a committee decision, "
                                                     "a batch record or bookkeeping)"])
    out = Explanation(**base, format=trace["format"], trace=trace_rows(trace))
    if not recompute:
        return out
    evaluations = trace.get("evaluations") or []
    packs = _field(record, "packs") or []
    if len(packs) != len(evaluations):
        out.problems.append(f"the record names {len(packs)} pack(s) for {len(evaluations)} evaluation(s)")
        return out
    from engine.evaluate.run import default_evaluator
    evaluator = evaluator or default_evaluator()
    inp = _field(record, "input") or {}
    params_rec = _field(record, "parameters") or {}
    run_id = _field(record, "run_id")
    explained: list[dict[str, Any]] = []
    for ident, ev in zip(packs, evaluations):
        pack, where = pinned_pack(ident, registry, store)
        out.packs.append(dict(ident, source=where))
        if pack is None:
            out.problems.append(f"pack {ident.get('id')} {ident.get('version')} (sha256 "
                                f"{str(ident.get('sha256'))[:12]}) is neither in the rules folder nor in the "
                                "trail: the record's outcomes are shown as recorded, not recomputed")
            continue
        params = params_rec.get(pack.id)
        if params is None and run_id and store is not None:
            params = run_parameters(store, run_id).get(pack.id)
        if params is None and run_id:
            out.problems.append(f"the parameters of {pack.id} in run {run_id} are not in the record or the run's "
                                "start record")
            continue
        try:
            res = _replay(pack, ev, inp, params or {}, evaluator, registry)
        except Exception as exc:  # noqa: BLE001 - an explanation reports, it does not crash
            out.problems.append(f"{pack.id}: the recomputation failed: {type(exc).__name__}: {exc}")
            continue
        explained += _compare(pack.id, ev, res, out.disagreements)
    if out.problems:
        return out
    out.trace, out.recomputed, out.evaluator = explained, True, evaluator.name
    out.agrees = not out.disagreements
    return out


def pinned_pack(ident: Mapping[str, Any], registry: Any, store: Any = None) -> tuple[Any, str | None]:
    """(the pack with exactly this identity, where it came from: "rules folder" / "trail"), or
    (None, None)."""
    pid, sha = ident.get("id"), ident.get("sha256")
    p = registry.packs.get(pid) if registry is not None else None
    if p is not None and p.sha256 == sha:
        return p, "rules folder"
    if store is not None:
        from engine.audit.packs import pack_from_trail
        p = pack_from_trail(store, pid, sha, registry)
        if p is not None:
            return p, "trail"
    return None, None


_RUN_PARAMS: dict[tuple[int, str], dict[str, Any]] = {}


def run_parameters(store: Any, run_id: str) -> dict[str, Any]:
    """The parameters in force in a cohort run, by pack id (its start record), cached per store."""
    key = (id(store), run_id)
    hit = _RUN_PARAMS.get(key)
    if hit is None:
        hit = {}
        for rec in store.iter(subject_id="__run__", run_id=run_id, item="start"):
            hit = dict((rec.outcome or {}).get("parameters") or {})
        if len(_RUN_PARAMS) > 64:
            _RUN_PARAMS.clear()
        _RUN_PARAMS[key] = hit
    return hit


def fact_types(pack: Any, registry: Any) -> dict[str, Any]:
    """Fact name -> declared type (None: any) for everything the pack can read, its dependencies'
    outputs included: JSON holds a date as text, the evaluators compare dates."""
    out: dict[str, Any] = {}
    if registry is not None:
        for dep in pack.manifest.depends_on:
            d = registry.packs.get(dep.pack)
            if d is not None:
                out.update({k: v.type for k, v in d.known.items()})
                out.update({k: v.type for k, v in d.timeline.get("course_known", {}).items()})
    out.update({k: v.type for k, v in pack.timeline.get("course_known", {}).items()})
    out.update({k: v.type for k, v in pack.known.items()})
    if pack.manifest.course is not None:
        for sv in pack.manifest.course.state:
            t = out.get("state." + sv.name)
            out["new." + sv.name] = t
    return out


def _typed(value: Any, t: Any) -> Any:
    from engine.evaluate.values import normalize, to_date
    from engine.rules.model import FactType
    if value is None:
        return None
    if t is FactType.date and isinstance(value, str):
        return to_date(value)
    if isinstance(value, (list, dict)):
        return None
    return normalize(value)


def replay_sheet(pack: Any, ev: Mapping[str, Any], inp: Mapping[str, Any], registry: Any) -> Any:
    """The sheet one recorded evaluation ended with, rebuilt from the record: the record's facts,
    this evaluation's own values, unknown and absent facts."""
    from engine.evaluate.facts import FactSheet
    types = fact_types(pack, registry)
    sheet = FactSheet()
    values = sheet.values
    facts = dict(inp.get("facts") or {})
    facts.update(ev.get("facts") or {})
    for k, v in facts.items():
        tv = _typed(v, types.get(k))
        if tv is not None:
            values[k] = tv
    unknown = dict(inp.get("unknown") or {})
    unknown.update(ev.get("facts_unknown") or {})
    for k, roots in unknown.items():
        if k in (ev.get("facts") or {}):
            continue
        sheet.mark_unknown(k, list(roots))
    for k in ev.get("facts_absent") or ():
        values.pop(k, None)
        sheet.unknown.discard(k)
    return sheet


def _replay(pack: Any, ev: Mapping[str, Any], inp: Mapping[str, Any], params: Mapping[str, Any],
            evaluator: Any, registry: Any) -> Any:
    """The pack evaluated again on the recorded sheet (collections are not recomputed: their
    aggregates are recorded facts)."""
    from engine.evaluate.run import evaluate_pack, resolve_params
    sheet = replay_sheet(pack, ev, inp, registry)
    resolved = resolve_params(pack, params)
    if ev.get("scope", "main") == "course":
        return _replay_course(pack, sheet, resolved, evaluator)
    fixed = ev.get("fixed")
    on_stratum = None
    if fixed:   # the committee's outputs on a course item, set over the pack's after each stratum
        from engine.evaluate.course import fix_outputs
        item = str(sheet.values.get("item.id", ""))
        on_stratum = lambda k, transitions, s: fix_outputs(s, fixed, item)  # noqa: E731
    res, _ = evaluate_pack(pack, sheet, resolved, evaluator, on_stratum=on_stratum)
    return res


def _replay_course(pack: Any, sheet: Any, params: Mapping[str, Any], evaluator: Any) -> Any:
    """The course's outputs on the recorded final sheet (state, the course's aggregates)."""
    from engine.evaluate.facts import add_derived
    from engine.evaluate.run import PackResult, run_plan
    course = pack.manifest.course
    if course is None:
        raise ValueError(f"pack {pack.id} has no course")
    add_derived(sheet, list(course.derived), params)
    rules, rows, _, decisions = run_plan(pack, pack.course_plan, "course", sheet, params, evaluator)
    return PackResult(pack.identity(), dict(params), {r.id: rules[r.id] for r in course.rules}, rows,
                      {d.id: decisions[d.id] for d in course.decisions}, evaluator.name,
                      row_keys=pack.course_plan.row_keys, sheet=sheet, scope="course", definition=pack)


def _compare(pid: str, ev: Mapping[str, Any], res: Any, disagreements: list[str]) -> list[dict[str, Any]]:
    """The recomputed trace (values read, missing facts), each recorded outcome checked against it."""
    recorded = {rid: k for k in OUTCOMES for rid in ev.get(k) or ()}
    every = {**res.rows, **{("transition:" + k): v for k, v in res.transitions.items()}, **res.rules}
    trace = res.trace()
    shown = {t["rule"] for t in trace}
    for rid, want in recorded.items():
        rr = res.rules.get(rid) or res.rows.get(rid) or res.transitions.get(rid) or every.get(rid)
        if rr is None:
            disagreements.append(f"{pid} {rid}: recorded {want}, but the pack has no such rule, row or transition")
            continue
        got = rr.outcome.value
        if got != want:
            disagreements.append(f"{pid} {rid}: recorded {want}, recomputed {got}")
        if rid not in shown:   # e.g. a row recorded met that the recomputation finds not met
            t = {"pack": pid, "rule": rid, "outcome": got, "inputs": rr.inputs}
            if rr.missing:
                t["missing"] = rr.missing
            trace.append(t)
    for t in trace:
        want = recorded.get(t["rule"])
        if want is not None and want != t["outcome"]:
            t["recorded"] = want
    return trace


def explain_lines(e: Explanation) -> list[str]:
    """`audit explain` as text."""
    head = [f"decision   {e.decision_id}", f"subject    {e.subject_id}   use case {e.use_case}   item {e.item or '-'}"]
    for p in e.packs:
        head.append(f"pack       {p.get('id')} {p.get('version')} (sha256 {str(p.get('sha256'))[:12]})"
                    + (f" from the {p['source']}" if p.get("source") else " NOT AVAILABLE"))
    if e.format == "full":
        head.append("record     full format: the values read are shown as recorded (not recomputed)")
    elif e.recomputed:
        verdict = "agrees with the record" if e.agrees else f"DISAGREES with the record ({len(e.disagreements)})"
        who = {"durable": "durable-rules", "reference": "the reference evaluator"}.get(e.evaluator or "", e.evaluator)
        head.append(f"recomputed with {who} from the record's facts: {verdict}")
    for p in e.problems:
        head.append(f"cannot recompute: {p}")
    for d in e.disagreements:
        head.append(f"  disagreement: {d}")
    lines = []
    for t in e.trace:
        vals = ", ".join(f"{k}={_short(v)}" for k, v in (t.get("inputs") or {}).items())
        miss = f"  missing: {', '.join(t['missing'])}" if t.get("missing") else ""
        rec = f"  (recorded {t['recorded']})" if t.get("recorded") else ""
        lines.append(f"  {t.get('pack', '')}  {t['rule']}: {t['outcome']}{rec}"
                     + (f"  [{vals}]" if vals else "") + miss)
    return head + (["rules, rows and transitions:"] + lines if lines else [])


def _short(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)


__all__ = ["Explanation", "explain", "explain_lines", "pinned_pack", "replay_sheet", "run_parameters", "fact_types"]
