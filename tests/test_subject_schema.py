"""The printed subject JSON Schema is true to the loader (issue 12 item 2): every fixture subject
validates, and on the tricky spellings (numbers as text, units, shorthands, unknown keys, dates,
booleans) the schema and the loader accept and refuse the same values."""
from __future__ import annotations

import copy
import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from cli import main
from engine.errors import InputError
from engine.record import load_subject, parse_subject_json, subject_json_schema
from engine.record.units import MAGNITUDE_MAX_EXP, MAGNITUDE_MIN_EXP
from test_bad_input import nothing_written

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "fixtures"
# YAML files under fixtures/ that are not subject records (expected outcomes, a cohort design)
NOT_SUBJECTS = {"screening/expected.yaml", "marrow/expected.yaml", "cohort/viale-a-design.yaml"}
BASE = FIXTURES / "subjects" / "example-treated-two-marrows.yaml"


def _printed_schema() -> dict[str, Any]:
    result = CliRunner().invoke(main, ["schema", "subject"])
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


SCHEMA = _printed_schema()
VALIDATOR = jsonschema.Draft202012Validator(
    SCHEMA, format_checker=jsonschema.Draft202012Validator.FORMAT_CHECKER)


def _json_data(data: Any) -> Any:
    """The JSON data model of a YAML document (dates as ISO strings), as a .json file holds it."""
    return json.loads(json.dumps(data, default=lambda d: d.isoformat()))


def _schema_errors(data: Any) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
            for e in VALIDATOR.iter_errors(data)]


def _subject_files() -> list[Path]:
    return sorted(p for p in FIXTURES.rglob("*") if p.suffix in (".yaml", ".yml", ".json")
                  and p.relative_to(FIXTURES).as_posix() not in NOT_SUBJECTS)


def test_the_printed_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert SCHEMA["additionalProperties"] is False
    # every object the loader refuses unknown keys in says so
    open_objects = [name for name, spec in SCHEMA["$defs"].items()
                    if spec.get("type") == "object" and spec.get("additionalProperties") is not False]
    assert open_objects == []


def test_the_non_subject_files_are_what_the_list_says() -> None:
    for name in NOT_SUBJECTS:
        with pytest.raises(InputError, match="unknown field"):
            load_subject(FIXTURES / name)


@pytest.mark.parametrize("path", _subject_files(), ids=lambda p: p.relative_to(FIXTURES).as_posix())
def test_every_fixture_subject_loads_and_validates(path: Path) -> None:
    load_subject(path)
    text = path.read_text(encoding="utf-8")
    data = json.loads(text) if path.suffix == ".json" else _json_data(yaml.safe_load(text))
    assert _schema_errors(data) == []


