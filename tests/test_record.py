"""The subject record layer: loading, canonical units, impossible values, schema, docs."""
from __future__ import annotations

import copy
import datetime as dt
import importlib.util
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import given, strategies as st

from cli import main
from engine.errors import InputError
from engine.record import (SubjectRecord, age_at_consent, completed_years, field_source, load_subject,
                           load_subjects, subject_json_schema)
from engine.record.units import COUNT_SCALE, convert

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "fixtures" / "subjects"
TREATED = EXAMPLES / "example-treated-two-marrows.yaml"
HSCT = EXAMPLES / "example-relapse-post-hsct.yaml"
REFRACTORY = EXAMPLES / "example-primary-refractory.yaml"


def raw(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def write(tmp_path: Path, data: Any, name: str = "subject.yaml") -> Path:
    path = tmp_path / name
    if name.endswith(".json"):
        path.write_text(json.dumps(data, default=str), encoding="utf-8")
    else:
        path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def set_in(data: Any, dotted: str, value: Any) -> Any:
    """Copy of data with the value at a dotted path (with [i] indexes) replaced."""
    data = copy.deepcopy(data)
    keys: list[Any] = []
    for piece in dotted.split("."):
        name, *indexes = piece.replace("]", "").split("[")
        keys.append(name)
        keys.extend(int(i) for i in indexes)
    target = data
    for key in keys[:-1]:
        target = target[key]
    target[keys[-1]] = value
    return data


def load_error(tmp_path: Path, data: Any, name: str = "subject.yaml") -> InputError:
    path = write(tmp_path, data, name)
    with pytest.raises(InputError) as info:
        load_subject(path)
    return info.value


# --- the three examples -------------------------------------------------------------------

def test_primary_refractory_example_loads() -> None:
    record = load_subject(REFRACTORY)
    assert record.subject_id == "EX-PRIREF-01"
    assert record.age_at_consent() == 47
    assert [e.type for e in record.treatment_history] == ["cycle", "cycle"]
    assert record.treatment_history[1].marrow_after.response == "PR"
    assert record.genetics.karyotype_findings == ["-7", "del(5q)", "complex"]  # YAML ints back
    assert record.genetics.mutations.tp53.vaf_pct == Decimal("34.5")
    assert record.genetics.mutations.kit.status == "not_tested"
    assert record.genetics.mutations.bcor.status == "not_tested"  # left out = not tested
    assert record.screening.prior_venetoclax is False
    assert record.on_study is None


def test_relapse_after_hsct_example_loads() -> None:
    record = load_subject(HSCT)
    assert record.age_at_consent() == 35  # birthday is the day after consent
    assert record.demographics.age_years is None
    kinds = [e.type for e in record.treatment_history]
    assert kinds == ["cycle", "remission", "cycle", "hsct", "relapse"]
    gvhd = record.screening.gvhd
    assert gvhd.present and gvhd.kind == "chronic"
    assert gvhd.steroid.dose_mg_per_day == Decimal("20") and gvhd.cni_indication == "prophylaxis"
    assert record.screening.wbc_10e9_l == Decimal("14.3")  # 14300 cells/uL
    ast = record.screening.labs.ast
    assert ast.x_uln == Decimal("1.4")   # given as x ULN (the packs read x_uln, else value / uln)
    assert record.genetics.mutations.flt3_itd.allelic_ratio == Decimal("0.62")


def test_treated_example_loads_with_canonical_units() -> None:
    record = load_subject(TREATED)
    a1 = record.on_study.assessments[1]
    assert (a1.blood.anc_10e9_l, a1.blood.platelets_10e9_l) == (Decimal("0.8"), Decimal("65"))
    assert a1.blood.hb_g_dl == Decimal("8.5")
    assert a1.mrd.sensitivity == Decimal("0.0001")
    assert [a.timepoint for a in record.on_study.assessments] == ["baseline", "C1D28", "post_C2"]
    assert record.labs[1].unit == "cells/mm3" and record.labs[1].value == Decimal("120")
    fn = record.adverse_events[0]
    assert fn.facts == {"anc_10e9_l": Decimal("0.12"), "temperature_c": Decimal("38.6"),
                        "sustained_1h": False, "hypotension": False}
    assert fn.attribution["venetoclax"] == "probable"      # {<drug>: <level>}


def test_json_file_loads_like_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, raw(TREATED), "treated.json")
    assert load_subject(path) == load_subject(TREATED)


