"""What every use case shares: the audit entry of a decision, built one way."""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from engine.errors import InputError

from engine import __version__
from engine.evaluate.facts import FactSheet
from engine.evaluate.run import PackResult
from engine.evaluate.values import to_json


def input_snapshot(sheet: FactSheet, names: Iterable[str] | None = None) -> dict[str, Any]:
    """The facts as read (base facts only, with their sources): what the audit trail keeps."""
    keep = sorted(names) if names is not None else sorted(sheet.values)
    return {"facts": {k: to_json(sheet.values[k]) for k in keep if k in sheet.values},
            "sources": {k: sheet.sources[k] for k in keep if k in sheet.sources}}


def audit_entry(*, subject_id: str, use_case: str, item: str | None, snapshot: Mapping[str, Any],
                results: Iterable[PackResult], outcome: Mapping[str, Any], actor: str,
                reason: str | None = None, run_id: str | None = None) -> dict[str, Any]:
    """One audit record (a plain dict the audit store's batch writer accepts; the store encodes
    the input canonically and hashes it, once), in the compact format (engine.audit.compact): the
    facts the packs ended with and the rules' outcomes; `audit explain` recomputes the rest."""
    from engine.audit.compact import compact_parts
    results = list(results)
    inp, trace = compact_parts(results, snapshot)
    return {
        "subject_id": subject_id,
        "use_case": use_case,
        "item": item,
        "run_id": run_id,
        "input": inp,
        "packs": [r.pack for r in results],
        "parameters": {r.pack["id"]: r.parameters for r in results},
        "engine_version": __version__,
        "trace": trace,
        "outcome": dict(outcome),
        "actor": actor,
        "reason": reason,
    }


def parse_params(pairs: Iterable[str], packs: Iterable[str] | None = None,
                 aliases: Mapping[str, str] | None = None) -> dict[str, dict[str, str]]:
    """`--param PACK.NAME=VALUE` options -> {pack id: {name: value}}. PACK may be an alias
    (a profile name); `packs` limits which packs a command accepts. Values are typed later, by
    the pack's declaration (engine.evaluate.run.resolve_params)."""
    allowed = list(packs) if packs is not None else None
    aliases = dict(aliases or {})
    out: dict[str, dict[str, str]] = {}
    for text in pairs:
        key, sep, value = text.partition("=")
        pack, dot, name = key.rpartition(".")
        if not sep or not dot or not pack or not name:
            raise InputError(f"bad --param {text!r}", field="--param",
                             expected="PACK.NAME=VALUE (a pack id or profile, a parameter it declares)")
        pack = aliases.get(pack, pack)
        if allowed is not None and pack not in allowed:
            raise InputError(f"bad --param {text!r}: unknown pack {pack!r}", field="--param",
                             expected="one of " + ", ".join(list(aliases) + allowed))
        out.setdefault(pack, {})[name] = value
    return out


def check_trial(record: Any, registry: Any, path: Any = None) -> None:
    """A subject file of another trial is refused (exit 2, nothing written): its `trial` must be
    the protocol's id when it names one, and the drugs its doses and its adverse events'
    attribution name must be the protocol's study drugs."""
    proto = registry.trial()
    if record.trial is not None and record.trial != proto.id:
        raise InputError(f"subject file of trial {record.trial!r}, but the trial in force is {proto.id!r}",
                         file=str(path) if path else None, subject=record.subject_id, field="trial",
                         expected=f"--trial {record.trial} (or a subject of {proto.id})")
    for i, ae in enumerate(record.adverse_events):
        check_attribution_drugs(ae, proto, record.subject_id, path, f"adverse_events[{i}]")
    for i, cycle in enumerate(record.on_study.cycles if record.on_study else []):
        for drug in cycle.doses:
            _study_drug(drug, proto, record.subject_id, path, f"on_study.cycles[{i}].doses.{drug}", "doses")


def check_attribution_drugs(ae: Any, proto: Any, subject: str | None = None, path: Any = None,
                            where: str | None = None) -> None:
    """An adverse event's relatedness names only study drugs of the trial (protocol study_drugs)."""
    for drug in (ae.attribution or {}):
        _study_drug(drug, proto, subject, path, f"{where or f'adverse event {ae.id}'}.attribution.{drug}",
                    "attribution")


def _study_drug(drug: str, proto: Any, subject: str | None, path: Any, field: str, what: str) -> None:
    drugs = [d.name for d in proto.study_drugs]
    if drug not in drugs:
        raise InputError(f"{what} names {drug!r}, which is not a study drug of trial {proto.id}",
                         file=str(path) if path else None, subject=subject, field=field,
                         expected="one of " + ", ".join(drugs) + f" (study_drugs of {proto.file})")
