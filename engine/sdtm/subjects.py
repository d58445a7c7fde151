"""A folder of SDTM datasets <-> subject records (`adjudicator import sdtm DIR --trial NAME`, and the
synthetic cohort written as SDTM).

Reading: every dataset of the folder (engine/sdtm/read.py), SUPP-- merged into its parent, each
dataset's rows checked (required values, --SEQ, dates: engine/sdtm/checks.py), rows of a subject
absent from DM reported, the record built by the mapping's rules (engine/sdtm/records.py) and
validated by the record models. A problem names file:record, USUBJID, --SEQ and variable; a
record the models refuse is reported at the SDTM value it came from. The subjects with an error
are skipped (and listed) or, with `strict`, the import is refused.

Each record carries `sources`: its dotted fields -> `DOMAIN USUBJID --SEQ n VARIABLE`, which the
fact sheets (and so the audit snapshot) cite as the source of each value.
"""
from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from engine.errors import InputError
from engine.sdtm.checks import check_rows, merge_supp
from engine.sdtm.mapping import DatasetSpec, Mapping
from engine.sdtm.problems import ProblemReport
from engine.sdtm.read import Dataset, dataset_files, read_dataset
from engine.sdtm.records import read_records, write_rows
from engine.sdtm.write import Column, write_dataset

FIRST = ("STUDYID", "DOMAIN", "USUBJID")


@dataclass
class Imported:
    records: list[Any]                       # SubjectRecord, each with `sources`
    report: ProblemReport
    datasets: dict[str, int] = field(default_factory=dict)   # dataset -> rows read
    skipped: list[str] = field(default_factory=list)


def _rules(mapping: Mapping) -> list[dict[str, Any]]:
    rules = (mapping.record or {}).get("rules")
    if not rules:
        raise InputError(f"the SDTM mapping {mapping.id} has no record rules", field="record.rules",
                         expected="a trial mapping (rules/<trial>/sdtm-mapping.yaml) with record.rules")
    return rules


# --- writing ---------------------------------------------------------------------------------------------

def write_sdtm(records: Iterable[Any], mapping: Mapping, out_dir: str | Path, fmt: str = "json") -> dict[str, int]:
    """Write subject records as SDTM datasets (one file per dataset) into out_dir; InputError
    naming the first record field no rule of the mapping covers (nothing is written then)."""
    dumps = [r.model_dump(mode="json", exclude_unset=True, exclude={"sources"}) for r in records]
    rows = write_rows(dumps, _rules(mapping), str(mapping.record.get("study", "")), mapping.terminology)
    if rows.unmapped:
        sid, path = rows.unmapped[0]
        more = f" (+{len(rows.unmapped) - 1} more)" if len(rows.unmapped) > 1 else ""
        raise InputError(f"no rule of the SDTM mapping {mapping.id} writes {path}{more}", subject=sid,
                         field=path, expected="a record.rules entry covering every field the records hold")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = {}
    for name in sorted(rows.rows):
        data = rows.rows[name]
        names = list(dict.fromkeys([*FIRST, *(k for r in data for k in r)]))
        names = [n for n in names if any(n in r for r in data)]
        cols = [Column(n, n) for n in names]
        write_dataset(out / f"{name.lower()}.{ 'json' if fmt == 'json' else fmt}", name, name, cols, data, fmt)
        counts[name] = len(data)
    return counts


# --- reading -----------------------------------------------------------------------------------------------