def test_load_subjects_reports_errors_and_duplicate_ids(tmp_path: Path) -> None:
    write(tmp_path, raw(TREATED), "a.yaml")
    write(tmp_path, raw(TREATED), "b.yaml")
    write(tmp_path, set_in(raw(HSCT), "demographics.ecog", 9), "c.json")
    (tmp_path / "notes.txt").write_text("ignored")
    results = {p.name: r for p, r in load_subjects(tmp_path)}
    assert sorted(results) == ["a.yaml", "b.yaml", "c.json"]
    assert isinstance(results["a.yaml"], SubjectRecord)
    assert isinstance(results["b.yaml"], InputError) and "a.yaml" in str(results["b.yaml"])
    assert "field demographics.ecog" in str(results["c.json"])


def test_field_source() -> None:
    assert (field_source("fixtures/subjects/S001.yaml", "screening.labs.bilirubin")
            == "fixtures/subjects/S001.yaml#screening.labs.bilirubin")


# --- impossible values: each names file, subject and field --------------------------------

IMPOSSIBLE = [
    (TREATED, "on_study.assessments[1].marrow.blasts_pct", 140, "less than or equal to 100"),
    (TREATED, "on_study.assessments[2].blood.anc_10e9_l", -0.1, "negative"),
    (TREATED, "on_study.assessments[2].blood.platelets_10e9_l",
     {"value": -5, "unit": "/uL"}, "negative"),
    (TREATED, "demographics.ecog", 7, "less than or equal to 5"),
    (TREATED, "screening.cardiac.lvef_pct", 120, "less than or equal to 100"),
    (TREATED, "screening.cardiac.nyha_class", 0, "greater than or equal to 1"),
    (TREATED, "treatment_history[0].marrow_before.date", "2019-01-02", "before the diagnosis"),
    (TREATED, "treatment_history[0].start_date", "2019-04-16", "before the diagnosis"),
    (TREATED, "on_study.assessments[2].date", "2019-04-16", "before the diagnosis"),
    (TREATED, "on_study.last_dose_date", "2021-09-02", "before first dose"),
    (TREATED, "adverse_events[0].resolution_date", "2021-09-08", "before onset"),
    (TREATED, "labs[0].value", -1, "negative"),
    (HSCT, "treatment_history[3].date", "1986-06-20", "before the birth date"),
    (HSCT, "demographics.pregnancy_test.date", "1980-01-01", "before the birth date"),
]


@pytest.mark.parametrize("source,field,value,phrase", IMPOSSIBLE,
                         ids=[f"{c[1]}={c[2]}" for c in IMPOSSIBLE])
def test_impossible_value_is_refused(tmp_path: Path, source: Path, field: str, value: Any,
                                     phrase: str) -> None:
    data = raw(source)
    error = load_error(tmp_path, set_in(data, field, value))
    text = str(error)
    assert "subject.yaml" in text and f"subject {data['subject_id']}" in text
    assert error.field == field and f"field {field}" in text
    assert phrase in text
    assert "\n" not in text and "Traceback" not in text


def test_cycle_marrow_after_before_its_start(tmp_path: Path) -> None:
    data = set_in(raw(TREATED), "treatment_history[0].marrow_after.date", "2019-04-21")
    assert load_error(tmp_path, data).field == "treatment_history[0].marrow_after.date"


def test_relapse_before_any_remission_is_allowed(tmp_path: Path) -> None:
    data = raw(TREATED)
    data["treatment_history"] = [e for e in data["treatment_history"] if e["type"] != "remission"]
    data["treatment_history"][-1]["date"] = "2019-05-01"
    record = load_subject(write(tmp_path, data))
    assert [e.type for e in record.treatment_history] == ["cycle", "relapse"]


