"""Summary tables of one cohort run, read back from the audit store (streamed, per subject),
with the committee's decisions in force.

CONSORT-style attrition (each subject counted once, at its first failing criterion in protocol
order, then every failing criterion), response after cycle 1 and by the end of cycle 2 (CRc,
ORR, MRD-negative among CRc) per profile with Wilson and Clopper-Pearson 95 % intervals (scipy),
by subgroup, adverse events of grade >= 3 by term, and every subject who leaves a denominator
with the reason. Every figure is a count of pack outputs (or of the committee's decision where
one is in force); no threshold here. Response denominators are the enrolled subjects
(intention to treat, as the paper's 68/96): an enrolled subject without a response course is
counted as not responding *and listed*; a course whose flag is undecided is counted in n, not
in k, and listed.
"""
from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterator

from engine.adjudicate.cohort import RUN_SUBJECT
from engine.adjudicate.committee import Overrides, disagreement, key_of, role_of, short

COURSE_PREFIX = "course/"
INDETERMINATE = "INDETERMINATE"   # the engine's word for an undecided decision


def proportion(k: int, n: int, unknown: int = 0) -> dict[str, Any]:
    """k/n with the Wilson and exact (Clopper-Pearson) 95 % intervals, in percent; `unknown`:
    how many of the n were undecided (counted in n, not in k)."""
    out: dict[str, Any] = {"k": k, "n": n, "pct": round(100 * k / n, 1) if n else None}
    if unknown:
        out["unknown"] = unknown
    if n:
        from scipy.stats import binomtest
        t = binomtest(k, n)
        for name, method in (("wilson", "wilson"), ("exact", "exact")):
            ci = t.proportion_ci(confidence_level=0.95, method=method)
            out[name] = [round(100 * ci.low, 1), round(100 * ci.high, 1)]
    return out


