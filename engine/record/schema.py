"""The JSON Schema of a subject file, true to the loader: what it accepts, the schema accepts.

pydantic generates it from the record models; this generator only spells the scalars as the
loader's edge check does (engine/record/spelling.py): a number is a JSON number or a string of
decimal text ("68", "6.8e1"; never "68 kg"), a whole number a JSON integer or a string of digits,
a date an ISO date string. Shorthands are `anyOf` alternatives declared beside the models that read
them (a gene's bare status, counts and haemoglobin as {value, unit}, YAML's integer -7 for a
karyotype code). Not expressible here, and checked by the loader only: the range of a number
written as a string, the magnitude bound of every number (units.bounded), and the cross-field
checks (dates in order, age against birth date, unique ids).
"""

from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from engine.record.spelling import DATE_PATTERN, DECIMAL_PATTERN, INTEGER_PATTERN


class SubjectJsonSchema(GenerateJsonSchema):
    """pydantic's generator, with the scalar spellings of spelling.py."""

    def get_decimal_pattern(self, schema: core_schema.DecimalSchema) -> str | None:
        return DECIMAL_PATTERN

    def int_schema(self, schema: core_schema.IntSchema) -> JsonSchemaValue:
        number = super().int_schema(schema)
        return {"anyOf": [number, {"type": "string", "pattern": INTEGER_PATTERN}]}

    def date_schema(self, schema: core_schema.DateSchema) -> JsonSchemaValue:
        return {"type": "string", "format": "date", "pattern": DATE_PATTERN}


def subject_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of a subject file or a table line, before unit conversion."""
    from engine.record.subject import SubjectRecord
    schema = SubjectRecord.model_json_schema(mode="validation", schema_generator=SubjectJsonSchema)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
