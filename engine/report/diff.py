"""Which decisions changed between two adjudications of a cohort, and which rules changed them.

For every decision of run B: the earlier decision of the same (subject, use case, item) (from a
named run A, or else the latest one recorded before B); if the outcome differs, old -> new and the
rules whose outcome differs (from the traces). Streamed: one lookup per decision, nothing held.
"""
from __future__ import annotations

import json
from typing import Any, Iterator

from engine.adjudicate.cohort import RUN_SUBJECT


def _trace_map(trace_json: str) -> dict[str, str]:
    return {f"{t.get('pack')}:{t.get('rule')}": t.get("outcome") for t in json.loads(trace_json or "[]")}


def _earlier(store: Any, row: dict[str, Any], run_a: str | None) -> dict[str, Any] | None:
    if run_a is not None:
        return next(store.iter_rows(subject_id=row["subject_id"], use_case=row["use_case"], run_id=run_a,
                                    item=row["item"], last=1), None) if row["item"] is not None else next(
            (r for r in store.iter_rows(subject_id=row["subject_id"], use_case=row["use_case"], run_id=run_a)
             if r["item"] is None), None)
    old = store.latest(row["subject_id"], row["use_case"], row["item"], before_run=row["run_id"])
    if old is None or old.seq > row["seq"]:
        return None
    return {"outcome": json.dumps(old.outcome, sort_keys=True), "trace": json.dumps(old.trace),
            "run_id": old.run_id, "decision_id": old.decision_id}


def iter_changes(store: Any, run_b: str, run_a: str | None = None) -> Iterator[dict[str, Any]]:
    """Every changed decision of run B (vs run A, or vs the latest earlier adjudication)."""
    for row in store.iter_rows(run_id=run_b):
        if row["subject_id"] == RUN_SUBJECT:
            continue
        old = _earlier(store, row, run_a)
        if old is None:
            continue
        new_o, old_o = json.loads(row["outcome"]), json.loads(old["outcome"])
        if new_o == old_o:
            continue
        before, after = _trace_map(old["trace"]), _trace_map(row["trace"])
        rules = [{"rule": k, "old": before.get(k), "new": after.get(k)}
                 for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        yield {"subject_id": row["subject_id"], "use_case": row["use_case"], "item": row["item"],
               "old_run": old.get("run_id"), "new_run": run_b, "old": _short(old_o), "new": _short(new_o),
               "old_outcome": old_o, "new_outcome": new_o,
               "changed_fields": _changed(old_o, new_o), "rules": rules}


def _short(o: dict[str, Any]) -> Any:
    for key in ("category", "verdict", "grade"):
        if key in o:
            return o[key]
    return o


def _changed(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted paths whose values differ (the course outcome is nested)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b)):
            out += _changed(a.get(k), b.get(k), f"{prefix}{k}.")
        return out
    return [prefix.rstrip(".")] if a != b else []


def render(changes: list[dict[str, Any]], console: Any = None, limit: int = 200) -> None:
    """A readable table of changed decisions: what changed (old -> new) and the rules behind it."""
    from rich.table import Table
    from engine.report.tables import console as default_console
    console = console or default_console
    t = Table(title=f"Changed decisions: {len(changes)}", show_lines=True)
    for col in ("subject", "use case", "item", "changed (old -> new)", "rules whose outcome changed"):
        t.add_column(col)
    for c in changes[:limit]:
        old, new = c["old"], c["new"]
        if isinstance(old, dict) or old == new:
            old_full, new_full = c.get("old_outcome", old), c.get("new_outcome", new)
            what = "\n".join(f"{f}: {_get(old_full, f)} -> {_get(new_full, f)}" for f in c["changed_fields"][:6])
        else:
            what = f"{old} -> {new}"
        rules = "\n".join(f"{r['rule'].split(':', 1)[-1]}: {r['old'] or '-'} -> {r['new'] or '-'}"
                          for r in c["rules"][:8])
        t.add_row(c["subject_id"], c["use_case"], c["item"] or "", what, rules)
    console.print(t)
    if len(changes) > limit:
        console.print(f"... {len(changes) - limit} more (use --json)")


def _get(d: Any, dotted: str) -> Any:
    for k in dotted.split("."):
        d = d.get(k) if isinstance(d, dict) else None
    return d
