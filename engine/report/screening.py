"""The readable `adjudicator screen` output: one table of criteria, then the verdict, disease
status, ELN risk, advisories and the decision id."""

from typing import Any

from rich.console import Console
from rich.table import Table

from engine.adjudicate.screening import ScreeningResult

STYLE = {"pass": "green", "fail": "bold red", "unknown": "yellow",
         "ELIGIBLE": "bold green", "INELIGIBLE": "bold red", "INDETERMINATE": "bold yellow"}


def verdict_reason(result: ScreeningResult, titles: dict[str, str] | None = None) -> str:
    """The title of the verdict table's deciding row (its id when untitled), '' when undecided."""
    from engine.report.deciding import deciding_rows
    rows = deciding_rows(result.trace(), result.pack["id"])
    return "; ".join(f"{k}: {(titles or {}).get(f'{p}:{k}')}" if (titles or {}).get(f"{p}:{k}") else k
                     for p, k in rows)


def print_screening(result: ScreeningResult, console: Console | None = None,
                    titles: dict[str, str] | None = None) -> None:
    """Print the screening of one candidate as a table and a short summary."""
    from engine.report.tables import console as default_console
    console = console or default_console
    table = Table(title=f"Screening {result.subject_id} - {result.pack['id']} {result.pack['version']}")
    for name in ("criterion", "outcome", "why", "missing facts"):
        table.add_column(name, overflow="fold", no_wrap=name in ("criterion", "outcome"))
    for c in result.criteria:
        mark = "*" if c.basis == "operational" else ""
        table.add_row(c.id + mark, f"[{STYLE[c.outcome]}]{c.outcome}[/]", c.why, "\n".join(c.missing))
    console.print(table)
    if any(c.basis == "operational" for c in result.criteria):
        console.print("* decided with the operational profile (OP-*), not protocol text", style="dim")
    why = verdict_reason(result, titles)
    console.print(f"verdict: [{STYLE[result.verdict]}]{result.verdict}[/]"
                  + (f"  decided by: {', '.join(result.decided_by)}" if result.verdict != "ELIGIBLE" else "")
                  + (f"  ({why})" if why else ""), highlight=False)
    if result.missing:
        console.print("still missing: " + ", ".join(result.missing))
        for fact, fields in result.record_fields.items():   # where the packs' `from:` would read it
            console.print(f"  {fact} <- record {' | '.join(fields)}", highlight=False)
    ds = result.disease_status
    if ds:   # a trial with a disease-status pack (its protocol's packs.disease_status)
        line = f"disease status: {ds['trial_status']}"
        if ds.get("candidates"):
            line += f" (candidates {', '.join(map(str, ds['candidates']))})"
        if ds.get("relapse_setting"):
            line += f", {ds['relapse_setting']}, relapse {ds.get('relapse_number')}"
        line += (f"; ELN 2017 primary refractory: {_flag(ds['eln2017_primary_refractory'])}"
                 f", ELN 2022 refractory: {_flag(ds['eln2022_refractory'])}")
        console.print(line)
        if ds.get("missing"):
            console.print("  undecided: " + "; ".join(f"{k} needs {', '.join(v)}" for k, v in ds["missing"].items()))
    risk = result.eln_risk
    if risk:  # a trial with a genetic-risk pack
        console.print(f"ELN risk: 2017 {risk['eln2017']}, 2022 {risk['eln2022']} (genetics: {risk.get('genetics_timepoint') or 'timepoint not recorded'})")
        for version, miss in risk.get("missing", {}).items():
            console.print(f"  {version} undecided between {', '.join(map(str, risk['candidates'][version]))}: needs {', '.join(miss)}")
        if risk.get("note"):
            console.print(f"  note: {risk['note']}")
    for a in result.advisories:
        tag = "advisory" if a.status == "applies" else "advisory, cannot check"
        extra = f" (needs {', '.join(a.missing)})" if a.missing else ""
        console.print(f"[cyan]{tag}[/] {a.id}: {a.message}{extra}")
    for w in result.warnings:
        console.print(f"[magenta]warning[/] {w}")
    console.print(f"decision id: {result.decision_id or '(not recorded)'}")


def _flag(v: Any) -> str:
    return "n/a" if v is None else ("yes" if v else "no")
