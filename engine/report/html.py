"""The committee report: one self-contained HTML file of a cohort run, read from the audit trail
with the committee's decisions in force (nothing is re-adjudicated, nothing is fetched at view
time: styles inline, figures inline SVG, no script).

Sections: the run and the trail it was built from (verified; chain head), CONSORT flow, response
tables with both confidence intervals per profile and subgroup, the committee's decisions, a
swimmer plot (the paper's Fig. 2), Kaplan-Meier curves of OS, EFS and DFS with medians and 1-year
estimates, adverse events of grade >= 3 from events and labs, and one packet per subject.
"""
from __future__ import annotations

import datetime as dt
import html
import json
from typing import Any, Iterable

from engine.adjudicate.committee import Overrides, pack_outputs, role_of, short
from engine.errors import AuditIntegrityError
from engine.report import plots, survival
from engine.report.deciding import deciding_rows
from engine.report.runs import packs_text, params_text, run_info
from engine.report.summary import _path, summarize
from engine.report.trail import Decision, SubjectTrail, iter_subjects

CSS = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,Helvetica,Arial,sans-serif;margin:0;color:#1b1b1b}
main{max-width:1180px;margin:0 auto;padding:18px 26px 60px}
h1{font-size:22px;margin:8px 0 4px}h2{font-size:18px;margin:34px 0 8px;border-bottom:2px solid #1f4e79;padding-bottom:3px}
h3{font-size:15px;margin:18px 0 6px}
table{border-collapse:collapse;margin:6px 0 12px;font-size:13px}
th,td{border:1px solid #d0d7de;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f0f4f8}td.n{text-align:right;font-variant-numeric:tabular-nums}
.meta{color:#555;font-size:12.5px}.mono{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
nav a{margin-right:12px}.note{color:#7a4b00}.ok{color:#1a7f37}.bad{color:#b42318}
.flow{display:flex;flex-direction:column;align-items:flex-start;gap:0;margin:8px 0 16px}
.row{display:flex;gap:18px;align-items:center}
.box{border:1.5px solid #1f4e79;border-radius:4px;padding:6px 10px;min-width:230px;background:#fff}
.box.side{border-color:#8c6d1f;background:#fffaf0;font-size:12.5px;min-width:300px}
.arrow{margin-left:110px;color:#1f4e79;font-size:18px;line-height:18px}
details{border:1px solid #d0d7de;border-radius:4px;margin:6px 0;padding:4px 10px}
details[open]{background:#fbfcfd}summary{cursor:pointer;font-weight:600}
.fig svg{max-width:100%;height:auto}
.tag{display:inline-block;padding:0 6px;border-radius:3px;background:#e8eef5;font-size:12px}
.tag.c{background:#fde8c8}
@media print{details{break-inside:avoid}nav{display:none}details:not([open]) > *:not(summary){display:block}}
"""


def esc(x: Any) -> str:
    return html.escape("" if x is None else str(x), quote=True)


def _table(headers: Iterable[str], rows: Iterable[Iterable[Any]], num: Iterable[int] = (), cls: str = "") -> str:
    num = set(num)
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td class=\"n\">{esc(v)}</td>" if i in num else f"<td>{v if isinstance(v, _Raw) else esc(v)}</td>"
                                    for i, v in enumerate(r)) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


class _Raw(str):
    """Text already escaped (HTML inside a table cell)."""


def _ci(p: dict[str, Any]) -> tuple[str, str, str, str]:
    if not p.get("n"):
        return (f"{p.get('k', 0)}/0", "-", "-", "-")
    unk = f" (+{p['unknown']} undecided)" if p.get("unknown") else ""
    return (f"{p['k']}/{p['n']}{unk}", f"{p['pct']:.1f}", f"{p['wilson'][0]:.1f}-{p['wilson'][1]:.1f}",
            f"{p['exact'][0]:.1f}-{p['exact'][1]:.1f}")


# --- reading the packs for titles, category order ----------------------------------------------------

class Titles:
    """Titles of rules and decision rows by pack id, and the category order of response packs."""

    def __init__(self, registry: Any) -> None:
        from engine.rules.explain import rule_titles
        self.registry = registry
        self.by_pack = {p.id: rule_titles(p) for p in registry.packs.values()} if registry else {}

    def rule(self, pack_id: str, key: str) -> str:
        return self.by_pack.get(pack_id, {}).get(key, "")

    def criterion(self, packs: list[dict[str, str]], rid: str) -> str:
        for p in packs:
            t = self.by_pack.get(p.get("id"), {}).get(rid)
            if t:
                return t
        return ""

    def rule_order(self, packs: list[dict[str, str]], ids: Iterable[str]) -> list[str]:
        ids = list(ids)
        for p in packs:
            pk = self.registry.packs.get(p.get("id")) if self.registry else None
            if pk is not None and set(ids) <= set(pk.rule_ids):
                return [r for r in pk.rule_ids if r in ids]
        return sorted(ids)

    def owner(self, packs: list[dict[str, str]], ids: Iterable[str]) -> str | None:
        """The pack (of those recorded) whose rules include every id given."""
        ids = set(ids)
        for p in packs:
            pk = self.registry.packs.get(p.get("id")) if self.registry else None
            if pk is not None and ids and ids <= set(pk.rule_ids):
                return pk.id
        return None

    def category_order(self, pack_id: str | None, seen: Iterable[str]) -> list[str]:
        """Categories best first: by the pack's `rank` output where it has one, then the rest."""
        seen = list(dict.fromkeys(seen))
        pk = self.registry.packs.get(pack_id) if (self.registry and pack_id) else None
        ranked: dict[str, float] = {}
        if pk is not None:
            cat = pack_outputs(pk).get("category")
            if cat is not None:
                for o in cat.outputs:
                    if isinstance(o, dict) and o.get("category") is not None and isinstance(o.get("rank"), (int, float)):
                        ranked[o["category"]] = max(ranked.get(o["category"], -1e9), o["rank"])
        known = sorted((c for c in seen if c in ranked), key=lambda c: -ranked[c])
        return known + sorted(c for c in seen if c not in ranked)


def reason_of(d: Decision, titles: Titles, pack_id: str | None = None) -> str:
    """One line: the committee's reason, else the titles of the decision-table rows that decided
    (met), else what is missing."""
    if d.committee is not None:
        return f"committee ({d.committee['reviewer']}, {role_of(d.committee) or 'role not recorded'}): {d.committee['reason']}"
    parts = [titles.rule(p, k) or k for p, k in deciding_rows(d.trace, pack_id)]
    o = d.outcome
    missing = o.get("missing") if isinstance(o, dict) else None
    if missing:
        parts.append("missing " + ", ".join(map(str, missing[:6])) + ("..." if len(missing) > 6 else ""))
    return "; ".join(dict.fromkeys(parts)) or "-"


# --- the report -----------------------------------------------------------------------------------------

def build_report(store: Any, run_id: str, registry: Any, *, packets: bool = True) -> str:
    """The whole report as one HTML document (verifies the trail first: AuditIntegrityError if not)."""
    check = store.verify()
    if not check.ok:
        raise AuditIntegrityError(check.message())
    seq, head = store.head()
    overrides = Overrides(store, as_of=seq)
    run = run_info(store, run_id)
    summary = summarize(store, run_id, overrides=overrides)
    subjects = list(iter_subjects(store, run_id, overrides))
    titles = Titles(registry)
    profiles = list(run.get("profiles") or []) or sorted(summary["response"])
    primary = profiles[0] if profiles else None
    enrolled = [t for t in subjects if t.enrolled]
    eps = {k: survival.estimate(v) for k, v in survival.collect(enrolled, primary).items()} if primary else {}
    parts = [
        _header(run, summary, check, seq, head, overrides),
        _consort(summary, run, titles, subjects),
        _response(summary, profiles),
        _committee(summary),
        _swimmer(enrolled, primary, titles),
        _survival(eps),
        _safety(enrolled, registry.trial().tables.ae_grade3),
    ]
    if packets:
        parts.append(_packets(subjects, profiles, titles, seq, head))
    nav = "".join(f'<a href="#{i}">{label}</a>' for i, label in (
        ("run", "Run"), ("consort", "CONSORT"), ("response", "Response"), ("committee", "Committee"),
        ("swimmer", "Swimmer plot"), ("survival", "Survival"), ("safety", "Adverse events"),
        ("packets", "Subjects")) if packets or i != "packets")
    title = f"Committee report - run {run_id}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head><body><main>"
            f"<h1>{esc(title)}</h1><nav>{nav}</nav>" + "".join(parts) + "</main></body></html>\n")


def _header(run: dict[str, Any], summary: dict[str, Any], check: Any, seq: int, head: str,
            overrides: Overrides) -> str:
    rows = [("run", run["run_id"]), ("started (UTC)", run["started"]), ("actor", run["actor"]),
            ("reason", run.get("reason") or "-"), ("profiles", ", ".join(run["profiles"])),
            ("parameters", params_text(run["params"])), ("packs", packs_text(run.get("packs"))),
            ("subjects", f"{run.get('subjects')} ({run['status']})" + (f", {len(run['failed'])} failed" if run.get("failed") else "")),
            ("built from", f"audit records up to seq {seq}; chain head {head}"),
            ("trail", f"verified: {check.message()}"),
            ("committee decisions in force", str(len(overrides))),
            ("generated (UTC)", dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))]
    body = "<table>" + "".join(f"<tr><th>{esc(k)}</th><td>{_mono(v) if k in ('built from', 'run') else esc(v)}</td></tr>"
                               for k, v in rows) + "</table>"
    return f'<section id="run"><h2>The run and the trail</h2>{body}' \
           '<p class="meta">Every figure below is read from the audit trail: pack outputs, or the committee\'s ' \
           'decision where one is in force. Nothing is re-adjudicated.</p></section>'


def _consort(summary: dict[str, Any], run: dict[str, Any], titles: Titles, subjects: list[SubjectTrail]) -> str:
    el = summary["eligibility"]
    screen_packs = next((t.screen.packs for t in subjects if t.screen), [])
    excluded = sum(a["n"] for a in el["attrition"]) + len(el["indeterminate"])
    side = "".join(f"<div>{esc(a['criterion'])} {esc(titles.criterion(screen_packs, a['criterion']))}: "
                   f"<b>{a['n']}</b></div>" for a in el["attrition"])
    if el["indeterminate"]:
        side += f"<div>eligibility indeterminate (data missing): <b>{len(el['indeterminate'])}</b></div>"
    resp = summary["response"]
    primary = next(iter(resp), None)
    n_resp = resp[primary]["all"]["n"] if primary else 0
    leaves = [d for d in summary["denominators"] if d["profile"] in ("all", primary)]
    flow = (f'<div class="flow"><div class="row"><div class="box">Screened <b>{el["screened"]}</b></div></div>'
            f'<div class="arrow">&#9660;</div>'
            f'<div class="row"><div class="box">Assessed for eligibility <b>{el["screened"]}</b></div>'
            f'<div class="box side">Excluded <b>{excluded}</b> (each subject once, at its first failing criterion '
            f'in protocol order){side}</div></div>'
            f'<div class="arrow">&#9660;</div>'
            f'<div class="row"><div class="box">Enrolled (eligible) <b>{el["enrolled"]}</b></div></div>'
            f'<div class="arrow">&#9660;</div>'
            f'<div class="row"><div class="box">Response denominator, profile {esc(primary)} <b>{n_resp}</b>'
            f' (intention to treat)</div>'
            f'<div class="box side">Left a denominator or undecided in it: <b>{len(leaves)}</b> (listed below)</div></div></div>')
    all_fail = _table(["criterion", "title", "subjects failing it"],
                      [(c, titles.criterion(screen_packs, c), n) for c, n in el["failing_criteria"].items()], num=[2])
    listed = _table(["subject", "profile", "reason"],
                    [(d["subject_id"], "all", "eligibility indeterminate: " + ", ".join(d["criteria"])
                      + (" (missing " + ", ".join(d["missing"][:5]) + ")" if d["missing"] else ""))
                     for d in el["indeterminate"]] + [(d["subject_id"], d["profile"], d["reason"])
                                                      for d in summary["denominators"]])
    return (f'<section id="consort"><h2>CONSORT flow</h2>{flow}<h3>Every failing criterion</h3>'
            f'<p class="meta">A subject may fail several criteria; the flow above counts each subject once.</p>'
            f'{all_fail}<h3>Who leaves a denominator, or sits in it undecided</h3>{listed}</section>')


def _response(summary: dict[str, Any], profiles: list[str]) -> str:
    out = ['<section id="response"><h2>Response</h2><p class="meta">k/n with the Wilson and the exact '
           '(Clopper-Pearson) 95 % confidence intervals; an undecided subject counts in n, not in k.</p>']
    for profile in profiles or list(summary["response"]):
        groups = summary["response"].get(profile)
        if not groups or "all" not in groups:
            continue
        rows = [(m["title"], *_ci(_path(groups["all"], m["key"]))) for m in summary["measures"]]
        out.append(f"<h3>Profile {esc(profile)} (n = {groups['all']['n']})</h3>"
                   + _table(["measure", "k/n", "%", "95 % CI Wilson", "95 % CI Clopper-Pearson"], rows, num=[2]))
        subs = sorted(g for g in groups if g != "all")
        keys = summary["subgroup_measures"]
        if subs and keys:
            titles = {m["key"]: m["title"] for m in summary["measures"]}
            rows = [(g, groups[g]["n"], *[c for k in keys for c in _ci(_path(groups[g], k))]) for g in subs]
            head = [c for k in keys for c in (titles[k], "%", "Wilson", "Clopper-Pearson")]
            out.append(_table(["subgroup", "n", *head], rows, num=[1] + [3 + 4 * i for i in range(len(keys))]))
    out.append("</section>")
    return "".join(out)


def _committee(summary: dict[str, Any]) -> str:
    rows = [(c["subject_id"], c["item"] or c["use_case"], _brief(c["machine"]), _brief(c["committee"]),
             f"{c['reviewer']} ({c['role'] or '-'})", c["reason"], ", ".join(c["machine_disagrees"]) or "agrees now",
             _Raw(f'<span class="mono">{esc(c["decision_id"][:12])}</span>')) for c in summary["committee"]]
    body = _table(["subject", "item", "machine", "committee", "by", "reason", "machine differs on", "decision"], rows) \
        if rows else "<p>No committee decision is in force.</p>"
    stale = "".join(f'<p class="note">{esc(s["subject_id"])} course/{esc(s["profile"])} read {esc(s["assessment"])} as '
                    f'{esc(s["course_read"])}; the committee decided {esc(s["committee"])}: {esc(s["note"])}.</p>'
                    for s in summary.get("stale_courses", []))
    return f'<section id="committee"><h2>Committee decisions in force</h2>{body}{stale}</section>'


def _mono(v: Any) -> str:
    return f'<span class="mono">{esc(v)}</span>'


def _brief(v: Any) -> str:
    if isinstance(v, dict):
        return "; ".join(f"{k}={v[k]}" for k in list(v)[:4]) + ("..." if len(v) > 4 else "")
    return str(v)


def _months(day1: str | None, date: str | None) -> float | None:
    try:
        return (dt.date.fromisoformat(date) - dt.date.fromisoformat(day1)).days / survival.MONTH_DAYS  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None


def _swimmer(enrolled: list[SubjectTrail], profile: str | None, titles: Titles) -> str:
    bars, cats, pack_id, skipped = [], [], None, []
    for t in enrolled:
        if t.follow_up is None:
            skipped.append(t.subject_id)
            continue
        inp = t.follow_up.input
        day1 = (inp.get("facts") or {}).get("study.first_dose_date")
        tl = inp.get("timeline") or []
        dates = {e["id"]: e["date"] for e in tl if e["kind"] == "assessment"}
        end = (t.follow_up.outcome.get("values") or {}).get("follow_up.os_days")
        if day1 is None or end is None:
            skipped.append(t.subject_id)
            continue
        os_ = t.follow_up.outcome.get("os") or {}
        marrows = []
        for (aid, p), d in t.marrow.items():
            if p != profile or aid not in dates:
                continue
            m = _months(day1, dates[aid])
            if m is not None and m >= 0:
                cat = str(short(d.outcome))
                marrows.append((m, cat))
                cats.append(cat)
                pack_id = pack_id or (d.packs[0]["id"] if d.packs else None)
        events = [(_months(day1, e["date"]), e["kind"]) for e in tl if e["kind"] in ("hsct", "dli", "death")]
        course = t.course.get(profile)
        rel = course.outcome.get("relapse_date") if course else None
        if rel:
            events.append((_months(day1, rel), "relapse"))
        best = str((course.outcome.get("best_response") or {}).get("category")) if course else ""
        bars.append({"subject": t.subject_id, "end": end / survival.MONTH_DAYS, "alive": os_.get("event") is False,
                     "marrows": sorted(marrows), "events": [(m, k) for m, k in events if m is not None], "best": best})
    if not bars:
        return '<section id="swimmer"><h2>Swimmer plot</h2><p>No follow-up recorded in this run.</p></section>'
    order = titles.category_order(pack_id, cats)
    rank = {c: i for i, c in enumerate(order)}
    bars.sort(key=lambda b: (rank.get(b["best"], len(rank)), -b["end"]))
    svg = plots.strip_ids(plots.swimmer(bars, order, f"Dynamic response assessment, profile {profile}: "
                                                     "one bar per enrolled subject, day 1 to the last follow-up"), "sw")
    note = (f'<p class="note">No follow-up record (not drawn): {esc(", ".join(skipped))}</p>' if skipped else "")
    return (f'<section id="swimmer"><h2>Swimmer plot</h2><p class="meta">Like the paper\'s Fig. 2. Each marrow is a '
            f'dot coloured by its category in force (profile {esc(profile)}; best first: {esc(", ".join(order))}); '
            f'transplant, DLI, relapse and death are marked; an arrow: alive at the last contact. Sorted by best '
            f'response, then follow-up.</p><div class="fig">{svg}</div>{note}</section>')


def _survival(eps: dict[str, dict[str, Any]]) -> str:
    if not eps:
        return '<section id="survival"><h2>Survival</h2><p>No response profile in this run.</p></section>'
    rows = [(e["label"], e["n"], e["events"], survival.fmt_median(e), survival.fmt_one_year(e), e.get("at_risk_12", "-"))
            for e in eps.values()]
    table = _table(["endpoint", "n", "events", "median, months (95 % CI)", "1-year (95 % CI)", "at risk at 12 months"],
                   rows, num=[1, 2, 5])
    svg = plots.strip_ids(plots.km(list(eps.values()), "Kaplan-Meier estimates (lifelines); 95 % pointwise bands; "
                                                      "ticks: censored"), "km")
    left = [(e["label"], s, why) for e in eps.values() for s, why in e["left_out"]]
    left_t = _table(["endpoint", "subject", "left out because"], left) if left else ""
    return (f'<section id="survival"><h2>Survival</h2><p class="meta">OS from the follow-up record (death, else '
            f'censored at the last contact); EFS and DFS from the response course in force (events and censoring as '
            f'the pack decides). Months of 30.44 days. NE: not estimable.</p>{table}<div class="fig">{svg}</div>'
            f'{"<h3>Left out of a curve</h3>" + left_t if left else ""}</section>')


def _safety(enrolled: list[SubjectTrail], table: Any = None) -> str:
    from engine.adjudicate.safety import summarize as ae_summarize
    docs = [t.safety_doc() for t in enrolled]
    s = ae_summarize(docs, table=table)
    rows = []
    for r in s["table"]:
        if not r["grade_3_plus_n"] and not r["any_grade_n"]:
            continue
        by = r.get("grade_3_plus_by_source") or {}
        rows.append((r["label"], r["any_grade_n"], r["any_grade_pct"], r["grade_3_plus_n"], r["grade_3_plus_pct"],
                     by.get("event", ""), by.get("lab", ""), by.get("both", ""), r.get("emergence_unknown_n", "")))
    rows.sort(key=lambda r: -r[3])
    table = _table(["term", "any grade n", "%", "grade >= 3 n", "%", ">= 3 from events", ">= 3 from labs", "both",
                    "emergence unknown"], rows, num=[1, 2, 3, 4, 5, 6, 7, 8])
    return (f'<section id="safety"><h2>Adverse events</h2><p class="meta">Worst grade per subject and term over the '
            f'adverse-event records and the graded labs (CTCAE), treatment-emergent, N = {s["subjects"]} enrolled; '
            f'the committee\'s attribution where adjudicated. {esc(s.get("note", ""))}</p>{table}</section>')


# --- packets ----------------------------------------------------------------------------------------------

def _ids(ds: Iterable[Decision]) -> str:
    return ", ".join(d.decision_id[:12] for d in ds)


def _packets(subjects: list[SubjectTrail], profiles: list[str], titles: Titles, seq: int, head: str) -> str:
    out = [f'<section id="packets"><h2>Subjects</h2><p class="meta">One packet per subject: screening criteria with '
           f'the values read and the facts missing, every marrow under each profile with its reason, the course, '
           f'adverse events with attribution, the committee\'s decisions, and the audit ids it was built from '
           f'(trail head seq {seq}, {esc(head)}).</p>']
    for t in subjects:
        out.append(_packet(t, profiles, titles, seq, head))
    out.append("</section>")
    return "".join(out)


def _packet(t: SubjectTrail, profiles: list[str], titles: Titles, seq: int, head: str) -> str:
    parts = []
    tags = ""
    if t.screen is not None:
        so = t.screen.outcome
        tags += f' <span class="tag">{esc(so.get("verdict"))}</span>'
        parts.append(_screen_part(t.screen, titles))
    if t.overrides:
        tags += f' <span class="tag c">committee: {len(t.overrides)}</span>'
    if t.marrow:
        parts.append(_marrow_part(t, profiles, titles))
    if t.course:
        parts.append(_course_part(t, profiles))
    if t.follow_up is not None:
        parts.append(_follow_up_part(t.follow_up))
    if t.events:
        parts.append(_ae_part(t))
    if t.overrides:
        parts.append(_override_part(t.overrides, {d.committee["decision_id"] for d in t.decisions() if d.committee}))
    used = t.decisions()
    parts.append(f'<p class="meta mono">built from {len(used)} decisions in force: {esc(_ids(used))}; '
                 f'trail head seq {seq} {esc(head[:16])}</p>')
    return f'<details id="s-{esc(t.subject_id)}"><summary>{esc(t.subject_id)}{tags}</summary>{"".join(parts)}</details>'


def _screen_part(d: Decision, titles: Titles) -> str:
    o = d.outcome
    crit = o.get("criteria") or {}
    trace = {t["rule"]: t for t in d.explained_trace(titles.registry)}   # values read: recomputed
    order = titles.rule_order(d.packs, crit)
    rows = []
    for cid in order:
        tr = trace.get(cid, {})
        vals = ", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in (tr.get("inputs") or {}).items() if not k.startswith("rule:"))
        rows.append((cid, titles.criterion(d.packs, cid), crit[cid], vals, ", ".join(tr.get("missing") or [])))
    verdict = f"<p><b>Eligibility: {esc(o.get('verdict'))}</b>" + (
        f" (decided by {esc(', '.join(o.get('decided_by') or []))})" if o.get("verdict") != "ELIGIBLE" else "") + \
        f" <span class=\"meta\">{esc(reason_of(d, titles, titles.owner(d.packs, crit)))}; decision {esc(d.decision_id[:12])}</span></p>"
    ds = o.get("disease_status") or {}
    extra = f'<p class="meta">disease status {esc(ds.get("trial_status"))}, {esc(ds.get("relapse_setting") or "")}; ' \
            f'ELN risk {esc(json.dumps(o.get("eln_risk") or {}))}</p>'
    return "<h3>Screening</h3>" + verdict + extra + _table(["criterion", "title", "outcome", "values read", "missing"], rows)


def _marrow_part(t: SubjectTrail, profiles: list[str], titles: Titles) -> str:
    aids = list(dict.fromkeys(aid for aid, _ in t.marrow))
    rows = []
    for aid in aids:
        for p in profiles:
            d = t.marrow.get((aid, p))
            if d is None:
                continue
            o = d.outcome
            flags = o.get("flags") or {}
            cat = str(short(o)) + (f" ({'|'.join(o['candidates'])})" if o.get("candidates") else "")
            mark = " [committee]" if d.committee is not None else ""
            rows.append((aid, p, cat + mark, _yn(flags.get("crc")), _yn(flags.get("orr")), _yn(flags.get("mrd_negative")),
                         reason_of(d, titles, d.packs[0]["id"] if d.packs else None), d.decision_id[:12]))
    return "<h3>Marrows</h3>" + _table(["assessment", "profile", "category", "CRc", "ORR", "MRD-", "reason", "decision"], rows)


def _yn(v: Any) -> str:
    return {True: "yes", False: "no", None: "?"}.get(v, str(v))


def _course_part(t: SubjectTrail, profiles: list[str]) -> str:
    rows = []
    for p in profiles:
        d = t.course.get(p)
        if d is None:
            continue
        c = d.outcome
        efs, dfs = c.get("efs") or {}, c.get("dfs") or {}
        rows.append((p + (" [committee]" if d.committee else ""),
                     (c.get("after_cycle_1") or {}).get("category"), (c.get("by_end_of_cycle_2") or {}).get("category"),
                     (c.get("best_response") or {}).get("category"), c.get("crc_date") or "-", c.get("relapse_date") or "-",
                     _event(efs), _event(dfs) if dfs else "-", d.decision_id[:12]))
    return "<h3>Course</h3>" + _table(["profile", "after cycle 1", "end of cycle 2", "best", "CRc date", "relapse", "EFS",
                                       "DFS", "decision"], rows)


def _event(e: dict[str, Any]) -> str:
    if e.get("event") is True:
        return f"event {e.get('type')} {e.get('date')}"
    if e.get("event") is False:
        return f"censored {e.get('date')}"
    return "undecided" + (f": {e['note']}" if e.get("note") else "")


def _follow_up_part(d: Decision) -> str:
    o = d.outcome
    tl = (d.input.get("timeline") or [])
    line = "; ".join(f"{e['date']} {e['kind']}" + (f" {e['id']}" if e.get("id") else "") + (f" ({e['cause']})" if e.get("cause") else "")
                     for e in tl if e["kind"] != "cycle")
    os_ = o.get("os")
    return (f"<h3>Follow-up</h3><p>OS: {esc('undecided' if not os_ else ('death' if os_.get('event') else 'censored'))}, "
            f"{esc((o.get('values') or {}).get('follow_up.os_days'))} days from day 1 "
            f"<span class=\"meta\">(decision {esc(d.decision_id[:12])})</span></p><p class=\"meta\">{esc(line)}</p>")


def _ae_part(t: SubjectTrail) -> str:
    from engine.adjudicate.safety import related_of
    rows = []
    items = {i.get("id"): i for i in t.safety_doc()["items"] if i.get("kind") == "event"}
    for d in t.events:
        it = items.get(d.row["item"], d.outcome)
        att = it.get("attribution") or {}
        adj = att.get("adjudicated")
        rows.append((it.get("id"), it.get("term"), it.get("grade"), _yn(it.get("treatment_emergent")),
                     _yn(att.get("treatment_related")), (f"{_yn(adj.get('treatment_related'))} ({adj.get('reviewer')}: {adj.get('reason')})"
                                                          if adj else "-"), _yn(related_of(it)), d.decision_id[:12]))
    return "<h3>Adverse events</h3>" + _table(["id", "term", "grade", "emergent", "related (investigator)",
                                               "related (committee)", "related (in force)", "decision"], rows)


def _override_part(overrides: list[dict[str, Any]], in_force: set[str]) -> str:
    from engine.report.summary import headline
    rows = [(r["created_at"][:19], r["item"] or r["use_case"], headline(json.loads(r["outcome"]), r), r["reviewer"],
             role_of(r) or "-", r["reason"], "in force" if r["decision_id"] in in_force else "replaced",
             _Raw(f'<span class="mono">{esc(r["decision_id"][:12])} supersedes {esc(r["supersedes"][:12])}</span>'))
            for r in overrides]
    return "<h3>Committee decisions</h3>" + _table(["time (UTC)", "item", "decided", "reviewer", "role", "reason",
                                                    "status", "record"], rows)


def write_report(store: Any, run_id: str, registry: Any, path: str, *, packets: bool = True) -> int:
    """Build and write the report atomically; returns its size in bytes."""
    import os
    import tempfile
    from pathlib import Path
    target = Path(path)
    if not target.resolve().parent.is_dir():
        from engine.errors import InputError
        raise InputError("folder does not exist", file=str(target), expected="an existing folder")
    text = build_report(store, run_id, registry, packets=packets)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.resolve().parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return len(text.encode("utf-8"))