def test_boundaries_of_ranges_are_accepted(tmp_path: Path) -> None:
    data = set_in(raw(TREATED), "on_study.assessments[1].marrow.blasts_pct", 100)
    data = set_in(data, "demographics.ecog", 5)
    data = set_in(data, "screening.cardiac.lvef_pct", 0)
    data = set_in(data, "on_study.assessments[2].blood.anc_10e9_l", 0)
    record = load_subject(write(tmp_path, data))
    assert record.on_study.assessments[1].marrow.blasts_pct == 100
    assert record.on_study.assessments[2].blood.anc_10e9_l == 0


def test_lab_on_death_day_ok_after_death_refused(tmp_path: Path) -> None:
    data = raw(TREATED)
    data["death"] = {"date": "2021-11-12", "cause": "sepsis"}
    assert load_subject(write(tmp_path, data)).death.date == dt.date(2021, 11, 12)
    data["death"]["date"] = "2021-11-11"
    error = load_error(tmp_path, data)
    assert error.field == "on_study.assessments[2].date" and "after the death" in str(error)


def test_age_years_must_agree_with_birth_date(tmp_path: Path) -> None:
    data = set_in(raw(HSCT), "demographics.age_years", 36)
    error = load_error(tmp_path, data)
    assert error.field == "demographics.age_years" and "35 completed years" in str(error)
    assert load_subject(write(tmp_path, set_in(raw(HSCT), "demographics.age_years", 35)))


def test_male_cannot_have_childbearing_potential(tmp_path: Path) -> None:
    data = set_in(raw(TREATED), "demographics.childbearing_potential", True)
    assert load_error(tmp_path, data).field == "demographics.childbearing_potential"


def test_gene_detail_needs_mutated_status(tmp_path: Path) -> None:
    data = set_in(raw(REFRACTORY), "genetics.mutations.tp53", {"status": "wild_type",
                                                               "vaf_pct": 12})
    assert load_error(tmp_path, data).field == "genetics.mutations.tp53.vaf_pct"


# --- shape errors -------------------------------------------------------------------------

def test_unknown_top_level_field_lists_allowed(tmp_path: Path) -> None:
    data = raw(TREATED)
    data["subjectid"] = "x"
    error = load_error(tmp_path, data)
    assert error.field == "subjectid"
    assert "unknown field 'subjectid'" in str(error) and "subject_id" in error.expected


def test_unknown_nested_field_names_path_and_line(tmp_path: Path) -> None:
    data = set_in(raw(TREATED), "on_study.assessments[1].marrow.blast_pct", 3)
    error = load_error(tmp_path, data)
    assert error.field == "on_study.assessments[1].marrow.blast_pct"
    assert "blasts_pct" in error.expected and "auer_rods" in error.expected
    line = int(error.file.rsplit(":", 1)[1])
    text = (tmp_path / "subject.yaml").read_text().splitlines()
    assert "blast_pct" in text[line - 1]


def test_unknown_history_type(tmp_path: Path) -> None:
    data = set_in(raw(TREATED), "treatment_history[1].type", "cr")
    error = load_error(tmp_path, data)
    assert error.field == "treatment_history[1].type" and "'cycle'" in str(error)


def test_history_field_path_has_no_discriminator_tag(tmp_path: Path) -> None:
    data = set_in(raw(TREATED), "treatment_history[2].bm_blasts_pct", "many")
    assert load_error(tmp_path, data).field == "treatment_history[2].bm_blasts_pct"


def test_wrong_type_names_the_value(tmp_path: Path) -> None:
    error = load_error(tmp_path, set_in(raw(TREATED), "demographics.ecog", "two"))
    assert error.field == "demographics.ecog" and "'two'" in str(error)


def test_missing_required_field(tmp_path: Path) -> None:
    data = raw(TREATED)
    del data["subject_id"]
    error = load_error(tmp_path, data)
    assert error.field == "subject_id" and "required" in str(error) and error.subject is None