def import_sdtm(folder: str | Path, mapping: Mapping, *, strict: bool = False) -> Imported:
    """Subject records from a folder of SDTM datasets (module docstring)."""
    from engine.record.load import _validate   # the record models' validation with field paths: one way
    rules = _rules(mapping)
    files = dataset_files(folder)
    datasets = {name: read_dataset(p) for name, p in files.items()}
    for name, ds in datasets.items():
        ds.name = name
    if "DM" not in datasets:
        raise InputError("no DM dataset", file=str(folder), expected="dm.xpt, dm.json, dm.ndjson or dm.csv")
    report = ProblemReport()
    parents = {n: d for n, d in datasets.items() if not n.startswith("SUPP")}
    for name, ds in datasets.items():
        if name.startswith("SUPP"):
            parent = parents.get(name[4:])
            if parent is None:
                raise InputError(f"{name} qualifies {name[4:]}, which the folder does not hold", file=ds.file,
                                 expected=f"a {name[4:]} dataset beside it")
            merge_supp(parent, ds, _spec(mapping, rules, name[4:]), report)
    for name, ds in parents.items():
        dates = check_rows(ds, _spec(mapping, rules, name), report, mapping.imputation)
        for var, read in dates.items():   # the record gets the date read (imputed by the rule), or nothing
            ds.columns[var] = [r.value.isoformat() if r.value else None for r in read]
    dm = set(str(u) for u in parents["DM"].column("USUBJID") if u)
    for name, ds in parents.items():
        if name == "DM":
            continue
        seen: set[str] = set()
        for i, u in enumerate(ds.column("USUBJID")):
            if u and str(u) not in dm and str(u) not in seen:
                seen.add(str(u))
                report.add(ds.where(i), str(u), None, "USUBJID", f"subject {u} is in {name} but not in DM",
                           expected="every subject in DM")
    built = read_records(parents, rules, mapping.terminology, report)
    records: list[tuple[str, Any]] = []
    for usubjid in sorted(built):
        b = built[usubjid]
        if usubjid not in dm:
            continue
        try:
            rec = _validate(dict(b.record, sources=dict(sorted(b.sources.items()))), f"{folder}", None)
        except InputError as exc:
            where = _source_of(b.sources, exc.field or "")
            report.add(where or str(folder), usubjid, None, exc.field, exc.detail, exc.expected)
            continue
        records.append((usubjid, rec))
    report.refuse_if_strict(strict, f"SDTM import of {folder}")
    failed = report.failed_subjects()      # by USUBJID, as the report names them
    kept = [r for u, r in records if u not in failed]
    return Imported(kept, report, {n: len(d) for n, d in datasets.items()},
                    sorted(failed & (dm | set(built))))


def _spec(mapping: Mapping, rules: list[dict[str, Any]], name: str) -> DatasetSpec:
    spec = mapping.dataset(name)
    if spec.seq is None:
        seq = next((r.get("seq") for r in rules if r["dataset"] == name and r.get("seq")), None)
        if seq:
            spec = DatasetSpec(seq=seq, required=spec.required, dates=spec.dates)
    return spec


def _source_of(sources: dict[str, str], field_path: str) -> str | None:
    """The SDTM value a record field came from; for a field that was not read (a required value
    left empty or unknown), the record(s) of the object that should hold it."""
    path = field_path
    while path:
        if path in sources:
            return sources[path]
        below = [v for k, v in sources.items() if k.startswith((path + ".", path + "["))]
        if below:
            return ", ".join(dict.fromkeys(v.rsplit(" ", 1)[0] for v in below))
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return None


def write_table(records: list[Any], path: str | Path) -> None:
    """The records as a JSON Lines subject table (atomically: a temporary file renamed)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        for r in records:
            fh.write(_json(r.model_dump(exclude_unset=True)) + "\n")
    os.replace(tmp, path)


def _json(v: Any) -> str:
    """JSON of a record dump whose numbers stay numbers in their exact decimal form (pydantic's
    JSON mode writes a Decimal as a string, which a free-form fact would then read as text)."""
    if isinstance(v, dict):
        return "{" + ",".join(f"{json.dumps(str(k), ensure_ascii=False)}:{_json(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(_json(x) for x in v) + "]"
    if isinstance(v, Decimal):
        return format(v, "f")
    if isinstance(v, (dt.date, dt.datetime)):
        return json.dumps(v.isoformat())
    return json.dumps(v, ensure_ascii=False)


def dataset_of(datasets: dict[str, Dataset], name: str) -> Dataset | None:
    return datasets.get(name)
