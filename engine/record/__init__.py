"""The subject record: pydantic models of one trial subject, loaded from YAML/JSON files.

Public surface: `load_subject`, `load_subjects`, `field_source`, `SubjectRecord`, subject
tables (`parse_subject_json`, `iter_table`, `count_table`, `is_table`),
`subject_json_schema`, and the helpers `completed_years` and `age_at_consent`. How a fact is
derived from the record (a ratio to the ULN, a creatinine clearance) is the packs' `from:`
(engine/facts/derive.py). Field reference: docs/subject-record.md.
"""

from typing import Any

from engine.record.demographics import completed_years
from engine.record.load import (count_table, field_source, is_table, iter_table, load_subject,
                                load_subjects, parse_subject_json)
from engine.record.subject import SubjectRecord, age_at_consent, iter_dates


def subject_json_schema() -> dict[str, Any]:
    """JSON Schema of a subject file (what the loader accepts, before unit conversion)."""
    from engine.record.schema import subject_json_schema as generate
    return generate()


__all__ = [
    "SubjectRecord", "load_subject", "load_subjects", "field_source", "subject_json_schema",
    "completed_years", "age_at_consent", "iter_dates",
    "parse_subject_json", "iter_table", "count_table", "is_table",
]
