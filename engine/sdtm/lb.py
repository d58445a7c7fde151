"""SDTM LB -> the rows `ctcae grade` grades: one listing row per LB record that the mapping
gives a lab test, and for every other record the reason it is not graded, per test code.

The grader is the one every listing goes through (engine/adjudicate/safety.py, and the columnar
batch where it applies): this module only reads LB as the mapping says (LBTESTCD -> lab test of
the lab-terms pack, LBSTRESN / LBSTRESU / LBSTNRLO / LBSTNRHI, the baseline by the configured
rule) and hands over rows. Units stay as reported (GI/L, umol/L, ...): the lab-terms pack reads
them. Each row carries its provenance, `LB <USUBJID> LBSEQ <n>`, which the audit cites.
"""
from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from engine.errors import InputError
from engine.sdtm.checks import check_rows, require_variables, seq_label
from engine.sdtm.mapping import Mapping
from engine.sdtm.problems import ERROR, ProblemReport
from engine.sdtm.read import Dataset, number, read_dataset, text

DOMAIN = "LB"


@dataclass
class LabRows:
    """What the grader gets, and what it does not (with the reason)."""
    dataset: Dataset
    listing: list[tuple[int, dict[str, str]]]            # (record number, listing row) to grade
    not_graded: dict[int, dict[str, Any]]                # record number -> output row (reason said)
    per_code: dict[str, dict[str, Any]] = field(default_factory=dict)   # LBTESTCD -> counts and reasons
    report: ProblemReport = field(default_factory=ProblemReport)
    skipped_subjects: list[str] = field(default_factory=list)


def is_sdtm_lb(path: str | Path) -> bool:
    """An SDTM LB dataset rather than a lab listing: an SDTM file type, or a CSV whose header
    names LBTESTCD."""
    p = Path(path)
    if p.suffix.lower() in (".xpt", ".json", ".ndjson"):
        return True
    if p.suffix.lower() != ".csv":
        return False
    try:
        with open(p, encoding="utf-8", errors="replace") as fh:
            header = fh.readline(1 << 16)
    except OSError:
        return False
    return "LBTESTCD" in {h.strip().strip('"').upper().lstrip("\ufeff") for h in header.split(",")}


def lab_rows(path: str | Path, mapping: Mapping, known_tests: frozenset[str] | tuple[str, ...], *,
             strict: bool = False) -> LabRows:
    """Read an SDTM LB file into listing rows (module docstring). Row problems skip the subject
    (every record of it is reported as not graded, with why) or, with `strict`, refuse the file."""
    ds = read_dataset(path)
    if ds.name != DOMAIN and not ds.has("LBTESTCD"):
        raise InputError(f"dataset {ds.name} is not LB", file=ds.file, expected="an SDTM LB dataset (LBTESTCD, LBSTRESN, ...)")
    ds.name = DOMAIN
    res = mapping.lab.result
    require_variables(ds, ("USUBJID", res.test, res.value, res.unit))
    unknown = sorted({e.test for e in mapping.lab.tests if e.test and e.test not in known_tests})
    if unknown:
        raise InputError(f"the SDTM mapping {mapping.id} maps to lab tests the lab-terms pack does not know: "
                         f"{', '.join(unknown)}", field="lab.tests", expected=", ".join(sorted(known_tests)))
    spec = mapping.dataset(DOMAIN)
    report = ProblemReport()
    dates = check_rows(ds, spec, report, mapping.imputation)
    n = len(ds)
    cols = {k: ds.column(v) for k, v in (("test", res.test), ("value", res.value), ("unit", res.unit),
                                           ("lln", res.lln), ("uln", res.uln), ("visit", res.visit),
                                           ("status", res.status))}
    usub = ds.column("USUBJID")
    numbers: dict[str, list[Decimal | None]] = {}
    for key, var in (("value", res.value), ("lln", res.lln), ("uln", res.uln)):
        out: list[Decimal | None] = []
        for i, raw in enumerate(cols[key]):
            try:
                out.append(number(raw))
            except ValueError as exc:
                out.append(None)
                report.add(ds.where(i), usub[i], seq_label(ds, spec, i), var, str(exc), expected="a number")
        numbers[key] = out
    baseline = _baselines(ds, mapping, numbers["value"], report, spec)
    report.refuse_if_strict(strict, f"{ds.file}")
    failed = report.failed_subjects()
    date_col = dates.get(res.date)
    rows = LabRows(ds, [], {}, report=report, skipped_subjects=sorted(failed))
    per_code: dict[str, dict[str, Any]] = defaultdict(lambda: {"rows": 0, "to_grade": 0, "reasons": Counter()})
    names = list(ds.columns)
    for i in range(n):
        record = ds.records[i]
        row = {k: ds.columns[k][i] for k in names}
        code = str(cols["test"][i] or "")
        pc = per_code[code]
        pc["rows"] += 1
        seq = _seq_number(ds.column(spec.seq)[i]) if spec.seq else None
        base = {"usubjid": text(usub[i]) or "", "domain": DOMAIN, "seq": text(seq) or "", "lbtestcd": code,
                "visit": text(cols["visit"][i]) or "",
                "date": (date_col[i].value.isoformat() if date_col and date_col[i].value else ""),
                "source_record": f"{DOMAIN} {text(usub[i])} {spec.seq or 'record'} {text(seq) if seq is not None else record}"}
        if usub[i] in failed:
            why = f"subject {usub[i]} skipped: its LB data has problems (see the report)"
            rows.not_graded[record] = dict(base, term="", grade="", gradable=False, reason=why, source="")
            pc["reasons"]["subject skipped (its LB data has problems)"] += 1
            continue
        test, why = mapping.lab_test(row)
        if test is None:
            rows.not_graded[record] = dict(base, term="", grade="", gradable=False,
                                           reason=f"LBTESTCD {code}: {why}", source="")
            pc["reasons"][why] += 1
            continue
        pc["to_grade"] += 1
        b = baseline.get(i)
        rows.listing.append((record, dict(base, lab_test=test, value=_cell(numbers["value"][i]),
                                          unit=text(cols["unit"][i]) or "", lln=_cell(numbers["lln"][i]),
                                          uln=_cell(numbers["uln"][i]), baseline=_cell(b))))
    rows.per_code = {k: dict(v, reasons=dict(v["reasons"])) for k, v in sorted(per_code.items())}
    return rows


