"""Regenerate docs/subject-record.md from the record models (run after changing a model).

    .venv/bin/python scripts/gen_subject_record_doc.py          # rewrite the file
    .venv/bin/python scripts/gen_subject_record_doc.py --check  # exit 1 if it is stale
"""
from __future__ import annotations

import datetime as dt
import sys
import types
import typing
from decimal import Decimal
from pathlib import Path

from pydantic import BaseModel

from engine.record import SubjectRecord

DOC = Path(__file__).resolve().parent.parent / "docs" / "subject-record.md"

INTRO = """# The subject record

One file per subject, YAML (`.yaml`/`.yml`) or JSON (`.json`), loaded by
`engine.record.load_subject(path)` into `SubjectRecord` (pydantic, frozen). The JSON Schema is
printed by `adjudicator schema subject`. Synthetic examples: `fixtures/subjects/example-*.yaml`.

## Conventions

- **Numbers are `Decimal`** inside the record (never binary floats), so that rule comparisons
  are exact (1.8 vs 1.5 x 1.2). A number is a YAML/JSON number, or a string holding only a
  decimal number: optional sign, digits with an optional fraction, optional exponent (`"68"`,
  `".5"`, `"6.8e1"`, `"1e-05"`); `"68 kg"`, `" 68"`, `"1_000"`, `"1,5"` are refused. A float is
  read through its shortest decimal form (0.1 -> `Decimal('0.1')`). A whole number (ECOG, cycle
  number, ...) is an integer (`2`, `2.0`) or a string of digits (`"2"`), never `"2.0"` or `true`.
- **Booleans are `true`/`false`** (YAML's `yes`/`no` are read as such by YAML itself); a string
  `"true"`, `"yes"` or a number `1` is refused rather than guessed.
- **Canonical units inside**: blood counts (ANC, platelets, WBC) in 10^9/L, haemoglobin in
  g/dL, blasts, cellularity and MRD in %, weight kg, height cm, LVEF %, fibrinogen g/L.
  Counts and haemoglobin also accept `{value, unit}` at the edge, converted by exact scalings
  only (Decimal arithmetic):
  - counts: `10^9/L`, `G/L`, `10^3/uL`, `K/uL` x 1; `cells/uL`, `cells/mm3`, `/uL`, `/mm3`
    x 0.001 (so `{value: 1200, unit: cells/uL}` is 1.2);
  - haemoglobin: `g/dL` x 1, `g/L` x 0.1 (85 g/L is 8.5 g/dL); mmol/L is refused (not an exact
    scaling).
  Any other unit is refused with a message naming it.
- **Lab listings (`labs`) keep value and unit as reported**: the CTCAE grader applies the
  cut-off published for the reported unit. Screening organ labs keep their unit too; a pack
  reads them as multiples of the ULN (`x_uln`, else value / uln, in its `from:`).
- **Unknown is null** (or the field is left out), never `false` or `0`. A gene left out is
  `not_tested`, which is distinct from `wild_type`.
- **Dates** are ISO dates (`2021-09-30`, a YAML date or a JSON string); a number (seconds
  since 1970 to pydantic), `20210930` or a date with a time is refused.
- **The JSON Schema** (`adjudicator schema subject`, draft 2020-12) describes exactly these
  spellings and shorthands (`anyOf`: a number or decimal text; a count as a number or
  `{value, unit}` with the units below; a gene as its bare status or `{status, ...}`; a
  karyotype code, or the integer YAML reads for `-5`/`-7`/`-17`), and forbids unknown keys in
  every object. Every fixture subject validates against it (tests/test_subject_schema.py, which
  also checks that the schema and the loader accept and refuse the same spellings). What a
  schema cannot say is checked by the loader only: the range of a number written as a string,
  the magnitude bound of every number (0, or 1E-12 to 1E13), calendar-valid dates (the schema's
  `format: date`, which a validator checks only when asked to), and the cross-field checks
  below. The patterns are read as Python's `re.search` reads them (the `jsonschema`
  validator's reading), which allows one final newline that an ECMA-regex validator refuses.
- **Age** is in completed years at consent: `demographics.age_years`, or computed from
  `demographics.birth_date` and `consent_date` (`age_at_consent()`); if both are given they
  must agree. The birthday counts on the day itself.
- **Creatinine clearance**: `screening.labs.creatinine_clearance_ml_min` as reported; without it
  an eligibility pack computes Cockcroft-Gault from age, weight, sex and serum creatinine (mg/dL,
  or umol/L / 88.4) in its `from:` (docs/rule-language.md, "Where a fact comes from").

## Validation

Every problem is an `InputError` with one line: `file[:line], subject ID, field dotted.path:
message (expected ...)`, e.g.
`S001.yaml:57, subject S001, field on_study.assessments[1].marrow.blasts_pct: Input should be
less than or equal to 100 (got 140)`. With several problems the first is named and
"(+N more)" is added. Checked:

- malformed YAML/JSON (with line), duplicate keys, a file that is not a mapping;
- unknown fields (the message lists the allowed ones), missing required fields, wrong types;
- impossible values: percentages outside 0-100, negative counts, ECOG outside 0-5, NYHA
  outside 1-4, age/weight/height out of human range, unknown units;
- dates: nothing (except the birth date) before the birth date; no history entry, marrow or
  on-study date before the diagnosis; a cycle's marrow_after not before its start; last dose
  not before first dose; resolution not before onset; no on-study date, lab or AE onset after
  death; follow-up events (transplant, DLI) on or after the first dose, on or before the last
  contact, not after death; age_years consistent with birth date at consent. A relapse before any remission is
  allowed (the rule packs judge it);
- consistency: a male with childbearing potential; GVHD `present` vs `kind`; a gene detail
  (VAF, allelic ratio) on a gene not `mutated`; karyotype findings with `karyotype_done:
  false`; `normal` with other findings; duplicate ids, cycle numbers and dosing days.

`load_subjects(folder)` yields `(path, record or InputError)` for every `.yaml/.yml/.json`
file (sorted; a repeated subject_id is an error for the later file).
`field_source(path, "screening.labs.bilirubin")` gives the provenance string
`path#screening.labs.bilirubin` that fact sheets cite.

**Subject tables** (bulk runs, where a folder of a million files is impractical and JSON parses
about four times faster than YAML): a `.jsonl` (or `.ndjson`) file holds one subject per line,
each line one JSON object exactly as a `.json` subject file would hold it (dates as ISO strings);
blank lines are ignored. A table subject is named `<table>:<line>`: its errors say
`file=cohort.jsonl:17` (a syntax error adds the column), and its facts cite
`cohort.jsonl:17#screening.labs.bilirubin`. `iter_table(path)` streams `(line, text)` without
reading the table whole; `parse_subject_json(text, "cohort.jsonl:17", one_line=True)` validates
one line (the same JSON reading as `load_subject` on a `.json` file: duplicate keys refused).
`adjudicator cohort` accepts tables, or folders holding them; `fixtures/cohort/generate.py
--format jsonl` writes one.

## The timeline: what the packs' collections and courses read

The record is also read as a timeline of dated events (`engine/facts/timeline.py`); a pack declares
the kinds and fields it reads (docs/rule-language.md). Each field cites the record field it came
from. Kinds and fields:

| kind | from | fields |
|---|---|---|
| `assessment` | each `on_study.assessments[i]` (`assessment.line: study`); each earlier marrow of the treatment history: a cycle's `marrow_before` / `marrow_after` (dated, else placed on the cycle's start, before / after it) and a stand-alone `marrow` entry (`assessment.line: prior`) | `assessment.line`, `assessment.timepoint`, `assessment.cycle`, `assessment.site_response` (the site's label of an earlier marrow: a fallback), `marrow.present`, `marrow.adequate`, `marrow.aplastic`, `marrow.blasts_pct`, `marrow.auer_rods`, `marrow.regenerating`, `marrow.spicules`, `marrow.cellularity_pct`, `marrow.cells_counted`, `blood.anc`, `blood.platelets`, `blood.hb`, `blood.wbc`, `blood.blasts_pct`, `transfusion.platelet_within_7d`, `transfusion.platelet_last_date`, `transfusion.rbc_dependent`, `emd.status`, `mrd.done`, `mrd.value_pct`, `mrd.method`, `mrd.sensitivity` |
| `blood_sample` | the blood of each assessment, and each date in `blood.blood_blast_sample_dates` (one sample per date) | `blood.blasts_pct`, `blood.anc`, `blood.platelets`, `blood.blasts_present` (listed as a sample with blasts) |
| `cycle` | `on_study.cycles[i]` (`cycle.line: study`), history `cycle` entries (`cycle.line: prior`) | `cycle.line`, `cycle.number`, `cycle.intensity`, `cycle.phase`, `cycle.regimen`, `cycle.agent.<agent>` (one per entry of the cycle's `agents`) |
| `remission` | history `remission` entries | `remission.kind`, `remission.mrd_negative` |
| `relapse` | history `relapse` entries | `relapse.marrow`, `relapse.blood`, `relapse.extramedullary` (from `sites`), `relapse.bm_blasts_pct`, `relapse.mrd_only` |
| `hsct`, `dli` | history entries | `hsct.kind`, `hsct.number`, `hsct.disease_status` |
| `death` | `death` | `death.in_aplasia`, `death.marrow_within_7d`, `death.persistent_leukemia` |

Every event also has `event.date`, `event.id` (the assessment id, or the record path such as
`treatment_history[3]`; a field that is not recorded is named `<event id>:<field>` in missing
facts) and `event.kind`. **Earlier marrows** take the same facts as on-study assessments (`marrow`,
`blood`, `mrd`, `extramedullary`, transfusion facts); the first record format's shorthands are
still read: `blasts_pct` is `marrow.blasts_pct`, `mrd_pct` is `mrd: {done: true, value_pct}`, and
`response` is the site's label, kept as a fallback (the disease-status pack judges the marrow
from its facts when they are recorded). An empty or absent `treatment_history` is missing data
(disease status INDETERMINATE, naming `treatment_history`).

## Fields

Generated from the models by `scripts/gen_subject_record_doc.py`; do not edit below by hand.
"""


