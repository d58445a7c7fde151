"""Summary tables of one cohort run, read back from the audit store (streamed, per subject).

Eligibility attrition, response after cycle 1 and by the end of cycle 2 (CRc, ORR, MRD-negative
among CRc) per profile with Wilson and Clopper-Pearson 95 % intervals (scipy), by subgroup, and
adverse events of grade >= 3 by term. Every figure is a count of pack outputs; no threshold here.
"""
from __future__ import annotations

import csv
import json
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Iterator

from engine.adjudicate.cohort import RUN_SUBJECT


def proportion(k: int, n: int) -> dict[str, Any]:
    """k/n with the Wilson and exact (Clopper-Pearson) 95 % intervals, in percent."""
    out: dict[str, Any] = {"k": k, "n": n, "pct": round(100 * k / n, 1) if n else None}
    if n:
        from scipy.stats import binomtest
        t = binomtest(k, n)
        for name, method in (("wilson", "wilson"), ("exact", "exact")):
            ci = t.proportion_ci(confidence_level=0.95, method=method)
            out[name] = [round(100 * ci.low, 1), round(100 * ci.high, 1)]
    return out


def _subjects(store: Any, run_id: str) -> Iterator[tuple[str, list[dict[str, Any]]]]:
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


def subgroups(screen: dict[str, Any]) -> list[str]:
    """The paper's subgroups, read from the screening decision (pack outputs, not recomputed):
    primary refractory / relapse after chemotherapy / relapse after allo-HSCT, and ELN 2017 risk
    (the version the paper cites, A14)."""
    out = []
    ds = screen.get("disease_status") or {}
    status, setting = ds.get("trial_status"), ds.get("relapse_setting")
    if status == "RELAPSED" and setting:
        out.append("relapsed " + str(setting).lower().replace("_", " ").replace("hsct", "HSCT"))
    elif status:
        out.append(str(status).lower().replace("_", " "))
    risk = (screen.get("eln_risk") or {}).get("eln2017")
    if risk:
        out.append(f"ELN 2017 {str(risk).lower()}")
    return out


