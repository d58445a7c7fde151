"""Subject record -> the fact sheet of a screening: the facts the trial's screening packs declare,
each derived as its `from:` says (engine/facts/derive.py), plus the coded findings.

No fact is named here: which record field gives the age, how a ratio to the ULN or a creatinine
clearance is computed, which karyotype codes and genes are read - all of it is in the packs. The
prior-therapy timeline is not summarised here either: it is handed to the disease-status pack as
the subject's timeline (engine/facts/timeline.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from engine.errors import InputError
from engine.evaluate.facts import FactSheet
from engine.facts.derive import derive, unread_codes
from engine.record import SubjectRecord, field_source
from engine.record.findings import FINDING_PREFIX
from engine.rules.model import FactDecl


def screening_facts(record: SubjectRecord, path: str | Path, decls: Iterable[FactDecl]) -> FactSheet:
    """The fact sheet the screening packs read, each value with `file#field` as its source."""
    sheet = derive(record, decls, path)
    _findings(record, str(path), sheet)
    return sheet


def unread_warnings(record: SubjectRecord, path: str | Path, decls: Iterable[FactDecl], packs: str) -> list[str]:
    """A code in a record list that the packs search but never name: say it changes nothing."""
    return [f"{field_source(str(path), where)}: {code!r} is not read by {packs}: it changes no decision "
            f"(review whether a criterion should name it)" for where, code in unread_codes(record, decls)]


def _findings(r: SubjectRecord, path: str, sheet: FactSheet) -> None:
    """Every coded finding as the fact `finding.<name>` (the reading pack types it)."""
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for i, f in enumerate(r.findings):
        name = FINDING_PREFIX + f.name
        if name in values:
            raise InputError(f"finding {f.name!r} recorded twice", file=path, subject=r.subject_id,
                             field=f"findings[{i}].name", expected="each finding once (the one in force)")
        values[name], sources[name] = f.value, field_source(path, f"findings[{i}].value")
    found = FactSheet.of(values, sources)
    sheet.values.update(found.values)
    sheet.sources.update(found.sources)


def finding_units(record: SubjectRecord, path: str | Path, facts: Any) -> None:
    """A finding recorded in another unit than the one its pack declares is refused (no
    conversion: a DLCO in mL/min/mmHg is not a % predicted)."""
    declared = {f.name: f.unit for f in facts if f.name.startswith(FINDING_PREFIX)}
    for i, f in enumerate(record.findings):
        want = declared.get(FINDING_PREFIX + f.name)
        if want and f.unit is not None and f.unit != want:
            raise InputError(f"finding {f.name!r} is in {f.unit!r}", file=str(path), subject=record.subject_id,
                             field=f"findings[{i}].unit", expected=f"{want!r} (the unit the pack declares)")