def test_several_errors_say_how_many_more(tmp_path: Path) -> None:
    data = set_in(raw(TREATED), "demographics.ecog", 7)
    data = set_in(data, "screening.cardiac.lvef_pct", 120)
    assert "(+1 more)" in str(load_error(tmp_path, data))


def test_malformed_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("subject_id: S1\ndemographics:\n  ecog: [1, 2\n  sex: male\n")
    with pytest.raises(InputError) as info:
        load_subject(path)
    assert "malformed YAML" in str(info.value) and "line 4" in str(info.value)


def test_malformed_json_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text('{"subject_id": "S1",\n "demographics": {"ecog": 1,}\n}')
    with pytest.raises(InputError) as info:
        load_subject(path)
    assert "malformed JSON" in str(info.value) and "bad.json:2" in str(info.value)


def test_duplicate_yaml_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text("subject_id: S1\ndemographics:\n  ecog: 1\n  ecog: 3\n")
    with pytest.raises(InputError, match="duplicate key 'ecog'"):
        load_subject(path)


def test_not_a_mapping_and_wrong_suffix(tmp_path: Path) -> None:
    (tmp_path / "list.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(InputError, match="not a mapping"):
        load_subject(tmp_path / "list.yaml")
    with pytest.raises(InputError, match="unsupported file type"):
        load_subject(tmp_path / "subject.csv")
    with pytest.raises(InputError, match="file not found"):
        load_subject(tmp_path / "missing.yaml")


# --- units --------------------------------------------------------------------------------

def test_count_conversions_are_exact(tmp_path: Path) -> None:
    base = "on_study.assessments[2].blood."
    data = set_in(raw(TREATED), base + "anc_10e9_l", {"value": 1200, "unit": "cells/uL"})
    data = set_in(data, base + "platelets_10e9_l", {"value": "100000", "unit": "cells/mm3"})
    data = set_in(data, base + "wbc_10e9_l", {"value": 3.6, "unit": "10^3/uL"})
    data = set_in(data, base + "hb_g_dl", {"value": 85, "unit": "g/L"})
    blood = load_subject(write(tmp_path, data)).on_study.assessments[2].blood
    assert blood.anc_10e9_l == Decimal("1.2") and str(blood.anc_10e9_l) == "1.2"
    assert str(blood.platelets_10e9_l) == "100"
    assert blood.wbc_10e9_l == Decimal("3.6")
    assert blood.hb_g_dl == Decimal("8.5")


@pytest.mark.parametrize("field,unit", [("anc_10e9_l", "mmol/L"), ("hb_g_dl", "mmol/L"),
                                        ("platelets_10e9_l", "cells/L")])
def test_unknown_unit_is_refused_by_name(tmp_path: Path, field: str, unit: str) -> None:
    data = set_in(raw(TREATED), f"on_study.assessments[2].blood.{field}",
                  {"value": 5, "unit": unit})
    error = load_error(tmp_path, data)
    assert error.field == f"on_study.assessments[2].blood.{field}"
    assert f"unknown unit '{unit}'" in str(error)


@given(st.integers(min_value=0, max_value=10**7))
def test_per_microlitre_is_a_thousandth_of_giga_per_litre(n: int) -> None:
    per_ul = convert(n, "cells/uL", COUNT_SCALE, "10^9/L")
    assert per_ul == Decimal(n) / 1000
    assert per_ul == convert(n, "/mm3", COUNT_SCALE, "10^9/L")
    assert convert(per_ul, "G/L", COUNT_SCALE, "10^9/L") == per_ul


# --- helpers ------------------------------------------------------------------------------

def test_completed_years_at_birthday() -> None:
    birth = dt.date(1980, 5, 10)
    assert completed_years(birth, dt.date(2025, 5, 10)) == 45  # birthday on the consent day
    assert completed_years(birth, dt.date(2025, 5, 9)) == 44   # the day before
    assert completed_years(dt.date(2004, 2, 29), dt.date(2022, 2, 28)) == 17
    assert completed_years(dt.date(2004, 2, 29), dt.date(2022, 3, 1)) == 18


@given(st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2030, 12, 31)),
       st.integers(min_value=0, max_value=100))
