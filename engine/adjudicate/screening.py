"""Screening a candidate: subject record -> disease status, eligibility verdict, ELN risk,
advisories, and one audit record (use case `screen`, item `eligibility`).

The verdict, the criteria and their thresholds are the packs' (the trial protocol's screening
packs: its disease status, eligibility and risk packs); this module only evaluates them and turns
rule outcomes into the candidate's side (an exclusion that is met is a *fail*).
"""

from pathlib import Path
from typing import Any, Iterable, Literal, Mapping

from pydantic import BaseModel, PrivateAttr

from engine.adjudicate.common import parse_params as common_parse_params, audit_entry, input_snapshot
from engine.errors import InputError
from engine.evaluate.facts import FactSheet, check_types
from engine.evaluate.logic import Outcome
from engine.evaluate.run import Evaluator, PackResult, RuleResult, evaluate_chain, evaluate_pack
from engine.facts.derive import declared_facts, record_fields as fields_read
from engine.facts.screening import finding_units, screening_facts, unread_warnings
from engine.record import SubjectRecord
from engine.rules.load import Registry

CRITERION_KINDS = ("inclusion", "exclusion")


class Criterion(BaseModel):
    id: str
    kind: Literal["inclusion", "exclusion"]
    outcome: Literal["pass", "fail", "unknown"]
    basis: str
    title: str
    why: str
    missing: list[str]
    inputs: dict[str, Any]
    text: str


class Advisory(BaseModel):
    id: str
    status: Literal["applies", "cannot_check"]
    message: str
    missing: list[str]
    inputs: dict[str, Any]