def _seq_number(raw: Any) -> Any:
    try:
        return number(raw)
    except ValueError:
        return raw


def _cell(d: Decimal | None) -> str:
    return "" if d is None else format(d, "f")


def _baselines(ds: Dataset, mapping: Mapping, values: list[Decimal | None], report: ProblemReport,
               spec: Any) -> dict[int, Decimal]:
    """Row index -> the baseline value of its subject and test code (only rows that have one)."""
    rule = mapping.lab.baseline
    res = mapping.lab.result
    usub, codes, units = ds.column("USUBJID"), ds.column(res.test), ds.column(res.unit)
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i in range(len(ds)):
        groups[(str(usub[i]), str(codes[i]))].append(i)
    chosen: dict[tuple[str, str], int] = {}
    if rule.rule == "flag":
        flag_var = next((f for f in rule.flags if ds.has(f)), None)
        if flag_var is None:
            return {}
        flags = ds.columns[flag_var]
        for key, idx in groups.items():
            flagged = [i for i in idx if str(flags[i] or "").upper() == "Y"]
            if len(flagged) > 1:
                for i in flagged[1:]:
                    report.add(ds.where(i), usub[i], seq_label(ds, spec, i), flag_var,
                               f"a second baseline record for {key[1]} (first: record {ds.records[flagged[0]]})",
                               expected=f"one {flag_var} = Y per subject and test")
            elif flagged:
                chosen[key] = flagged[0]
    else:
        if not ds.has(rule.day_variable):
            raise InputError(f"the baseline rule reads {rule.day_variable}, which the dataset lacks", file=ds.file,
                             field=rule.day_variable, expected=rule.describe())
        days = ds.columns[rule.day_variable]
        for key, idx in groups.items():
            best: tuple[Decimal, int] | None = None
            for i in idx:
                try:
                    d = number(days[i])
                except ValueError:
                    d = None
                if d is None or values[i] is None or d > rule.on_or_before:
                    continue
                if best is None or (d, ds.records[i]) >= (best[0], ds.records[best[1]]):
                    best = (d, i)
            if best is not None:
                chosen[key] = best[1]
    out: dict[int, Decimal] = {}
    for key, b in chosen.items():
        if values[b] is None:
            continue
        for i in groups[key]:
            if str(units[i] or "") == str(units[b] or ""):   # a baseline in another unit is not used
                out[i] = values[b]
    return out


def per_code_lines(rows: LabRows, graded: list[dict[str, Any]]) -> list[str]:
    """The grading report: per LBTESTCD, rows, graded, and why the rest is not graded (the three
    most frequent reasons, with counts)."""
    why: dict[str, Counter] = defaultdict(Counter)
    graded_n: Counter = Counter()
    for r in graded:
        code = r.get("lbtestcd", "")
        if r.get("gradable") in (True, "True"):
            graded_n[code] += 1
        else:
            why[code][_short(r.get("reason") or "", code)] += 1
    out = [f"{'LBTESTCD':<10} {'rows':>7} {'graded':>7}  not graded: why (rows)"]
    for code, pc in rows.per_code.items():
        reasons = "; ".join(f"{k} ({v})" for k, v in why[code].most_common(3))
        out.append(f"{code:<10} {pc['rows']:>7} {graded_n[code]:>7}  {reasons}".rstrip())
    return out


def _short(reason: str, code: str) -> str:
    """A reason without the row-specific part, for counting (e.g. 'LLN missing: ...')."""
    import re
    text_ = re.sub(r"^(row \d+: |LBTESTCD \S+: )", "", reason.split(" [")[0])
    return text_ if len(text_) <= 100 else text_[:97] + "..."


def problem_severity_counts(report: ProblemReport) -> dict[str, int]:
    c = Counter(p.severity for p in report)
    return {"errors": c.get(ERROR, 0), "notes": sum(v for k, v in c.items() if k != ERROR)}