def subject_rows(store: Any, run_id: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(subject, its rows) in commit order: a subject's decisions are one transaction, contiguous."""
    current, rows = None, []
    for row in store.iter_rows(run_id=run_id):
        sid = row["subject_id"]
        if sid == RUN_SUBJECT:
            continue
        if sid != current and rows:
            yield current, rows
            rows = []
        current = sid
        rows.append(row)
    if rows:
        yield current, rows


def _path(doc: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        doc = doc.get(part) if isinstance(doc, dict) else None
    return doc


def _words(value: Any, replace: dict[str, str]) -> str:
    text = str(value).lower().replace("_", " ")
    return " ".join(replace.get(w, w) for w in text.split())


def subgroups(screen: dict[str, Any], protocol: Any) -> list[str]:
    """The protocol's subgroups of a subject, read from the screening decision (pack outputs, not
    recomputed): each names the output it reads, how a group is labelled and, optionally, a second
    output that refines one value (e.g. relapsed -> the relapse setting)."""
    out = []
    for sg in protocol.subgroups:
        value = _path(screen, sg.screening)
        if value is None:
            continue
        detail = _path(screen, sg.detail) if sg.detail and value == sg.detail_when else None
        label = sg.detail_label if detail is not None and sg.detail_label else sg.label
        out.append(label.format(value=_words(value, sg.replace),
                                detail=_words(detail, sg.replace) if detail is not None else ""))
    return out


def measures_of(protocol: Any) -> list[Any]:
    """The proportions the summary reports for every profile: the protocol's endpoints that read a
    course output's flag, in protocol order."""
    return [e for e in protocol.endpoints if e.kind == "proportion" and e.course_output and e.flag]


def protocol_order(lists: list[list[str]]) -> list[str]:
    """One order of criteria consistent with every `decided_by` list (each lists criteria in the
    pack's order): a topological merge, ties by first appearance."""
    seen: list[str] = []
    after: dict[str, set[str]] = defaultdict(set)
    for lst in lists:
        for i, c in enumerate(lst):
            if c not in seen:
                seen.append(c)
            if i:
                after[c].add(lst[i - 1])
    out: list[str] = []
    pending = list(seen)
    while pending:
        nxt = next((c for c in pending if after[c] <= set(out)), pending[0])
        out.append(nxt)
        pending.remove(nxt)
    return out


def _course_flags(o: dict[str, Any], measures: list[Any]) -> dict[str, Any]:
    """Each measure's value in a course outcome; a measure `among` another counts only the
    subjects for whom that one is true (false otherwise: they leave its denominator)."""
    out: dict[str, Any] = {}
    for m in measures:
        value = (o.get(m.course_output) or {}).get(m.flag)
        if m.categories is not None and value is not None:   # a category measure (e.g. CR alone)
            value = None if value == INDETERMINATE else value in m.categories
        out[m.id] = value
    for m in measures:
        if m.among:
            out[m.id] = out[m.id] if out.get(m.among) is True else False
    return out


class _Tally:
    """k / unknown / n per profile, subgroup and measure."""

    def __init__(self) -> None:
        self.k: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        self.unknown: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
        self.n: dict[str, Counter[str]] = defaultdict(Counter)

    def add(self, profile: str, groups: list[str], flags: dict[str, Any] | None) -> None:
        for g in groups:
            self.n[profile][g] += 1
            for key, v in (flags or {}).items():
                self.k[profile][g][key] += v is True
                self.unknown[profile][g][key] += v is None

    def doc(self, profile: str, g: str, measures: list[Any]) -> dict[str, Any]:
        """{n, <course output>: {<flag>: proportion}} (the place a measure's `key` names)."""
        k, u, n = self.k[profile][g], self.unknown[profile][g], self.n[profile][g]
        out: dict[str, Any] = {"n": n}
        for m in measures:
            where, _, name = m.report_key.rpartition(".")
            out.setdefault(where, {})[name] = proportion(k[m.id], k[m.among] if m.among else n, u[m.id])
        return out


def summarize(store: Any, run_id: str, *, overrides: Overrides | None = None) -> dict[str, Any]:
    """The summary document of a run (JSON-ready), with the committee's decisions in force."""
    overrides = overrides if overrides is not None else Overrides(store)
    profiles = _run_profiles(store, run_id)
    from engine.report.runs import run_protocol
    protocol = run_protocol(store, run_id)
    measures = measures_of(protocol)
    screened = 0
    verdicts: Counter[str] = Counter()
    decided_lists: list[list[str]] = []
    first_fail: dict[str, list[str]] = defaultdict(list)
    all_fail: Counter[str] = Counter()
    indeterminate: list[dict[str, Any]] = []
    leaves: list[dict[str, Any]] = []          # subjects who leave (or sit undecided in) a denominator
    committee: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    tally = _Tally()
    enrolled_ids: list[str] = []
    for sid, rows in subject_rows(store, run_id):
        in_force: dict[tuple, dict[str, Any]] = {}
        for r in rows:
            o = overrides.get(key_of(r))
            if o is not None:
                in_force[key_of(r)] = o
                mo, co = json.loads(r["outcome"]), json.loads(o["outcome"])
                committee.append({"subject_id": sid, "use_case": r["use_case"], "item": r["item"],
                                  "machine": headline(mo, o), "committee": headline(co, o),
                                  "machine_disagrees": disagreement(mo, co),
                                  "machine_decision_id": r["decision_id"], "decision_id": o["decision_id"],
                                  "reviewer": o["reviewer"], "role": role_of(o), "reason": o["reason"]})
        outcome = {key_of(r): json.loads((in_force.get(key_of(r)) or r)["outcome"]) for r in rows}
        screen = next((outcome[key_of(r)] for r in rows if r["use_case"] == "screen"), None)
        if screen is not None:
            screened += 1
            verdict = screen.get("verdict", "INDETERMINATE")
            verdicts[verdict] += 1
            decided = list(screen.get("decided_by") or [])
            decided_lists.append(decided)
            if verdict == "INELIGIBLE":
                first_fail[decided[0] if decided else "(not recorded)"].append(sid)
                all_fail.update(decided)
            elif verdict != "ELIGIBLE":
                indeterminate.append({"subject_id": sid, "criteria": decided, "missing": screen.get("missing") or []})
            if verdict != "ELIGIBLE":
                if any(r["use_case"] == "marrow" for r in rows):
                    leaves.append({"subject_id": sid, "profile": "all", "denominator": "response",
                                   "reason": f"screening {verdict} ({', '.join(decided) or 'no criterion recorded'})"
                                             " but on-study data present: not counted"})
                continue
        enrolled_ids.append(sid)
        groups = ["all"] + (subgroups(screen, protocol) if screen else [])
        courses = {r["item"][len(COURSE_PREFIX):]: r for r in rows
                   if r["use_case"] == "marrow" and (r["item"] or "").startswith(COURSE_PREFIX)}
        for profile in profiles or sorted(courses):
            r = courses.get(profile)
            if r is None:
                tally.add(profile, groups, None)
                leaves.append({"subject_id": sid, "profile": profile, "denominator": "response",
                               "reason": "enrolled, no on-study response assessment recorded: counted in n as not "
                                         "responding (intention to treat)"})
                continue
            o = outcome[key_of(r)]
            flags = _course_flags(o, measures)
            tally.add(profile, groups, flags)
            undecided = sorted(k for k, v in flags.items() if v is None)
            if undecided:
                leaves.append({"subject_id": sid, "profile": profile, "denominator": "response",
                               "reason": "undecided: " + ", ".join(undecided) + " (counted in n, not in k)"
                                         + (f"; {o.get('efs', {}).get('note')}" if (o.get("efs") or {}).get("note") else "")})
            if key_of(r) not in in_force:
                stale += _stale_course(sid, profile, r, rows, in_force)
    order = protocol_order(decided_lists)
    enrolled = len(enrolled_ids)
    response = {}
    ranks = list(protocol.profile_packs())
    for profile in sorted(tally.n, key=lambda p: (ranks.index(p) if p in ranks else len(ranks), p)):  # primary first
        response[profile] = {g: tally.doc(profile, g, measures) for g in tally.n[profile]}
    ae = _adverse_events(store, run_id, overrides, protocol)
    seq, head = store.head()
    return {
        "run_id": run_id,
        "trial": protocol.id,
        "as_of": {"seq": seq, "record_hash": head},
        "measures": [{"id": m.id, "title": m.title, "key": m.report_key} for m in measures],
        "subgroup_measures": [m.report_key for m in measures if m.id in protocol.tables.subgroup_measures],
        "eligibility": {
            "screened": screened, "enrolled": enrolled, "verdicts": dict(verdicts),
            "attrition": [{"criterion": c, "n": len(first_fail[c]), "subjects": first_fail[c]}
                          for c in order + sorted(set(first_fail) - set(order)) if first_fail.get(c)],
            "failing_criteria": {c: all_fail[c] for c in order if all_fail.get(c)},
            "indeterminate": indeterminate,
        },
        "response": response,
        "denominators": leaves,
        "committee": committee,
        "stale_courses": stale,
        "adverse_events_grade3plus": {r["term"]: {"label": r["label"],
                                                  "subjects": proportion(r["grade_3_plus_n"], ae["subjects"]),
                                                  "source": r["grade_3_plus_by_source"]}
                                      for r in sorted(ae["table"], key=lambda r: -r["grade_3_plus_n"])
                                      if r["grade_3_plus_n"]},
    }


def _adverse_events(store: Any, run_id: str, overrides: Overrides, protocol: Any) -> dict[str, Any]:
    """The AE incidence table of the enrolled subjects, read from the trail (decisions in force):
    the one table `ae-summary --run` and the report print, from adverse-event records AND graded labs
    (worst grade per subject and term, with the source that reached it)."""
    from engine.adjudicate.safety import summarize as summarize_ae
    from engine.report.trail import iter_subjects
    return summarize_ae([t.safety_doc() for t in iter_subjects(store, run_id, overrides) if t.enrolled],
                        table=protocol.tables.ae_grade3)


def headline(outcome: Any, committee_row: dict[str, Any]) -> Any:
    """A table cell for an outcome: its category / verdict / grade, or (a nested outcome such as a
    course) `field=value` of the fields the committee decided."""
    from engine.adjudicate.committee import leaves
    top = short(outcome)
    inp = json.loads(committee_row["input"]) if isinstance(committee_row.get("input"), str) else committee_row.get("input")
    given = ((inp or {}).get("committee") or {}).get("given") or {}
    values = leaves(outcome)
    fields = "; ".join(f"{f}={values.get(f)}" for f in leaves(given) if not isinstance(top, str) or values.get(f) != top)
    if isinstance(top, dict):
        return fields or "(nested outcome)"
    return f"{top}; {fields}" if fields else top


def _stale_course(sid: str, profile: str, course: dict[str, Any], rows: list[dict[str, Any]],
                  in_force: dict[tuple, dict[str, Any]]) -> list[dict[str, Any]]:
    """A machine course built on an assessment the committee has since decided otherwise."""
    out = []
    inp = json.loads(course["input"])
    seen = inp.get("assessments") or {i["item"]: i.get("category") for i in inp.get("items") or [] if "item" in i}
    folded = inp.get("committee") or {}   # items whose committee decision the course folded over
    for r in rows:
        o = in_force.get(key_of(r))
        item = r["item"] or ""
        if o is None or r["use_case"] != "marrow" or not item.endswith("/" + profile) or item.startswith(COURSE_PREFIX):
            continue
        aid = item[: -len(profile) - 1]
        decided = short(json.loads(o["outcome"]))
        if folded.get(aid) == o["decision_id"]:
            continue
        if aid in seen and seen[aid] != decided:
            out.append({"subject_id": sid, "profile": profile, "assessment": aid, "course_read": seen[aid],
                        "committee": decided, "course_decision_id": course["decision_id"],
                        "note": "the course was built on the machine's category; override the course or re-run"})
    return out


def _run_profiles(store: Any, run_id: str) -> list[str]:
    for rec in store.iter(subject_id=RUN_SUBJECT, run_id=run_id, item="start"):
        return list(rec.outcome.get("profiles") or [])
    return []


def _fmt(p: dict[str, Any]) -> list[str]:
    """k/n, %, Wilson CI, Clopper-Pearson CI as table cells (undecided shown as '+u?')."""
    if not p.get("n"):
        return [f"{p.get('k', 0)}/0", "-", "-", "-"]
    w, e = p["wilson"], p["exact"]
    unk = f" (+{p['unknown']}?)" if p.get("unknown") else ""
    return [f"{p['k']}/{p['n']}{unk}", f"{p['pct']:.1f}", f"{w[0]:.1f}-{w[1]:.1f}", f"{e[0]:.1f}-{e[1]:.1f}"]


def render(summary: dict[str, Any], console: Any = None) -> None:
    """Readable rich tables: attrition, the headline response per profile, subgroups, AEs, who left a
    denominator, the committee's decisions in force."""
    from rich.table import Table
    from engine.report.tables import console as default_console
    console = console or default_console
    el = summary["eligibility"]
    t = Table(title=f"Eligibility, run {summary['run_id']}", min_width=72,
              caption="each subject counted once, at its first failing criterion in protocol order")
    t.add_column("step")
    t.add_column("n", justify="right")
    t.add_row("screened", str(el["screened"]))
    for a in el["attrition"]:
        t.add_row(f"  excluded: {a['criterion']} failed", str(a["n"]))
    if el["indeterminate"]:
        t.add_row("  not enrolled: eligibility indeterminate (data missing)", str(len(el["indeterminate"])))
    t.add_row("enrolled (eligible)", str(el["enrolled"]))
    console.print(t)
    if el["failing_criteria"]:
        t = Table(title="Every failing criterion (a subject may fail several)", min_width=72)
        t.add_column("criterion")
        t.add_column("subjects failing it", justify="right")
        for crit, n in el["failing_criteria"].items():
            t.add_row(crit, str(n))
        console.print(t)
    ci_cols = ("k/n", "%", "95% CI Wilson", "95% CI Clopper-Pearson")
    for profile, groups in summary["response"].items():
        if "all" not in groups:
            continue
        t = Table(title=f"Response, profile {profile} (n={groups['all']['n']})")
        t.add_column("measure")
        for c in ci_cols:
            t.add_column(c, justify="right")
        for m in summary["measures"]:
            t.add_row(m["title"], *_fmt(_path(groups["all"], m["key"])))
        console.print(t)
        subs = sorted(g for g in groups if g != "all")
        keys = summary["subgroup_measures"]
        if subs and keys:
            titles = {m["key"]: m["title"] for m in summary["measures"]}
            t = Table(title=f"By subgroup, profile {profile}: " + " and ".join(titles[k] for k in keys))
            t.add_column("subgroup")
            t.add_column("n", justify="right")
            for i, k in enumerate(keys):
                for c in ((titles[k], "%", "95% CI Wilson") if i == 0 else (titles[k], "%")):
                    t.add_column(c, justify="right")
            for g in subs:
                d = groups[g]
                cells = [c for i, k in enumerate(keys) for c in _fmt(_path(d, k))[:3 if i == 0 else 2]]
                t.add_row(g, str(d["n"]), *cells)
            console.print(t)
    if summary["adverse_events_grade3plus"]:
        t = Table(title="Treatment-emergent adverse events of grade >= 3 (CTCAE; worst grade per subject "
                        "from adverse-event records and graded labs)")
        t.add_column("term")
        for c in ("subjects", "%", "95% CI Wilson", "from events / labs / both"):
            t.add_column(c, justify="right")
        for term, d in summary["adverse_events_grade3plus"].items():
            by = d["source"]
            t.add_row(d["label"], *_fmt(d["subjects"])[:3], f"{by['event']} / {by['lab']} / {by['both']}")
        console.print(t)
    if summary["denominators"] or el["indeterminate"]:
        t = Table(title="Who leaves a denominator, or sits in it undecided")
        for c in ("subject", "profile", "reason"):
            t.add_column(c)
        for d in el["indeterminate"]:
            t.add_row(d["subject_id"], "all", "eligibility indeterminate: " + ", ".join(d["criteria"])
                      + (f" (missing {', '.join(d['missing'][:4])}{'...' if len(d['missing']) > 4 else ''})"
                         if d["missing"] else ""))
        for d in summary["denominators"]:
            t.add_row(d["subject_id"], d["profile"], d["reason"])
        console.print(t)
    if summary["committee"]:
        t = Table(title="Committee decisions in force (used above instead of the machine's)")
        for c in ("subject", "item", "machine", "committee", "by", "reason", "machine disagrees on"):
            t.add_column(c)
        for c in summary["committee"]:
            t.add_row(c["subject_id"], c["item"] or c["use_case"], str(c["machine"]), str(c["committee"]),
                      f"{c['reviewer']} ({c['role'] or '-'})", c["reason"] or "",
                      ", ".join(c["machine_disagrees"]) or "(agrees now)")
        console.print(t)
    for s in summary.get("stale_courses", []):
        console.print(f"[yellow]note[/] {s['subject_id']} course/{s['profile']} read {s['assessment']} as "
                      f"{s['course_read']}; the committee decided {s['committee']}: {s['note']}")


def write_csv(summary: dict[str, Any], folder: str | Path) -> list[Path]:
    """eligibility.csv (attrition), failing_criteria.csv, response.csv, adverse_events.csv,
    denominators.csv and committee.csv in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    el = summary["eligibility"]
    tables: dict[str, tuple[list[str], list[list[Any]]]] = {
        "eligibility.csv": (["step", "criterion", "n", "subjects"],
                            [["screened", "", el["screened"], ""]]
                            + [["excluded at first failing criterion", a["criterion"], a["n"], " ".join(a["subjects"])]
                               for a in el["attrition"]]
                            + [["not enrolled: indeterminate", "", len(el["indeterminate"]),
                                " ".join(d["subject_id"] for d in el["indeterminate"])]]
                            + [["enrolled", "", el["enrolled"], ""]]),
        "failing_criteria.csv": (["criterion", "subjects_failing"], [[c, n] for c, n in el["failing_criteria"].items()]),
        "response.csv": (["profile", "subgroup", "timepoint", "measure", "k", "n", "unknown", "pct", "wilson_low",
                          "wilson_high", "exact_low", "exact_high"],
                         [[profile, g, tp, m, v["k"], v["n"], v.get("unknown", 0), v["pct"],
                           *(v.get("wilson") or ["", ""]), *(v.get("exact") or ["", ""])]
                          for profile, groups in summary["response"].items() for g, d in groups.items()
                          for tp in ("after_cycle_1", "by_end_of_cycle_2") for m, v in d[tp].items()]),
        "adverse_events.csv": (["term", "adverse_event", "subjects", "n", "pct", "from_events", "from_labs", "from_both"],
                               [[t, d["label"], d["subjects"]["k"], d["subjects"]["n"], d["subjects"]["pct"],
                                 d["source"]["event"], d["source"]["lab"], d["source"]["both"]]
                                for t, d in summary["adverse_events_grade3plus"].items()]),
        "denominators.csv": (["subject_id", "profile", "denominator", "reason"],
                             [[d["subject_id"], d["profile"], d["denominator"], d["reason"]]
                              for d in summary["denominators"]]),
        "committee.csv": (["subject_id", "use_case", "item", "machine", "committee", "machine_disagrees_on",
                           "reviewer", "role", "reason", "decision_id", "machine_decision_id"],
                          [[c["subject_id"], c["use_case"], c["item"], c["machine"], c["committee"],
                            " ".join(c["machine_disagrees"]), c["reviewer"], c["role"], c["reason"],
                            c["decision_id"], c["machine_decision_id"]] for c in summary["committee"]]),
    }
    out = []
    for name, (header, rows) in tables.items():
        p = folder / name
        with p.open("w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(header)
            w.writerows([[_cell(v) for v in row] for row in rows])
        out.append(p)
    return out


def _cell(v: Any) -> Any:
    """A CSV cell; text that a spreadsheet would run as a formula is quoted with a leading '
    (engine.safetext.csv_cell: also a leading tab or CR; numbers stay numbers)."""
    from engine.safetext import csv_cell
    return "" if v is None else csv_cell(v)