class ScreeningResult(BaseModel):
    """The `adjudicator screen --json` document."""
    subject_id: str
    verdict: Literal["ELIGIBLE", "INELIGIBLE", "INDETERMINATE"]
    decided_by: list[str]
    missing: list[str]
    record_fields: dict[str, list[str]] = {}   # a missing fact -> the record fields its `from:` reads
    criteria: list[Criterion]
    disease_status: dict[str, Any]
    eln_risk: dict[str, Any]
    advisories: list[Advisory]
    warnings: list[str]
    pack: dict[str, str]
    packs: list[dict[str, str]]
    parameters: dict[str, dict[str, Any]]
    operational_parameters: dict[str, list[str]]
    evaluator: str
    decision_id: str | None = None
    _audit: dict[str, Any] = PrivateAttr(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def trace(self) -> list[dict[str, Any]]:
        """Every rule's and decision row's outcome in the three packs, as the audit record holds it."""
        return [t for r in self._audit.get("results", []) for t in r.trace()]


# --- parameters ---------------------------------------------------------------------------------

def screening_packs(registry: Registry) -> tuple[str, str | None, str | None]:
    """(eligibility, disease status, genetic risk) pack ids of the trial in force (its protocol);
    the last two may be None (a trial of untreated disease has no disease-status pack)."""
    proto = registry.trial()
    return proto.role("eligibility"), proto.optional_role("disease_status"), proto.optional_role("genetic_risk")


def parse_params(pairs: Iterable[str], registry: Registry) -> dict[str, dict[str, str]]:
    """`PACK.NAME=VALUE` with PACK one of the screening packs."""
    return common_parse_params(pairs, [p for p in screening_packs(registry) if p])


# --- screening ------------------------------------------------------------------------------------

def screen(record: SubjectRecord, registry: Registry, params: Mapping[str, Mapping[str, Any]] | None = None,
           evaluator: Evaluator | None = None, source_file: str | Path = "<record>") -> ScreeningResult:
    """Screen one candidate (no audit write; see `screen_and_record`)."""
    params = params or {}
    elig_id, status_id, risk_id = screening_packs(registry)
    pack_ids = [p for p in (status_id, elig_id, risk_id) if p]
    for pid in params:
        if pid not in pack_ids:
            raise InputError(f"unknown pack {pid!r} in parameters", field="--param", expected=", ".join(pack_ids))
    packs = {pid: registry.get(pid) for pid in pack_ids}
    decls = declared_facts(packs.values())
    sheet = screening_facts(record, source_file, decls)
    base = sheet.copy()
    for pack in packs.values():
        _check(sheet, pack.manifest.facts, str(source_file), record.subject_id)
        finding_units(record, source_file, pack.manifest.facts)
    from engine.facts.timeline import subject_timeline   # the history the disease-status course folds over
    timeline = subject_timeline(record, source_file)
    chain, _ = evaluate_chain(registry, elig_id, sheet, params, evaluator, timeline)
    risk = evaluate_pack(packs[risk_id], sheet, params.get(risk_id), evaluator)[0] if risk_id else None
    status_res, elig = chain.get(status_id) if status_id else None, chain[elig_id]
    rules = {r.id: r for r in packs[elig_id].manifest.rules}

    criteria = [_criterion(rules[rid], res, elig.rules) for rid, res in elig.rules.items()
                if rules[rid].kind in CRITERION_KINDS]
    verdict_dec = elig.decisions["verdict"]
    if verdict_dec.status == "decided":
        verdict = verdict_dec.value["verdict"]
    else:
        verdict = "INDETERMINATE"
    if verdict == "INELIGIBLE":
        decided_by = [c.id for c in criteria if c.outcome == "fail"]
    elif verdict == "INDETERMINATE":
        decided_by = [c.id for c in criteria if c.outcome == "unknown"]
    else:
        decided_by = [c.id for c in criteria]
    missing = sorted({m for c in criteria if c.id in decided_by for m in c.missing}) if verdict == "INDETERMINATE" else []

    advisories = []
    for rid, res in elig.rules.items():
        if rules[rid].kind != "advisory" or res.outcome is Outcome.NOT_MET:
            continue
        advisories.append(Advisory(
            id=rid, status="applies" if res.outcome is Outcome.MET else "cannot_check",
            message=rules[rid].message or rules[rid].title, missing=res.missing,
            inputs=_inputs(res, elig.rules)))

    warnings = unread_warnings(record, source_file, decls, ", ".join(pack_ids))
    by_name = {d.name: d for d in decls}
    results = [r for r in (status_res, elig, risk) if r is not None]
    op = {pid: sorted(p.name for p in packs[pid].manifest.parameters if p.operational) for pid in pack_ids}
    result = ScreeningResult(
        subject_id=record.subject_id, verdict=verdict, decided_by=decided_by, missing=missing,
        record_fields={m: fields_read(m, by_name) for m in missing if fields_read(m, by_name)},
        criteria=criteria, disease_status=_disease_status(status_res) if status_res else {},
        eln_risk=_eln_risk(risk, base) if risk else {},
        advisories=advisories, warnings=warnings, pack=elig.pack, packs=[r.pack for r in results],
        parameters={r.pack["id"]: r.parameters for r in results},
        operational_parameters={k: v for k, v in op.items() if v}, evaluator=elig.evaluator)
    snapshot = input_snapshot(base)
    snapshot["events"] = timeline.snapshot(k.kind for pid in pack_ids for k in packs[pid].manifest.events)
    outcome = {"verdict": verdict, "decided_by": decided_by, "missing": missing,
               "criteria": {c.id: c.outcome for c in criteria},
               "disease_status": result.disease_status, "eln_risk": {k: result.eln_risk.get(k) for k in ("eln2017", "eln2022")},
               "advisories": [a.id for a in advisories if a.status == "applies"]}
    result._audit = {"snapshot": snapshot, "results": results, "outcome": outcome}
    return result


def screening_entry(result: ScreeningResult, actor: str, run_id: str | None = None) -> dict[str, Any]:
    """The audit entry of a screening (use case "screen", item "eligibility")."""
    a = result._audit
    return audit_entry(subject_id=result.subject_id, use_case="screen", item="eligibility",
                       snapshot=a["snapshot"], results=a["results"], outcome=a["outcome"],
                       actor=actor, run_id=run_id)


def cohort_entries(record: SubjectRecord, path: str | Path, registry: Registry,
                   params: Mapping[str, Mapping[str, Any]], evaluator: Evaluator | None,
                   actor: str) -> list[dict[str, Any]]:
    """Audit entries of one subject's screening, for batch re-adjudication (no store)."""
    mine = {k: v for k, v in params.items() if k in screening_packs(registry)}
    return [screening_entry(screen(record, registry, mine, evaluator, path), actor)]


def screen_and_record(record: SubjectRecord, registry: Registry, db: str | Path | None, actor: str,
                      params: Mapping[str, Mapping[str, Any]] | None = None,
                      evaluator: Evaluator | None = None, source_file: str | Path = "<record>",
                      run_id: str | None = None) -> ScreeningResult:
    """Screen and append the decision to the audit store; the result carries its decision id."""
    from engine.audit import AuditStore

    result = screen(record, registry, params, evaluator, source_file)
    entry = screening_entry(result, actor, run_id)
    with AuditStore.open(db) as store:
        stored = store.append([entry])
    result.decision_id = stored[0].decision_id
    return result


def run_screen(subject_file: str | Path, registry: Registry, param_args: Iterable[str],
               db: str | Path | None, actor: str, evaluator: Evaluator | None = None) -> ScreeningResult:
    """The `adjudicator screen` use case: parse parameters, load the record, screen, audit."""
    from engine.record import load_subject

    params = parse_params(param_args, registry)
    record = load_subject(subject_file)
    from engine.adjudicate.common import check_trial
    check_trial(record, registry, subject_file)
    return screen_and_record(record, registry, db, actor, params, evaluator, subject_file)


# --- helpers ----------------------------------------------------------------------------------------

def _check(sheet: FactSheet, decls: list, file: str, subject: str) -> None:
    """Out-of-range or mistyped facts are bad input: name the record field, not the fact."""
    try:
        check_types(sheet, decls, file=file, subject=subject)
    except InputError as exc:
        src = sheet.sources.get(exc.field or "", "")
        raise InputError(exc.detail, file=file, subject=subject,
                         field=src.split("#", 1)[1] if "#" in src else exc.field, expected=exc.expected) from None


def _inputs(res: RuleResult, all_rules: Mapping[str, RuleResult], depth: int = 0) -> dict[str, Any]:
    """The values a rule read, including those of the rules it refers to."""
    out: dict[str, Any] = {}
    for k, v in res.inputs.items():
        if k.startswith("rule:") and depth < 5 and k[5:] in all_rules:
            out.update(_inputs(all_rules[k[5:]], all_rules, depth + 1))
        out[k] = v
    return out


def _criterion(rule: Any, res: RuleResult, all_rules: Mapping[str, RuleResult]) -> Criterion:
    inclusion = rule.kind == "inclusion"
    if res.outcome is Outcome.UNKNOWN:
        outcome, verb = "unknown", "cannot tell"
    elif (res.outcome is Outcome.MET) == inclusion:
        outcome, verb = "pass", "meets" if inclusion else "does not have"
    else:
        outcome, verb = "fail", "does not meet" if inclusion else "has"
    inputs = _inputs(res, all_rules)
    shown = ", ".join(f"{k.rsplit('.', 1)[-1]}={_short(v)}" for k, v in inputs.items() if not k.startswith("rule:"))
    why = f"{verb}: {rule.title}" + (f" ({shown})" if shown and outcome != "unknown" else "")
    return Criterion(id=rule.id, kind=rule.kind, outcome=outcome, basis=rule.basis, title=rule.title, why=why,
                     missing=res.missing, inputs=inputs, text=rule.source.text)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _field(res: PackResult, dec: str, key: str = "value") -> tuple[Any, list[str]]:
    d = res.decisions[dec]
    if d.status == "decided":
        v = d.value
        return (v.get(key) if isinstance(v, dict) else v), []
    if key in d.fields:
        return d.fields[key], []
    return None, d.missing


def _disease_status(res: PackResult) -> dict[str, Any]:
    d = res.decisions["trial_status"]
    out: dict[str, Any] = {"trial_status": d.value if d.status == "decided" else "INDETERMINATE"}
    if d.status != "decided":
        out["candidates"] = d.candidates
    missing: dict[str, list[str]] = {}
    if d.missing:
        missing["trial_status"] = d.missing
    for key, dec in (("relapse_setting", "relapse_setting"), ("relapse_number", "relapse_number"),
                     ("eln2017_primary_refractory", "eln2017_primary_refractory"),
                     ("eln2022_refractory", "eln2022_refractory")):
        out[key], m = _field(res, dec)
        if m:
            missing[key] = m
    out["missing"] = missing
    return out


def _eln_risk(res: PackResult, sheet: FactSheet) -> dict[str, Any]:
    out: dict[str, Any] = {}
    missing: dict[str, list[str]] = {}
    candidates: dict[str, list[Any]] = {}
    for version in ("eln2017", "eln2022"):
        d = res.decisions[version]
        out[version] = d.value if d.status == "decided" else "INDETERMINATE"
        if d.status != "decided":
            candidates[version] = d.candidates
            missing[version] = d.missing
    out["primary"] = "eln2017"
    tp = sheet.values.get("genetics.timepoint")
    out["genetics_timepoint"] = tp
    at_dx = res.rules["GENETICS-AT-DIAGNOSIS"].outcome
    out["at_diagnosis"] = None if at_dx is Outcome.UNKNOWN else at_dx is Outcome.MET
    if out["at_diagnosis"] is not True:
        out["note"] = "ELN risk is defined at diagnosis (A14); these genetics are " + (
            f"from {tp}" if tp else "of unrecorded timepoint")
    out["candidates"] = candidates
    out["missing"] = missing
    return out
