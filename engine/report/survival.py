"""Kaplan-Meier estimates (lifelines) of the time-to-event endpoints, from pack outputs in force:
overall survival from the follow-up record (event or censoring and the days from day 1), EFS and
DFS from the response course of the primary profile (event, date, censoring; DFS from the CRc date).

Nothing is re-derived: a subject whose endpoint is undecided (no event and no censoring date) is
left out of that curve and listed with the reason. Times are in months (30.4375 days).
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field
from typing import Any

MONTH_DAYS = 30.4375
LANDMARK_MONTHS = 12.0   # the 1-year estimate the paper reports


@dataclass
class Endpoint:
    """One endpoint's observations: (subject, months, event) and who was left out, and why."""
    name: str
    label: str
    rows: list[tuple[str, float, bool]] = field(default_factory=list)
    left_out: list[tuple[str, str]] = field(default_factory=list)

    def add(self, subject: str, days: Any, event: Any, why_missing: str) -> None:
        if isinstance(event, bool) and isinstance(days, (int, float)) and days >= 0:
            self.rows.append((subject, days / MONTH_DAYS, event))
        else:
            self.left_out.append((subject, why_missing))


def _days(start: Any, end: Any) -> int | None:
    try:
        return (dt.date.fromisoformat(str(end)) - dt.date.fromisoformat(str(start))).days
    except (TypeError, ValueError):
        return None


def collect(subjects: list[Any], profile: str) -> dict[str, Endpoint]:
    """OS, EFS and DFS observations of the enrolled subjects (SubjectTrail objects)."""
    os_ = Endpoint("os", "Overall survival")
    efs = Endpoint("efs", f"Event-free survival (profile {profile})")
    dfs = Endpoint("dfs", f"Disease-free survival (profile {profile}, from CRc)")
    for t in subjects:
        if not t.enrolled:
            continue
        fu = t.follow_up.outcome if t.follow_up else None
        facts = (t.follow_up.input.get("facts") or {}) if t.follow_up else {}
        day1 = facts.get("study.first_dose_date")
        if fu is None:
            os_.left_out.append((t.subject_id, "no follow-up record"))
        else:
            os = fu.get("os") or {}
            os_.add(t.subject_id, (fu.get("values") or {}).get("follow_up.os_days"), os.get("event"),
                    "neither a death nor a last contact recorded" if not os else "day 1 not recorded")
        course = t.course.get(profile)
        if course is None:
            efs.left_out.append((t.subject_id, "no response course"))
            continue
        c = course.outcome
        e = c.get("efs") or {}
        efs.add(t.subject_id, _days(day1, e.get("date")), e.get("event"),
                e.get("note") or ("day 1 not recorded" if day1 is None else "EFS date not recorded"))
        d = c.get("dfs")
        if d:
            dfs.add(t.subject_id, _days(d.get("start"), d.get("date")), d.get("event"),
                    d.get("note") or "DFS date not recorded")
    return {"os": os_, "efs": efs, "dfs": dfs}


def _num(x: Any) -> float | None:
    x = float(x)
    return None if math.isinf(x) or math.isnan(x) else round(x, 1)


def estimate(ep: Endpoint) -> dict[str, Any]:
    """n, events, median with its 95 % CI, 1-year survival with its 95 % CI (percent), and the
    fitted curve for plotting (lifelines KaplanMeierFitter, Greenwood / exponential CI)."""
    out: dict[str, Any] = {"name": ep.name, "label": ep.label, "n": len(ep.rows),
                           "events": sum(1 for _, _, e in ep.rows if e), "left_out": ep.left_out}
    if not ep.rows:
        return out
    from lifelines import KaplanMeierFitter
    from lifelines.utils import median_survival_times
    kmf = KaplanMeierFitter(label=ep.name).fit([m for _, m, _ in ep.rows], [e for _, _, e in ep.rows])
    ci = kmf.confidence_interval_
    med = median_survival_times(ci)
    out["median_months"] = _num(kmf.median_survival_time_)
    out["median_ci"] = [_num(med.iloc[0, 0]), _num(med.iloc[0, 1])]
    at = ci[ci.index <= LANDMARK_MONTHS]
    s = kmf.survival_function_[kmf.survival_function_.index <= LANDMARK_MONTHS]
    out["one_year_pct"] = round(100 * float(s.iloc[-1, 0]), 1)
    out["one_year_ci"] = [round(100 * float(at.iloc[-1, 0]), 1), round(100 * float(at.iloc[-1, 1]), 1)]
    out["at_risk_12"] = sum(1 for _, m, _ in ep.rows if m >= LANDMARK_MONTHS)
    out["curve"] = {"t": [float(x) for x in kmf.survival_function_.index],
                    "s": [float(x) for x in kmf.survival_function_.iloc[:, 0]],
                    "lo": [float(x) for x in ci.iloc[:, 0]], "hi": [float(x) for x in ci.iloc[:, 1]],
                    "censored": [m for _, m, e in ep.rows if not e]}
    return out


def fmt_median(e: dict[str, Any]) -> str:
    """'22.1 (12.7-NE)' ; 'not reached (x-NE)'."""
    if "median_months" not in e:
        return "-"
    m = "not reached" if e["median_months"] is None else f"{e['median_months']:.1f}"
    lo, hi = e["median_ci"]
    return f"{m} ({'NE' if lo is None else f'{lo:.1f}'}-{'NE' if hi is None else f'{hi:.1f}'})"


def fmt_one_year(e: dict[str, Any]) -> str:
    if "one_year_pct" not in e:
        return "-"
    lo, hi = e["one_year_ci"]
    return f"{e['one_year_pct']:.1f} % ({lo:.1f}-{hi:.1f})"
