"""`adjudicator audit show` as a table: each record with who decided (reviewer and committee
role), why, what it superseded and whether it is the decision in force."""
from __future__ import annotations

from typing import Any, Mapping

from engine.adjudicate.committee import Overrides, key_of, role_of, short


def status_of(record: Any, overrides: Overrides) -> str:
    """'committee, in force' / 'committee, replaced by ID' / 'machine; committee decision ID in force' / 'machine'."""
    committee = overrides.get(key_of(record))
    if record.supersedes:
        if committee is not None and committee["decision_id"] == record.decision_id:
            return "committee, in force"
        later = next((r for r in overrides.chain.get(key_of(record), []) if r["supersedes"] == record.decision_id), None)
        return f"committee, replaced by {later['decision_id'][:12]}" if later else "committee, replaced"
    if committee is not None:
        return f"machine; committee decision {committee['decision_id'][:12]} in force"
    return "machine"


def print_records(records: list[Any], overrides: Overrides, by_id: Mapping[str, Any]) -> None:
    """Print audit records oldest first (the `audit show` table)."""
    from rich.table import Table
    from rich.text import Text

    from engine.audit import outcome_summary
    from engine.safetext import printable
    from engine.report.tables import console

    table = Table()
    for name in ("seq", "time (UTC)", "decision", "subject", "use case", "item", "outcome", "by",
                 "reason", "supersedes", "status"):
        table.add_column(name, no_wrap=name in ("seq", "time (UTC)", "subject", "decision"), overflow="fold")
    for r in records:
        role = role_of(r)
        by = f"{r.reviewer} ({role or 'role not recorded'}), entered by {r.actor}" if r.supersedes else r.actor
        sup = ""
        if r.supersedes:
            old = by_id.get(r.supersedes)
            sup = r.supersedes[:12] + (f": {outcome_summary(old.outcome, 40)}" if old is not None else "")
        cells = (str(r.seq), r.created_at, r.decision_id[:12], r.subject_id, r.use_case, r.item or "",
                 outcome_summary(r.outcome) if not r.supersedes else f"{short(r.outcome)!s}: {outcome_summary(r.outcome)}",
                 by, r.reason or "", sup, status_of(r, overrides))
        table.add_row(*(Text(printable(c)) for c in cells))  # text, not markup; control characters escaped
    console.print(table)


def record_lines(r: Any, overrides: Overrides, by_id: Mapping[str, Any]) -> list[str]:
    """One record, one field a line (`audit show --decision ID`)."""
    from engine.audit import canonical_json
    lines = [f"decision   {r.decision_id}  (seq {r.seq}, {r.created_at})",
             f"subject    {r.subject_id}   use case {r.use_case}   item {r.item or '-'}   run {r.run_id or '-'}",
             f"status     {status_of(r, overrides)}",
             f"outcome    {canonical_json(r.outcome)}"]
    if r.supersedes:
        old = by_id.get(r.supersedes)
        lines += [f"decided by {r.reviewer} ({role_of(r) or 'role not recorded'}), entered by {r.actor}",
                  f"reason     {r.reason or '-'}",
                  f"supersedes {r.supersedes}" + (f": {canonical_json(old.outcome)}" if old is not None else "")]
        given = ((r.input or {}).get("committee") or {}).get("given") if isinstance(r.input, dict) else None
        if given is not None:
            lines.append(f"given      {canonical_json(given)}")
        sig = getattr(r, "signature", None)
        if isinstance(sig, dict) and sig.get("public_key"):
            from engine.audit.keys import fingerprint
            lines.append(f"signed     {sig.get('alg')} key {fingerprint(sig['public_key'])} at {sig.get('signed_at')}")
    else:
        lines.append(f"actor      {r.actor}" + (f"   reason {r.reason}" if r.reason else ""))
    lines.append("packs      " + (", ".join(f"{p['id']} {p['version']} ({p['sha256'][:12]})" for p in r.packs or [])
                                  or "-"))
    from engine.audit.compact import trace_rows
    n = len(trace_rows(r.trace))
    if n:
        lines.append(f"rules      {n} outcomes recorded; every rule with the values it read: "
                     f"adjudicator audit explain {r.decision_id[:12]}")
    return lines
