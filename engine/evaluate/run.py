"""Evaluate a pack (and the packs it depends on) over a fact sheet: the one entry point that
use cases call. Strata in plan order; decisions as soon as their rows are known; outputs of a
decision become facts for later strata and for dependent packs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol

from engine.errors import EvaluationError, InputError
from engine.rules.load import Pack, Registry
from engine.evaluate.decide import DecisionResult, decide
from engine.evaluate.facts import FactSheet, add_derived
from engine.evaluate.logic import FALSE, OUTCOME_TEXT, TRUE, Outcome, Tri
from engine.evaluate.plan import Plan
from engine.evaluate.reference import evaluate_condition
from engine.evaluate.values import normalize, to_json


class Session(Protocol):
    def evaluate(self, stratum: int, sheet: FactSheet, results: Mapping[str, Tri]) -> dict[str, Outcome]: ...
    def close(self) -> None: ...


class Evaluator(Protocol):
    name: str

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
    row_keys: dict[str, tuple[str, ...]] = field(default_factory=dict)  # decision id -> row keys

    def trace(self) -> list[dict[str, Any]]:
        """Every rule's outcome with the values it read, plus the decision-table rows that
        decided (met) or held a decision open (unknown), as recorded in the audit trail."""
        rows = list(self.rules.values())
        for d in self.decisions.values():
            keys = self.row_keys.get(d.id, ())
            for j in d.rows_met + d.rows_unknown:
                r = self.rows.get(keys[j] if j < len(keys) else f"{d.id}#{j}")
                if r is not None:
                    rows.append(r)
        pid = self.pack["id"]
        out = []
        for r in rows:  # RuleResult.to_dict with the pack first, built once (runs ~200x per subject)
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
    decl = {p.name: p for p in pack.manifest.parameters}
    for name, value in (overrides or {}).items():
        if name not in decl:
            raise InputError(f"pack {pack.id} has no parameter {name!r}",
                             expected="one of " + ", ".join(sorted(decl)) if decl else "no parameters")
        p = decl[name]
        if isinstance(value, str) and not isinstance(p.value, str):
            value = _coerce(value, p.value, pack.id, name)
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
                  evaluator: Evaluator | None = None) -> tuple[PackResult, FactSheet]:
    """Evaluate one pack; returns its result and the sheet extended with its decision outputs."""
    evaluator = evaluator or default_evaluator()
    params = resolve_params(pack, params)
    sheet = sheet.copy()
    add_derived(sheet, pack.manifest.derived, params)
    plan: Plan = pack.plan
    results: dict[str, Tri] = {}
    rule_results: dict[str, RuleResult] = {}
    row_results: dict[str, RuleResult] = {}
    dec_results: dict[str, DecisionResult] = {}
    as_json: dict[str, Any] = {}
    session = evaluator.session(plan, pack.identity(), params, pack.file)
    try:
        for k, stratum in enumerate(plan.strata):
            fired = session.evaluate(k, sheet, results)
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
                rr = RuleResult(ev.key, tri.outcome, missing, _inputs(ev, sheet.values, results, as_json))
                (row_results if ev.decision else rule_results)[ev.key] = rr
            for dec in plan.decisions_after[k]:
                res = decide(dec, [results[k] for k in dec.row_keys])
                dec_results[dec.id] = res
                _publish(pack.id, dec.id, res, sheet)
    finally:
        session.close()
    ordered = {r: rule_results[r] for r in pack.rule_ids}
    ordered_dec = {d: dec_results[d] for d in pack.decision_ids}
    return PackResult(pack.identity(), params, ordered, row_results, ordered_dec, evaluator.name,
                      plan.row_keys), sheet


def _publish(pack_id: str, dec_id: str, res: DecisionResult, sheet: FactSheet) -> None:
    """Decision outputs become facts; an undecided output is missing, because of the decision's missing facts."""
    if res.hit_policy == "collect":
        return
    base = f"{pack_id}.{dec_id}"
    shapes = [c for c in res.candidates if c is not None]
    if shapes and all(isinstance(c, dict) for c in shapes):
        keys = set().union(*shapes)
        for k in keys:
            name = f"{base}.{k}"
            if k in res.fields and res.fields[k] is not None:
                sheet.values[name] = _norm(res.fields[k])
            else:
                sheet.missing_because[name] = res.missing or [base]
        return
    if res.status == "decided" and res.value is not None:
        sheet.values[base] = _norm(res.value)
    else:
        sheet.missing_because[base] = res.missing or [base]


_norm = normalize


def evaluate_chain(registry: Registry, pack_id: str, sheet: FactSheet,
                   params: Mapping[str, Mapping[str, Any]] | None = None,
                   evaluator: Evaluator | None = None) -> tuple[dict[str, PackResult], FactSheet]:
    """Evaluate a pack after everything it depends on; results by pack id, dependencies first."""
    evaluator = evaluator or default_evaluator()
    out: dict[str, PackResult] = {}
    for pack in registry.chain(pack_id):
        out[pack.id], sheet = evaluate_pack(pack, sheet, (params or {}).get(pack.id), evaluator)
    return out, sheet
