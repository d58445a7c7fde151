"""Row checks every SDTM dataset gets, and the merge of SUPP-- qualifiers into their parent.

Each problem names file:record, USUBJID, --SEQ and variable (engine/sdtm/problems.py). A dataset
that lacks a required *variable* (a column) cannot be read at all: InputError at once.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from engine.errors import InputError
from engine.sdtm.dates import Imputation, ReadDate, read_dtc
from engine.sdtm.mapping import DatasetSpec
from engine.sdtm.problems import NOTE, ProblemReport
from engine.sdtm.read import Dataset, number, text

SUPP_VARIABLES = ("USUBJID", "RDOMAIN", "IDVAR", "IDVARVAL", "QNAM", "QVAL")


def seq_label(ds: Dataset, spec: DatasetSpec, i: int) -> str | None:
    """`LBSEQ 17` for row i (None for a dataset without --SEQ)."""
    if not spec.seq:
        return None
    value = ds.columns.get(spec.seq, [None] * len(ds))[i]
    return f"{spec.seq} {text(value) if value is not None else '(empty)'}"


def require_variables(ds: Dataset, names: tuple[str, ...] | list[str], why: str = "") -> None:
    """InputError naming the dataset and the first variable it lacks."""
    for name in names:
        if not ds.has(name):
            raise InputError(f"dataset {ds.name} lacks the variable {name}{why}", file=ds.file, field=name,
                             expected=f"the SDTM variables {', '.join(names)}")


def check_rows(ds: Dataset, spec: DatasetSpec, report: ProblemReport,
               imputation: Imputation | None) -> dict[str, list[ReadDate]]:
    """Required values present, --SEQ a number and unique per subject, --DTC dates readable.
    Returns the dates read, per date variable the dataset has (a partial date is reported as a
    note, with its imputation when a rule is configured; an impossible one as an error)."""
    require_variables(ds, spec.required)
    usubjid = ds.column("USUBJID")
    seen: dict[tuple[str, Decimal], int] = {}
    for var in spec.required:
        col = ds.columns[var]
        for i, v in enumerate(col):
            if v is None:
                report.add(ds.where(i), usubjid[i], seq_label(ds, spec, i), var, "required value is empty",
                           expected="a value in every row")
    if spec.seq and ds.has(spec.seq):
        for i, raw in enumerate(ds.columns[spec.seq]):
            if raw is None:
                continue
            try:
                seq = number(raw)
            except ValueError as exc:
                report.add(ds.where(i), usubjid[i], None, spec.seq, str(exc), expected="a sequence number")
                continue
            key = (str(usubjid[i]), seq.normalize())
            if key in seen:
                report.add(ds.where(i), usubjid[i], seq_label(ds, spec, i), spec.seq,
                           f"duplicate {spec.seq}: also used by record {ds.records[seen[key]]}",
                           expected=f"{spec.seq} unique within the subject")
            else:
                seen[key] = i
    dates: dict[str, list[ReadDate]] = {}
    for var in spec.dates:
        if not ds.has(var):
            continue
        out = []
        for i, raw in enumerate(ds.columns[var]):
            rd = read_dtc(raw, imputation)
            out.append(rd)
            if rd.status == "invalid":
                report.add(ds.where(i), usubjid[i], seq_label(ds, spec, i), var, rd.message or "not a date",
                           expected="an ISO 8601 date (YYYY-MM-DD, or partial YYYY-MM / YYYY)")
            elif rd.status in ("partial", "imputed"):
                report.add(ds.where(i), usubjid[i], seq_label(ds, spec, i), var, rd.message or "partial date",
                           severity=NOTE)
        dates[var] = out
    return dates


def merge_supp(parent: Dataset, supp: Dataset, parent_spec: DatasetSpec, report: ProblemReport) -> list[str]:
    """Add the qualifiers of SUPP-- (QNAM = QVAL) as variables of the parent rows they name (IDVAR =
    IDVARVAL, or every row of the subject when IDVAR is empty). Returns the QNAMs added. A SUPP row
    naming no parent row, a QNAM that shadows a parent variable, or two values for one row are
    problems of that SUPP row."""
    require_variables(supp, SUPP_VARIABLES, f" (a SUPP{parent.name} dataset)")
    col = {v: supp.column(v) for v in SUPP_VARIABLES}
    usub = parent.column("USUBJID")
    by_subject: dict[str, list[int]] = {}
    for i, u in enumerate(usub):
        by_subject.setdefault(str(u), []).append(i)
    added: dict[str, list[Any]] = {}
    for j in range(len(supp)):
        u, rdom, idvar, idval, qnam, qval = (col[v][j] for v in SUPP_VARIABLES)
        where = supp.where(j)
        if str(rdom or "").upper() != parent.name:
            report.add(where, u, None, "RDOMAIN", f"RDOMAIN {rdom!r} in SUPP{parent.name}", expected=parent.name)
            continue
        qnam = str(qnam or "").upper()
        if not qnam:
            report.add(where, u, None, "QNAM", "empty qualifier name", expected="a QNAM")
            continue
        if parent.has(qnam):
            report.add(where, u, None, "QNAM", f"qualifier {qnam} has the name of a {parent.name} variable",
                       expected="a QNAM that is not a parent variable")
            continue
        rows = by_subject.get(str(u), [])
        if idvar:
            idvar = str(idvar).upper()
            if not parent.has(idvar):
                report.add(where, u, None, "IDVAR", f"IDVAR {idvar} is not a variable of {parent.name}",
                           expected=f"a variable of {parent.name}, e.g. {parent_spec.seq or 'USUBJID'}")
                continue
            rows = [i for i in rows if _same(parent.columns[idvar][i], idval)]
        if not rows:
            report.add(where, u, f"IDVARVAL {idval}" if idvar else None, "IDVARVAL",
                       f"names no {parent.name} record of this subject", expected=f"a {parent.name} record")
            continue
        target = added.setdefault(qnam, [None] * len(parent))
        for i in rows:
            if target[i] is not None and target[i] != qval:
                report.add(where, u, seq_label(parent, parent_spec, i), qnam,
                           f"a second value {qval!r} for one record (first {target[i]!r})", expected="one value")
            target[i] = qval
    for qnam, values in added.items():
        parent.columns[qnam] = values
        from engine.sdtm.read import Variable
        parent.variables.append(Variable(qnam, f"SUPP{parent.name} qualifier", "text"))
    return sorted(added)


def _same(a: Any, b: Any) -> bool:
    """IDVARVAL (always text in SUPP--) equals the parent's value (a number for --SEQ)."""
    if a is None or b is None:
        return False
    try:
        na, nb = number(a), number(b)
        if na is not None and nb is not None:
            return na == nb
    except ValueError:
        pass
    return str(a).strip() == str(b).strip()