def test_every_line_of_a_subject_table_validates(tmp_path: Path) -> None:
    tables = sorted(FIXTURES.rglob("*.jsonl")) + sorted(FIXTURES.rglob("*.ndjson"))
    subprocess.run([sys.executable, str(FIXTURES / "cohort" / "generate.py"), "--out", str(tmp_path),
                    "--n", "40", "--format", "jsonl"], check=True, capture_output=True)
    tables += [tmp_path / "subjects.jsonl"]
    lines = 0
    for table in tables:
        for number, line in enumerate(table.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                parse_subject_json(line, f"{table.name}:{number}", one_line=True)
                assert _schema_errors(json.loads(line)) == [], f"{table.name}:{number}"
                lines += 1
    assert lines >= 40


# --- agreement: the loader and the schema on the same edited record ---------------------------

BASE_DATA = _json_data(yaml.safe_load(BASE.read_text(encoding="utf-8")))


def _with(path: str, value: Any) -> dict[str, Any]:
    """The base record with the field at dotted `path` (indices as numbers) set to `value`."""
    data = copy.deepcopy(BASE_DATA)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node: Any = data
    for part in parents:
        node = node[part]
    node[last] = value
    return data


def _loader_accepts(data: dict[str, Any]) -> bool:
    try:
        parse_subject_json(json.dumps(data), "s.json")
    except InputError:
        return False
    return True


def _agree(path: str, value: Any) -> bool:
    data = _with(path, value)
    loader, schema = _loader_accepts(data), VALIDATOR.is_valid(data)
    assert loader == schema, f"{path} = {value!r}: loader {'accepts' if loader else 'refuses'}, " \
                             f"schema {'accepts' if schema else 'refuses'} ({_schema_errors(data)[:2]})"
    return loader


WEIGHT = "demographics.weight_kg"          # a plain number (kg, > 0)
ANC = "on_study.assessments.1.blood.anc_10e9_l"   # a count: a number in 10^9/L or {value, unit}
HB = "on_study.assessments.1.blood.hb_g_dl"


@pytest.mark.parametrize("value, accepted", [
    (68, True), ("68", True), (68.5, True), ("68.5", True), ("6.8e1", True), ("6.8E+1", True),
    (".5", True), ("5.", True), ("+68", True), ("1e-05", True), (1e-05, True),
    ("68 kg", False), ("68kg", False), (" 68", False), ("1_000", False), ("1,5", False),
    ("\u0665", False), ("0x10", False), ("", False), ("Infinity", False), ("NaN", False),
    (True, False), ([68], False), ({"value": 68, "unit": "kg"}, False),
])
def test_a_plain_number(value: Any, accepted: bool) -> None:
    assert _agree(WEIGHT, value) is accepted


def test_numbers_in_exponent_form_load_as_their_value() -> None:
    assert parse_subject_json(json.dumps(_with(WEIGHT, "6.8e1")), "s.json").demographics.weight_kg == 68
    record = parse_subject_json(json.dumps(_with("on_study.assessments.1.mrd.value_pct", "1e-05")), "s.json")
    assert record.on_study.assessments[1].mrd.value_pct == Decimal("0.00001")


@pytest.mark.parametrize("value, accepted", [
    (1.2, True), ("1.2", True), ({"value": 1200, "unit": "cells/uL"}, True),
    ({"value": "1200", "unit": "cells/mm3"}, True), ({"value": 1.2, "unit": "10^9/L"}, True),
    ({"value": 1.2, "unit": " K/uL "}, True), ({"value": 1200, "unit": "Cells / µL"}, True),
    ({"value": 1.2, "unit": "mmol/L"}, False), ({"value": 1.2, "unit": "10^9"}, False),
    ({"value": 1.2, "unit": "g/dL"}, False), ({"value": 1200}, False), ({"unit": "cells/uL"}, False),
    ({"value": 1200, "unit": "cells/uL", "date": "2021-10-01"}, False),
    ({"value": "1200 cells", "unit": "cells/uL"}, False), ({"value": True, "unit": "G/L"}, False),
    ({"value": 1200, "unit": 5}, False), ("1.2 G/L", False), (True, False),
])
def test_a_count_and_its_unit(value: Any, accepted: bool) -> None:
    assert _agree(ANC, value) is accepted


def test_a_count_in_cells_per_microlitre_is_converted_exactly() -> None:
    data = _with(ANC, {"value": 1200, "unit": "cells/uL"})
    assert parse_subject_json(json.dumps(data), "s.json").on_study.assessments[1].blood.anc_10e9_l == Decimal("1.2")


@pytest.mark.parametrize("value, accepted", [
    (8.5, True), ({"value": 85, "unit": "g/L"}, True), ({"value": 8.5, "unit": "G/DL"}, True),
    ({"value": 5.3, "unit": "mmol/L"}, False), ({"value": 85, "unit": "g"}, False),
])
def test_a_haemoglobin_and_its_unit(value: Any, accepted: bool) -> None:
    assert _agree(HB, value) is accepted


@pytest.mark.parametrize("path, value, accepted", [
    ("demographics.ecog", 2, True), ("demographics.ecog", "2", True), ("demographics.ecog", 2.0, True),
    ("demographics.ecog", "+2", True), ("demographics.ecog", "2.0", False),
    ("demographics.ecog", 2.5, False), ("demographics.ecog", "two", False),
    ("demographics.ecog", True, False), ("demographics.ecog", " 2", False),
    ("diagnosis.aml", True, True), ("diagnosis.aml", False, True), ("diagnosis.aml", None, True),
    ("diagnosis.aml", "true", False), ("diagnosis.aml", "yes", False), ("diagnosis.aml", 1, False),
    ("diagnosis.aml", 0, False),
    ("diagnosis.date", "2019-04-17", True), ("diagnosis.date", 1555459200, False),
    ("diagnosis.date", "1555459200", False), ("diagnosis.date", "20190417", False),
    ("diagnosis.date", "2019-04-17T00:00:00", False), ("diagnosis.date", "2019-02-30", False),
    ("diagnosis.date", "17/04/2019", False), ("diagnosis.date", 0, False),
])
def test_whole_numbers_booleans_and_dates(path: str, value: Any, accepted: bool) -> None:
    assert _agree(path, value) is accepted


@pytest.mark.parametrize("value, accepted", [
    ([{"day": 1, "dose_mg": 400}], True), ([{"day": "1", "dose_mg": "400"}], True),
    ([{"day": 1, "dose_mg": "400 mg"}], False), ([{"day": 1.5, "dose_mg": 400}], False),
    ([{"day": 1, "dose_mg": 400, "route": "oral"}], False),
])
def test_the_per_drug_doses_alias(value: Any, accepted: bool) -> None:
    assert _agree("on_study.cycles.0.venetoclax_doses", value) is accepted


@pytest.mark.parametrize("path, value, accepted", [
    ("genetics.mutations.npm1", "mutated", True), ("genetics.mutations.npm1", "wild_type", True),
    ("genetics.mutations.npm1", {"status": "mutated", "vaf_pct": 30}, True),
    ("genetics.mutations.npm1", "positive", False), ("genetics.mutations.npm1", 1, False),
    ("genetics.mutations.npm1", {"status": "mutated", "vaf": 30}, False),
    ("genetics.mutations.flt3_itd", {"status": "mutated", "allelic_ratio": "0.6"}, True),
    ("genetics.karyotype_findings", ["-7", "del(5q)"], True),
    ("genetics.karyotype_findings", [-7, "del(5q)"], True),
    ("genetics.karyotype_findings", [-17], True), ("genetics.karyotype_findings", [7], False),
    ("genetics.karyotype_findings", ["t(8;22)"], False),
    ("genetics.fusions", [{"name": "RUNX1::RUNX1T1", "status": "detected"}], True),
    ("genetics.fusions", [{"name": "RUNX1::RUNX1T1", "status": "detected", "vaf": 3}], False),
])
def test_genetics_shorthands(path: str, value: Any, accepted: bool) -> None:
    assert _agree(path, value) is accepted


@pytest.mark.parametrize("path, value", [
    ("favourite_colour", "blue"), ("demographics.weight", 68), ("screening.labs.ldh", {"value": 1}),
    ("on_study.assessments.1.marrow.blast_pct", 5), ("treatment_history.0.cycle_days", 7),
    ("labs.0.comment", "x"), ("adverse_events.0.grade_text", "3"),
])
def test_an_unknown_key_is_refused_by_both(path: str, value: Any) -> None:
    assert _agree(path, value) is False


@pytest.mark.parametrize("path, value", [
    ("treatment_history.0.type", "chemo"), ("treatment_history.0", "a cycle"),
    ("demographics.sex", "M"), ("labs", {"id": "x"}), ("subject_id", 17), ("demographics", []),
    ("on_study.assessments.1.marrow.blasts_pct", "5%"),
])
def test_a_wrong_type_or_shape_is_refused_by_both(path: str, value: Any) -> None:
    assert _agree(path, value) is False


@pytest.mark.parametrize("written, message", [
    ("  weight_kg: 66 kg", "field demographics.weight_kg: '66 kg' is not a number (expected a number, "
                           'or a string holding only one (e.g. "68" or "6.8e1", no unit))'),
    ("  weight_kg: '6.6e1'", None),
    ("  ecog: '2.0'", "field demographics.ecog: '2.0' is not a whole number"),
    ("  ecog: '2'", None),
    ("  sex: male\n  childbearing_potential: 'no'", "field demographics.childbearing_potential: 'no' "
                                                     "is not true or false (expected true or false)"),
    ("  sex: male\n  childbearing_potential: no", None),   # YAML's own boolean
])
def test_a_spelling_the_loader_refuses_is_one_line_and_exit_2(tmp_path: Path, written: str,
                                                              message: str | None) -> None:
    text = BASE.read_text(encoding="utf-8")
    line = written.split(":")[0] + ":"
    old = next(t for t in text.splitlines() if t.startswith(line))
    bad = tmp_path / "s.yaml"
    bad.write_text(text.replace(old, written, 1), encoding="utf-8")
    result = CliRunner().invoke(main, ["--db", str(tmp_path / "a.sqlite"), "screen", str(bad), "--json"])
    if message is None:
        assert result.exit_code == 0, result.output
        return
    assert result.exit_code == 2 and result.output.count("\n") == 1 and "Traceback" not in result.output
    line_no = text.splitlines().index(old) + 1 + written.count("\n")   # the last line written
    assert f"s.yaml:{line_no}, subject EX-TREATED-03, {message}" in result.output
    nothing_written(tmp_path / "a.sqlite")


def test_a_yaml_timestamp_is_not_a_date(tmp_path: Path) -> None:
    bad = tmp_path / "s.yaml"
    bad.write_text(BASE.read_text(encoding="utf-8").replace("consent_date: 2021-09-01",
                                                            "consent_date: 2021-09-01T10:00:00"))
    with pytest.raises(InputError, match=r"consent_date: 2021-09-01T10:00:00 \(a date with a time\) "
                                         r"is not an ISO date \(expected an ISO date YYYY-MM-DD\)"):
        load_subject(bad)


# --- property: any text or number in a number field ------------------------------------------

def _in_measurement_range(value: Any) -> bool:
    """A value whose magnitude the loader's range check (units.bounded) passes: that check is on
    the value, not the spelling, and the schema does not carry it for text."""
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return True
    return (not number.is_finite() or not number
            or MAGNITUDE_MIN_EXP <= number.adjusted() <= MAGNITUDE_MAX_EXP)


_NUMBERISH = st.text(alphabet="0123456789+-.eE _,k g\n\u0665x", max_size=10)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(_NUMBERISH, st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
                 st.floats(allow_nan=False, allow_infinity=False, min_value=0.001, max_value=1e9)))
def test_schema_and_loader_agree_on_any_number_spelling(value: Any) -> None:
    assume(_in_measurement_range(value))
    if _within(value, 0, 500, low_open=True):   # weight: 0 < kg <= 500 (a range, not a spelling)
        _agree(WEIGHT, value)
    if _within(value, 0, None):                 # a count is never negative
        _agree(ANC, value)
        _agree(ANC, {"value": value, "unit": "cells/uL"})


def _within(value: Any, low: int, high: int | None, low_open: bool = False) -> bool:
    """The value is in range, or is no number at all (then only its spelling is at stake)."""
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return True
    if not number.is_finite():
        return True
    return (number > low if low_open else number >= low) and (high is None or number <= high)


@settings(max_examples=60, deadline=None)
@given(st.one_of(st.text(alphabet="0123456789-T:/ \n", max_size=12), st.integers(-10, 2_000_000_000),
                 st.dates(dt.date(1963, 1, 1), dt.date(2019, 4, 17)).map(dt.date.isoformat)))
def test_schema_and_loader_agree_on_any_date_spelling(value: Any) -> None:
    # any real date up to the first marrow of the history (2019-04-17) is accepted
    _agree("diagnosis.date", value)
