"""Which decisions changed between two adjudications of a cohort, which rules changed them, and
where the machine and the committee now part.

For every machine decision of run B: the decision of the same (subject, use case, item) in a
chosen baseline run A (or else the latest recorded before B). A row is reported when the
machine's outcome changed, or when a committee decision is in force for the key and the machine's
new outcome differs from it ("machine now disagrees with the committee": the committee's decision
stays in force until it is revisited) or newly agrees with it. Rules are named by id and title.
Streamed: one lookup per decision, nothing held but the few overrides.
"""
from __future__ import annotations

import csv
import json
from typing import Any, Iterator, TextIO

from engine.adjudicate.cohort import RUN_SUBJECT
from engine.adjudicate.committee import Overrides, disagreement, key_of, role_of, short

CHANGED = "changed"
DISAGREES = "machine now disagrees with the committee"
STILL_DISAGREES = "machine still disagrees with the committee"
AGREES = "machine now agrees with the committee"


def _trace_map(trace_json: str) -> dict[str, str]:
    from engine.audit.compact import trace_rows
    return {f"{t.get('pack')}:{t.get('rule')}": t.get("outcome") for t in trace_rows(json.loads(trace_json or "[]"))}


def _earlier(store: Any, row: dict[str, Any], run_a: str | None) -> dict[str, Any] | None:
    """The machine decision of the same key in run A, or else the latest machine decision before B."""
    if run_a is not None:
        for r in store.iter_rows(subject_id=row["subject_id"], use_case=row["use_case"], run_id=run_a,
                                 item=row["item"]):
            if r["item"] == row["item"] and r["supersedes"] is None:
                return r
        return None
    old = store.latest(row["subject_id"], row["use_case"], row["item"], before_run=row["run_id"])
    while old is not None and old.supersedes is not None:   # the machine's own earlier decision
        old = store.get(old.supersedes)
    if old is None or old.seq > row["seq"]:
        return None
    return {"outcome": json.dumps(old.outcome, sort_keys=True), "trace": json.dumps(old.trace),
            "run_id": old.run_id, "decision_id": old.decision_id}