def _type_name(annotation: typing.Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        base = _type_name(args[0])
        if args[0] is Decimal and any(getattr(m, "json_schema_input_type", None)
                                      for m in args[1:]):
            return "number or {value, unit}"
        return base
    if origin in (typing.Union, types.UnionType):
        names = [_type_name(a) for a in args if a is not type(None)]
        if len(args) > len(names) and len(names) == 1:
            return names[0]
        return " or ".join(names)
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in args)
    if origin is list:
        return f"list of {_type_name(args[0])}"
    if origin is dict:
        return f"mapping of {_type_name(args[0])} to {_type_name(args[1])}"
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return f"[{annotation.__name__}](#{annotation.__name__.lower()})"
    return {Decimal: "number", dt.date: "date", str: "text", int: "integer",
            bool: "true/false"}.get(annotation, getattr(annotation, "__name__", str(annotation)))


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    """Every model reachable from root, in breadth-first order."""
    order, queue = [], [root]
    while queue:
        model = queue.pop(0)
        if model in order:
            continue
        order.append(model)
        for field in model.model_fields.values():
            queue.extend(_nested(field.annotation))
    return order


def _nested(annotation: typing.Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [m for a in typing.get_args(annotation) for m in _nested(a)]


def render() -> str:
    lines = [INTRO]
    for model in _models(SubjectRecord):
        doc = " ".join((model.__doc__ or "").split("\n\n")[0].split())
        lines += [f"### {model.__name__}", "", doc, "",
                  "| field | type | required | meaning and unit |", "|---|---|---|---|"]
        for name, field in model.model_fields.items():
            required = "yes" if field.is_required() else ""
            meaning = (field.description or "").replace("|", "\\|")
            lines.append(f"| `{name}` | {_type_name(field.annotation)} | {required} | {meaning} |")
        lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    text = render()
    if "--check" in sys.argv:
        stale = not DOC.exists() or DOC.read_text(encoding="utf-8") != text
        print(f"{DOC} is {'stale' if stale else 'up to date'}")
        sys.exit(1 if stale else 0)
    DOC.write_text(text, encoding="utf-8")
    print(f"wrote {DOC}")
