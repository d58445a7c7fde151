"""Safety output: a subject's graded labs and events, a graded lab listing, the AE table."""
from __future__ import annotations

import csv
import io
import json
from typing import Any, Iterable

from engine.safetext import csv_cell


def subject_lines(doc: dict[str, Any], version: str) -> list[str]:
    """Plain lines for `adjudicator ae`: one per lab or event, then TLS and dosing advisories."""
    from engine.adjudicate.safety import related_of
    out = [f"subject {doc['subject_id']}  CTCAE v{version}  policy {doc['parameters']['qualifier_policy']}"]
    for it in doc["items"]:
        g = "-" if it["grade"] is None else it["grade"]
        te = {True: "TE", False: "not TE", None: "TE?"}[it["treatment_emergent"]]
        rel = ""
        if it["attribution"]:
            rel = {True: " related", False: " not related", None: " related?"}[related_of(it)]
            if it["attribution"].get("adjudicated"):
                rel += " (committee)"
        out.append(f"  {it['id']:<6} {it['term']:<38} G{g:<2} {it['source']:<9} {te}{rel}: {it['reason']}")
    for t in doc["tls"]:
        at_least = f" (at least {t['at_least']} on {t['at_least_day']})" if t.get("at_least") else ""
        day = f", day {t['day']}" if t.get("day") else ""
        out.append(f"  TLS {t.get('definition', '')} cycle {t['cycle']} (start {t['start']}{day}): "
                   f"{t['category'] or 'INDETERMINATE'}{at_least}"
                   + (f", missing {', '.join(t['missing'])}" if t["missing"] else ""))
    for d in doc["dosing"]:
        msgs = "; ".join(a["message"] for a in d["advisories"]) or "no advisory"
        open_ = "; ".join(f"{u['rule']} (missing {', '.join(u['missing'][:3])}{', ...' if len(u['missing']) > 3 else ''})"
                          for u in d.get("not_checked", []))
        out.append(f"  {d['drug']} cycle {d['cycle']}: {msgs}" + (f"; not checked: {open_}" if open_ else ""))
    return out


def listing_text(graded: Iterable[dict[str, Any]], as_json: bool) -> str:
    """A graded lab listing as CSV (input columns passed through, then grade and reason) or JSON."""
    graded = list(graded)
    if as_json:
        return json.dumps(graded, indent=2, default=str) + "\n"
    buf = io.StringIO()
    fields = list(dict.fromkeys(k for r in graded for k in r))
    w = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    w.writeheader()
    w.writerows({k: csv_cell(v) for k, v in r.items()} for r in graded)  # no spreadsheet formulas
    return buf.getvalue()


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The paper's AE table layout: any grade and grade >= 3, n (%), and where grade >= 3 came from
    (adverse-event records, graded labs, or both)."""
    out = [f"{'Adverse event':<36} {'Any grade, n (%)':>18} {'Grade >= 3, n (%)':>18}   "
           f"{'>= 3 from: events / labs / both':<32}(N = {summary['subjects']})"]
    for r in summary["table"]:
        by = r["grade_3_plus_by_source"]
        src = f"{by['event']} / {by['lab']} / {by['both']}" if r["grade_3_plus_n"] else ""
        unk = f"  emergence unknown: {r['emergence_unknown_n']}" if r.get("emergence_unknown_n") else ""
        out.append(f"{r['label']:<36} {str(r['any_grade_n']) + ' (' + str(r['any_grade_pct']) + ')':>18} "
                   f"{str(r['grade_3_plus_n']) + ' (' + str(r['grade_3_plus_pct']) + ')':>18}   {src:<32}{unk}".rstrip())
    out.append(summary.get("note", ""))
    return out
