"""The `adjudicator marrow` table: one row per assessment and profile, then the response course."""
from __future__ import annotations

from typing import Any

from engine.report.tables import console, print_table


def _flag(v: Any) -> str:
    return {True: "yes", False: "no", None: "?"}[v]


def _pending(r: dict[str, Any]) -> str:
    """Pending questions left open after the item, with what resolves them; resolutions made here."""
    parts = [f"pending {k.removeprefix('pending_')} since {v['since']}: {v['resolves']}"
             for k, v in (r.get("pending") or {}).items()]
    parts += [f"{x['variable'].removeprefix('pending_')} of {x['since']} {x['as']}" for x in r.get("resolved") or []]
    return "; ".join(parts)


def _cat(v: Any) -> str:
    return "INDETERMINATE" if v is None else str(v)


def reason(r: dict[str, Any], titles: dict[str, str] | None = None) -> str:
    """One line: the title of the row that decided each of the pack's tables (its id when it has no
    title), then what is missing or to review."""
    from engine.report.deciding import deciding_rows
    pack = (r.get("pack") or {}).get("id")
    parts = [(titles or {}).get(f"{p}:{k}") or k for p, k in deciding_rows(r.get("rules") or [], pack)]
    if r.get("missing"):
        parts.append("missing " + ", ".join(r["missing"]))
    if r.get("review"):
        parts.append("review: " + "; ".join(r["review"]))
    if _pending(r):
        parts.append(_pending(r))
    return "; ".join(parts)


def print_marrow(doc: dict[str, Any], titles: dict[str, str] | None = None) -> None:
    """Print the marrow report (the same document as --json, shortened), each outcome with its reason."""
    items = doc["assessments"] if "assessments" in doc else [doc]
    rows = []
    for it in items:
        for p, r in it["profiles"].items():
            cat = r["category"] + (f" ({' | '.join(r['candidates'])})" if r["candidates"] else "")
            rows.append([it["assessment_id"], it["date"], it.get("cycle"), p, cat, _flag(r["flags"]["crc"]),
                         _flag(r["flags"]["orr"]), _flag(r["flags"]["mrd_negative"]), reason(r, titles),
                         (r["decision_id"] or "")[:12]])
    print_table(["assessment", "date", "cycle", "profile", "category", "CRc", "ORR", "MRD-", "reason", "decision"],
                rows, title=f"Marrow adjudication: subject {doc['subject_id']}")
    for p, c in (doc.get("course") or {}).items():
        efs, dfs = c["efs"], c["dfs"]
        console.print(
            f"[bold]{p}[/bold]: after C1 {_cat(c['after_cycle_1']['category'])}; by end of C2 {_cat(c['by_end_of_cycle_2']['category'])} "
            f"(CRc {_flag(c['primary_endpoint_crc'])}); best {_cat(c['best_response']['category'])}; "
            f"CRc date {c['crc_date'] or '-'}; relapse {c['relapse_date'] or '-'}; "
            f"EFS {('event ' + str(efs['type']) + ' ' + str(efs['date'])) if efs['event'] else ('censored ' + str(efs['date']) if efs['event'] is False else 'unknown')}; "
            f"DFS {'-' if dfs is None else 'unknown' if dfs['event'] is None else (dfs['type'] or 'censored') + ' ' + str(dfs['date'])}"
            + "".join(f"; pending {k.removeprefix('pending_')} since {v['since']}" for k, v in (c.get("pending") or {}).items()))
