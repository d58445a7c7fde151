"""Cohort runs as recorded in the audit trail: who ran what, when, why, with which packs and
parameters, and how far it got (read from each run's start and complete records)."""
from __future__ import annotations

import json
from typing import Any

from engine.adjudicate.cohort import RUN_SUBJECT, RUN_USE_CASE
from engine.errors import InputError


def list_runs(store: Any) -> list[dict[str, Any]]:
    """Every run, oldest first: id, start time, actor, reason, profiles, parameters, packs,
    subject counts and whether it completed."""
    runs: dict[str, dict[str, Any]] = {}
    for rec in store.iter(subject_id=RUN_SUBJECT, use_case=RUN_USE_CASE):
        if rec.item == "start":
            o = rec.outcome
            runs[rec.run_id] = {
                "run_id": rec.run_id, "started": rec.created_at, "actor": rec.actor, "reason": rec.reason,
                "paths": o.get("path") or [], "profiles": o.get("profiles") or [], "params": o.get("params") or {},
                "ctcae": o.get("ctcae"), "packs": o.get("packs"), "inputs": o.get("subjects"),
                "status": "unfinished", "subjects": None, "decisions": None, "failed": [], "completed": None,
                "start_seq": rec.seq}
        elif rec.item == "complete" and rec.run_id in runs:
            o = rec.outcome
            runs[rec.run_id].update(status="complete", completed=rec.created_at, subjects=o.get("subjects"),
                                    decisions=o.get("decisions"), failed=o.get("failed") or [],
                                    skipped=o.get("skipped"))
    return list(runs.values())


def run_info(store: Any, run_id: str) -> dict[str, Any]:
    """One run's record (see list_runs); its packs from the run's decisions when the start record
    predates recording them. InputError when the run is unknown."""
    for r in list_runs(store):
        if r["run_id"] == run_id:
            if r["packs"] is None:
                r["packs"] = packs_used(store, run_id)
            return r
    known = [r["run_id"] for r in list_runs(store)][-5:]
    raise InputError(f"no cohort run {run_id} in the audit store", field="RUN",
                     expected="a run id from `adjudicator cohort runs`" + (f", e.g. {known[-1]}" if known else ""))


def resolve_run(store: Any, ref: str | None, *, default_latest: bool = True) -> str | None:
    """A run id from an id, a unique prefix or suffix, or 'latest' (None -> latest if allowed)."""
    runs = [r["run_id"] for r in list_runs(store)]
    if ref is None or ref == "latest":
        if not default_latest and ref is None:
            return None
        done = [r["run_id"] for r in list_runs(store) if r["status"] == "complete"]
        if not done:
            raise InputError("no completed cohort run in the audit store", expected="a RUN id")
        return done[-1]
    if ref in runs:
        return ref
    hits = [r for r in runs if r.startswith(ref) or r.endswith(ref)]
    if len(hits) == 1:
        return hits[0]
    raise InputError(f"no cohort run {ref}" if not hits else f"run {ref} is ambiguous ({', '.join(hits[:4])})",
                     field="RUN", expected="a run id from `adjudicator cohort runs`")


def packs_used(store: Any, run_id: str) -> list[dict[str, str]]:
    """The distinct pack identities recorded in a run's decisions (one pass over the run)."""
    seen: dict[str, dict[str, str]] = {}
    for row in store.iter_rows(run_id=run_id):
        if row["subject_id"] == RUN_SUBJECT or row["packs"] in seen:
            continue
        for p in json.loads(row["packs"]):
            seen.setdefault(json.dumps(p, sort_keys=True), p)
        seen.setdefault(row["packs"], {})
    return sorted((p for k, p in seen.items() if p and k.startswith("{")), key=lambda p: (p["id"], p["version"]))


def packs_text(packs: list[dict[str, str]] | None) -> str:
    if packs is None:
        return "(not recorded)"
    return ", ".join(f"{p['id']} {p['version']}" for p in packs)


def packs_fingerprint(packs: list[dict[str, str]] | None) -> str:
    """`13 packs, set 3f2a1c9b`: the same set of pack contents gives the same fingerprint."""
    if packs is None:
        return "(not recorded)"
    import hashlib
    digest = hashlib.sha256("".join(sorted(p.get("sha256", "") for p in packs)).encode()).hexdigest()[:8]
    return f"{len(packs)} packs, set {digest}"


def params_text(params: dict[str, Any] | None) -> str:
    return ", ".join(f"{pack}.{k}={v}" for pack, kv in (params or {}).items() for k, v in kv.items()) or "defaults"


def render_runs(runs: list[dict[str, Any]], console: Any = None) -> None:
    from rich.table import Table

    from engine.report.tables import console as default_console
    console = console or default_console
    t = Table(title=f"Cohort runs ({len(runs)})", show_lines=True,
              caption="packs: the set's fingerprint (the same contents, the same set); the versions with --json")
    for c in ("run", "started (UTC)", "actor", "reason", "profiles", "parameters", "packs", "subjects", "status"):
        t.add_column(c, overflow="fold", no_wrap=c in ("run", "started (UTC)"))
    for r in runs:
        subjects = f"{r['subjects']}" if r["subjects"] is not None else f"{r['inputs']} planned"
        if r["failed"]:
            subjects += f", {len(r['failed'])} failed"
        t.add_row(r["run_id"], r["started"][:19], r["actor"], r["reason"] or "", ", ".join(r["profiles"]),
                  params_text(r["params"]), packs_fingerprint(r["packs"]), subjects, r["status"])
    console.print(t)


def run_protocol(store: Any, run_id: str, rules_dir: Any = None) -> Any:
    """The protocol of the trial a run adjudicated (recorded in its start record; a run from
    before trials were recorded: the rules folder's default trial)."""
    from engine.adjudicate.cohort import run_start
    from engine.rules.protocol import load_protocol
    start = run_start(store, run_id) or {}
    return load_protocol(rules_dir, start.get("trial"))