def iter_changes(store: Any, run_b: str, run_a: str | None = None, *, overrides: Overrides | None = None,
                 titles: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """Every reportable decision of run B (vs baseline run A, or vs the latest earlier adjudication)."""
    overrides = overrides if overrides is not None else Overrides(store)
    titles = titles or {}
    for row in store.iter_rows(run_id=run_b):
        if row["subject_id"] == RUN_SUBJECT or row["supersedes"] is not None:
            continue
        old = _earlier(store, row, run_a)
        committee = overrides.get(key_of(row))
        new_o = json.loads(row["outcome"])
        old_o = json.loads(old["outcome"]) if old is not None else None
        changed = old is not None and new_o != old_o
        status = CHANGED if changed else None
        cmt = None
        if committee is not None:
            c_o = json.loads(committee["outcome"])
            now = disagreement(new_o, c_o)
            before = disagreement(old_o, c_o) if old_o is not None else now
            if now:
                status = DISAGREES if (changed or not before) else STILL_DISAGREES
            elif before:
                status = AGREES
            cmt = {"decision_id": committee["decision_id"], "outcome": short(c_o), "outcome_full": c_o,
                   "reviewer": committee["reviewer"], "role": role_of(committee), "reason": committee["reason"],
                   "disagrees_on": now}
        if status is None:
            continue
        rules: list[dict[str, Any]] = []
        if old is not None and changed:
            before_t, after_t = _trace_map(old["trace"]), _trace_map(row["trace"])
            rules = [{"rule": k, "title": titles.get(k, ""), "old": before_t.get(k), "new": after_t.get(k)}
                     for k in sorted(set(before_t) | set(after_t)) if before_t.get(k) != after_t.get(k)]
        yield {"subject_id": row["subject_id"], "use_case": row["use_case"], "item": row["item"], "status": status,
               "old_run": old.get("run_id") if old else None, "new_run": run_b,
               "old": short(old_o) if old_o is not None else None, "new": short(new_o),
               "old_outcome": old_o, "new_outcome": new_o,
               "old_decision_id": old.get("decision_id") if old else None, "new_decision_id": row["decision_id"],
               "changed_fields": _changed(old_o, new_o) if changed else [], "rules": rules, "committee": cmt}


def _changed(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths whose values differ (the course outcome is nested)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _changed(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [prefix.rstrip(".")] if a != b else []


def _get(d: Any, dotted: str) -> Any:
    for k in dotted.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d


def _what(c: dict[str, Any]) -> str:
    old, new = c["old"], c["new"]
    if not c["changed_fields"]:
        return f"{new} (unchanged)" if not isinstance(new, dict) else "(unchanged)"
    if isinstance(old, dict) or old == new:
        return "\n".join(f"{f}: {_get(c['old_outcome'], f)} -> {_get(c['new_outcome'], f)}"
                         for f in c["changed_fields"][:6])
    return f"{old} -> {new}"


def _committee_text(c: dict[str, Any]) -> str:
    k = c["committee"]
    if not k:
        return ""
    head = f"{c['status']}: committee decision {k['decision_id'][:12]} in force ({k['reviewer']}, {k['role'] or '-'})"
    if not isinstance(k["outcome"], dict):
        head += f": {k['outcome']}"
    lines = [f"{f}: machine {_get(c['new_outcome'], f)}, committee {_get(k['outcome_full'], f)}"
             for f in k["disagrees_on"][:6]]
    return "\n".join([head] + lines + ([f"... {len(k['disagrees_on']) - 6} more"] if len(k["disagrees_on"]) > 6 else []))


def _rule_text(r: dict[str, Any]) -> str:
    name = r["rule"].split(":", 1)[-1]
    return f"{name}{' (' + r['title'] + ')' if r.get('title') else ''}: {r['old'] or '-'} -> {r['new'] or '-'}"


def header_lines(run_a: dict[str, Any] | None, run_b: dict[str, Any]) -> list[str]:
    """Both runs' identity, parameters and pack versions, and what differs between them."""
    from engine.report.runs import packs_text, params_text
    out = []
    for label, r in (("baseline", run_a), ("run", run_b)):
        if r is None:
            out.append(f"{label}: the latest earlier adjudication of each decision")
            continue
        out.append(f"{label} {r['run_id']}  started {r['started'][:19]} by {r['actor']}"
                   + (f"  ({r['reason']})" if r.get("reason") else ""))
        out.append(f"    profiles {', '.join(r['profiles'])}; parameters {params_text(r['params'])}")
        out.append(f"    packs {packs_text(r['packs'])}")
    if run_a is not None:
        pa = {p["id"]: p for p in run_a.get("packs") or []}
        pb = {p["id"]: p for p in run_b.get("packs") or []}
        moved = [f"{k} {pa[k]['version']} -> {pb[k]['version']}" + ("" if pa[k]["version"] != pb[k]["version"]
                                                                      else " (same version, content changed)")
                 for k in sorted(set(pa) & set(pb)) if pa[k].get("sha256") != pb[k].get("sha256")]
        if moved:
            out.append("packs changed: " + "; ".join(moved))
        if run_a.get("params") != run_b.get("params"):
            out.append(f"parameters changed: {params_text(run_a.get('params'))} -> {params_text(run_b.get('params'))}")
    return out


def render(changes: list[dict[str, Any]], console: Any = None, limit: int = 200,
           header: list[str] | None = None) -> None:
    """A readable table: what changed (old -> new), the rules behind it, and the committee's view."""
    from rich.table import Table
    from engine.report.tables import console as default_console
    console = console or default_console
    for line in header or []:
        console.print(line, highlight=False)
    n_changed = sum(1 for c in changes if c["changed_fields"])
    n_cmt = sum(1 for c in changes if c["committee"])
    t = Table(title=f"Changed decisions: {n_changed}" + (f"; committee decisions in force among them or "
                                                           f"disputed by the machine: {n_cmt}" if n_cmt else ""),
              show_lines=True)
    for col in ("subject", "use case", "item", "changed (old -> new)", "rules whose outcome changed", "committee"):
        t.add_column(col)
    for c in changes[:limit]:
        rules = "\n".join(_rule_text(r) for r in c["rules"][:8]) + (
            f"\n... {len(c['rules']) - 8} more" if len(c["rules"]) > 8 else "")
        t.add_row(c["subject_id"], c["use_case"], c["item"] or "", _what(c), rules, _committee_text(c))
    console.print(t)
    if len(changes) > limit:
        console.print(f"... {len(changes) - limit} more (use --json or --csv)")


CSV_COLUMNS = ("subject_id", "use_case", "item", "status", "old", "new", "changed_fields", "rules",
               "committee", "committee_reviewer", "committee_role", "committee_disagrees_on",
               "old_run", "new_run", "old_decision_id", "new_decision_id", "committee_decision_id")


def write_csv(changes: list[dict[str, Any]], out: TextIO) -> int:
    """One row per reported decision; a nested outcome (the course) as `field=value` of the fields
    that changed or that the committee decided otherwise; rules as `id (title): old -> new`."""
    from engine.report.summary import _cell
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for c in changes:
        k = c["committee"] or {}
        fields = c["changed_fields"] or k.get("disagrees_on") or []

        def cell(value: Any, full: Any) -> Any:
            if not isinstance(value, dict):
                return value
            return "; ".join(f"{f}={_get(full, f)}" for f in fields)
        row = [c["subject_id"], c["use_case"], c["item"], c["status"], cell(c["old"], c["old_outcome"]),
               cell(c["new"], c["new_outcome"]), " ".join(c["changed_fields"]),
               "; ".join(_rule_text(r) for r in c["rules"]),
               cell(k.get("outcome"), k.get("outcome_full")), k.get("reviewer"), k.get("role"),
               " ".join(k.get("disagrees_on") or []),
               c["old_run"], c["new_run"], c["old_decision_id"], c["new_decision_id"], k.get("decision_id")]
        w.writerow([_cell(v) for v in row])
    return len(changes)