def test_completed_years_matches_anniversary_count(birth: dt.date, years: int) -> None:
    try:
        anniversary = birth.replace(year=birth.year + years)
    except ValueError:  # 29 February in a common year: completed on 1 March
        anniversary = dt.date(birth.year + years, 3, 1)
    assert completed_years(birth, anniversary) == years
    assert completed_years(birth, anniversary - dt.timedelta(days=1)) == years - 1


def test_age_from_birth_date_needs_consent_date(tmp_path: Path) -> None:
    data = raw(HSCT)
    del data["consent_date"]
    assert age_at_consent(load_subject(write(tmp_path, data))) is None
    data["consent_date"] = "2022-06-21"
    assert load_subject(write(tmp_path, data)).age_at_consent() == 36


# --- schema and docs ----------------------------------------------------------------------

def test_schema_command_prints_json_schema() -> None:
    result = CliRunner().invoke(main, ["schema", "subject"])
    assert result.exit_code == 0, result.output
    schema = json.loads(result.output)
    assert schema["title"] == "SubjectRecord" and "subject_id" in schema["required"]
    assert schema == json.loads(json.dumps(subject_json_schema(), default=str))


def test_every_schema_field_has_a_description() -> None:
    schema = subject_json_schema()
    models = {"SubjectRecord": schema, **schema["$defs"]}
    undocumented = [f"{name}.{prop}" for name, model in models.items()
                    for prop, spec in model.get("properties", {}).items()
                    if not spec.get("description")]
    assert undocumented == []


def test_docs_are_generated_from_the_models() -> None:
    spec = importlib.util.spec_from_file_location(
        "gen_doc", ROOT / "scripts" / "gen_subject_record_doc.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (ROOT / "docs" / "subject-record.md").read_text(encoding="utf-8") == module.render()


def test_history_agents_and_their_based_alias() -> None:
    """A history cycle's `<agent>_based` key is read as agents[<agent>]; giving both is refused; an
    agent not listed stays unknown (not false)."""
    from engine.record.history import Cycle
    c = Cycle.model_validate({"type": "cycle", "start_date": "2020-01-01", "venetoclax_based": True,
                              "agents": {"hma": False}})
    assert c.agents == {"venetoclax": True, "hma": False}
    assert "cytarabine" not in Cycle.model_validate({"type": "cycle", "start_date": "2020-01-01"}).agents
    with pytest.raises(Exception, match="agent 'venetoclax' given twice"):
        Cycle.model_validate({"type": "cycle", "start_date": "2020-01-01", "venetoclax_based": True,
                              "agents": {"venetoclax": False}})


@pytest.mark.parametrize("dotted, value, field, said", [
    ("on_study.assessments[2].id", "A0", "on_study.assessments[2].id", "assessment id 'A0' used twice"),
    ("on_study.cycles[1].number", 1, "on_study.cycles[1].number", "cycle 1 listed twice"),
])
def test_a_repeated_id_or_cycle_number_names_its_second_place(tmp_path: Path, dotted: str, value: Any,
                                                              field: str, said: str) -> None:
    err = load_error(tmp_path, set_in(raw(TREATED), dotted, value))
    assert err.field == field and said in str(err)


def test_a_repeated_lab_id_and_dose_day_name_their_second_place(tmp_path: Path) -> None:
    data = raw(TREATED)
    assert len(data["labs"]) >= 2
    err = load_error(tmp_path, set_in(data, "labs[1].id", data["labs"][0]["id"]))
    assert err.field == "labs[1].id" and f"id {data['labs'][0]['id']!r} used twice" in str(err)
    cycle = data["on_study"]["cycles"][0]
    cycle["doses"] = {"drug_a": [{"day": 1, "dose_mg": 100}, {"day": 2, "dose_mg": 100}, {"day": 1, "dose_mg": 100}]}
    err = load_error(tmp_path, data)
    assert err.field == "on_study.cycles[0].doses.drug_a[2].day" and "day 1 listed twice" in str(err)