def summarize(store: Any, run_id: str) -> dict[str, Any]:
    """The summary document of a run (JSON-ready)."""
    screened = 0
    verdicts: Counter[str] = Counter()
    failing: Counter[str] = Counter()
    # counts[profile][subgroup][measure] -> k ; denominators[profile][subgroup] -> n
    counts: dict[str, dict[str, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    denoms: dict[str, Counter[str]] = defaultdict(Counter)
    ae: Counter[str] = Counter()
    ae_subjects: dict[str, set] = defaultdict(set)
    for sid, rows in _subjects(store, run_id):
        screen = next((json.loads(r["outcome"]) for r in rows if r["use_case"] == "screen"), None)
        if screen is not None:
            screened += 1
            verdicts[screen.get("verdict", "INDETERMINATE")] += 1
            if screen.get("verdict") == "INELIGIBLE":
                for crit in screen.get("decided_by", []):
                    failing[crit] += 1
            if screen.get("verdict") != "ELIGIBLE":
                continue  # response is reported over the enrolled subjects
        groups = ["all"] + (subgroups(screen) if screen else [])
        for r in rows:
            if r["use_case"] == "marrow" and (r["item"] or "").startswith("course/"):
                profile = r["item"].split("/", 1)[1]
                o = json.loads(r["outcome"])
                c1, c2 = o.get("after_cycle_1", {}), o.get("by_end_of_cycle_2", {})
                flags = {"c1_crc": c1.get("crc"), "c1_orr": c1.get("orr"), "c2_crc": c2.get("crc"),
                         "c2_orr": c2.get("orr"),
                         "c2_crc_mrd_neg": c2.get("crc") is True and o.get("flags", {}).get("mrd_negative") is True}
                for g in groups:
                    denoms[profile][g] += 1
                    for k, v in flags.items():
                        counts[profile][g][k] += v is True
            elif r["use_case"] == "ae":
                o = json.loads(r["outcome"])
                grade, term = o.get("grade"), o.get("term")
                if isinstance(grade, int) and grade >= 3 and term:
                    ae[term] += 1
                    ae_subjects[term].add(sid)
    enrolled = verdicts.get("ELIGIBLE", 0)
    response = {}
    for profile in sorted(denoms, key=lambda p: (p != "trial", p)):  # the trial's own profile first
        response[profile] = {}
        for g, n in denoms[profile].items():
            c = counts[profile][g]
            response[profile][g] = {
                "n": n,
                "after_cycle_1": {"crc": proportion(c["c1_crc"], n), "orr": proportion(c["c1_orr"], n)},
                "by_end_of_cycle_2": {"crc": proportion(c["c2_crc"], n), "orr": proportion(c["c2_orr"], n),
                                      "mrd_negative_among_crc": proportion(c["c2_crc_mrd_neg"], c["c2_crc"])},
            }
    n_ae = denoms.get("trial", Counter()).get("all") or enrolled or screened
    return {
        "run_id": run_id,
        "eligibility": {"screened": screened, "enrolled": enrolled, "verdicts": dict(verdicts),
                        "failing_criteria": dict(sorted(failing.items()))},
        "response": response,
        "adverse_events_grade3plus": {t: {"events": ae[t], "subjects": proportion(len(ae_subjects[t]), n_ae)}
                                      for t in sorted(ae, key=lambda t: -ae[t])},
    }


def _fmt(p: dict[str, Any]) -> list[str]:
    """k/n, %, Wilson CI, Clopper-Pearson CI as table cells."""
    if not p.get("n"):
        return [f"{p.get('k', 0)}/0", "-", "-", "-"]
    w, e = p["wilson"], p["exact"]
    return [f"{p['k']}/{p['n']}", f"{p['pct']:.1f}", f"{w[0]:.1f}-{w[1]:.1f}", f"{e[0]:.1f}-{e[1]:.1f}"]


MEASURES = (("CRc after cycle 1", "after_cycle_1", "crc"), ("ORR after cycle 1", "after_cycle_1", "orr"),
            ("CRc by end of cycle 2", "by_end_of_cycle_2", "crc"), ("ORR by end of cycle 2", "by_end_of_cycle_2", "orr"),
            ("MRD-negative among CRc", "by_end_of_cycle_2", "mrd_negative_among_crc"))


def render(summary: dict[str, Any], console: Any = None) -> None:
    """Readable rich tables: attrition, the headline response per profile, subgroups, AEs."""
    from rich.table import Table
    from engine.report.tables import console as default_console
    console = console or default_console
    el = summary["eligibility"]
    t = Table(title=f"Eligibility attrition (run {summary['run_id']})")
    t.add_column("step")
    t.add_column("n", justify="right")
    t.add_row("screened", str(el["screened"]))
    for crit, n in el["failing_criteria"].items():
        t.add_row(f"  ineligible: {crit} failed", str(n))
    for v, n in el["verdicts"].items():
        if v not in ("ELIGIBLE", "INELIGIBLE"):
            t.add_row(f"  {v.lower()} (data missing)", str(n))
    t.add_row("enrolled (eligible)", str(el["enrolled"]))
    console.print(t)
    ci_cols = ("k/n", "%", "95% CI Wilson", "95% CI Clopper-Pearson")
    for profile, groups in summary["response"].items():
        if "all" not in groups:
            continue
        t = Table(title=f"Response, profile {profile} (n={groups['all']['n']})")
        t.add_column("measure")
        for c in ci_cols:
            t.add_column(c, justify="right")
        for label, tp, m in MEASURES:
            t.add_row(label, *_fmt(groups["all"][tp][m]))
        console.print(t)
        subs = sorted(g for g in groups if g != "all")
        if subs:
            t = Table(title=f"By subgroup, profile {profile}: CRc and ORR by end of cycle 2")
            t.add_column("subgroup")
            t.add_column("n", justify="right")
            for c in ("CRc", "%", "95% CI Wilson", "ORR", "%"):
                t.add_column(c, justify="right")
            for g in subs:
                d = groups[g]
                crc, orr = _fmt(d["by_end_of_cycle_2"]["crc"]), _fmt(d["by_end_of_cycle_2"]["orr"])
                t.add_row(g, str(d["n"]), crc[0], crc[1], crc[2], orr[0], orr[1])
            console.print(t)
    if summary["adverse_events_grade3plus"]:
        t = Table(title="Adverse events of grade >= 3 (CTCAE, subjects with the event)")
        t.add_column("term")
        t.add_column("events", justify="right")
        for c in ("subjects", "%", "95% CI Wilson"):
            t.add_column(c, justify="right")
        for term, d in summary["adverse_events_grade3plus"].items():
            t.add_row(term, str(d["events"]), *_fmt(d["subjects"])[:3])
        console.print(t)


def write_csv(summary: dict[str, Any], folder: str | Path) -> list[Path]:
    """eligibility.csv, response.csv, adverse_events.csv in `folder`."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    el = summary["eligibility"]
    p = folder / "eligibility.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["item", "n"])
        w.writerow(["screened", el["screened"]])
        for crit, n in el["failing_criteria"].items():
            w.writerow([f"failing {crit}", n])
        w.writerow(["enrolled", el["enrolled"]])
    out.append(p)
    p = folder / "response.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["profile", "subgroup", "timepoint", "measure", "k", "n", "pct", "wilson_low", "wilson_high",
                    "exact_low", "exact_high"])
        for profile, groups in summary["response"].items():
            for g, d in groups.items():
                for tp in ("after_cycle_1", "by_end_of_cycle_2"):
                    for m, v in d[tp].items():
                        w.writerow([profile, g, tp, m, v["k"], v["n"], v["pct"], *(v.get("wilson") or ["", ""]),
                                    *(v.get("exact") or ["", ""])])
    out.append(p)
    p = folder / "adverse_events.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["term", "events", "subjects", "n"])
        for term, d in summary["adverse_events_grade3plus"].items():
            w.writerow([term, d["events"], d["subjects"]["k"], d["subjects"]["n"]])
    out.append(p)
    return out
