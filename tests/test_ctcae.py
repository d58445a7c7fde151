"""CTCAE lab grading: the packs' boundary tables (both evaluators), the unit edge (cells/mm3,
g/L, mEq/L, umol/L) and exact decimal multiples, through the public grader."""
from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings, strategies as st

from engine.adjudicate.safety import SafetyGrader
from engine.evaluate.durable_adapter import DurableEvaluator
from engine.evaluate.reference import ReferenceEvaluator
from engine.facts.labmap import lab_map
from engine.facts.safety import lab_facts
from engine.rules.load import load_registry
from engine.rules.testing import run_test

from conftest import ROOT

REG = load_registry(ROOT / "rules")
EVALUATORS = [DurableEvaluator(), ReferenceEvaluator()]
GRADERS = {(v, e.name): SafetyGrader(v, REG, e) for v in ("4.03", "5.0") for e in EVALUATORS}


@pytest.mark.parametrize("version", ["4.03", "5.0"])
def test_boundary_tables_pass_in_both_evaluators(version):
    pack = REG.get(f"ctcae-{version}")
    assert len(pack.tests) > 200
    problems = [f"{t.name}: {p}" for t in pack.tests for p in run_test(pack, t)]
    assert not problems, "\n".join(problems[:10])


@pytest.mark.parametrize("version", ["4.03", "5.0"])
def test_every_lab_term_has_both_sides_of_a_cutoff(version):
    pack = REG.get(f"ctcae-{version}")
    terms = set(pack.manifest.facts[0].values)
    with_term = [t for t in pack.tests if "lab.term" in t.given]  # one case tests a missing term
    assert len(with_term) >= len(pack.tests) - 1
    tested = {t.given["lab.term"] for t in with_term}
    assert terms == tested
    for term in terms:
        grades = {_expected_grade(t) for t in with_term if t.given["lab.term"] == term}
        if not (version == "5.0" and term == "hypophosphatemia"):
            assert 0 in grades and len(grades - {None}) >= 2, term


def _expected_grade(t):
    want = t.expect.decisions["grade"]
    return (want.get("fields") or want).get("grade")


# (version, term or analyte, value, unit, lln, uln, baseline, grade)
EDGE = [
    ("4.03", "neutrophil_count_decreased", "499", "cells/mm3", "1800", "7500", None, 4),
    ("4.03", "neutrophil_count_decreased", "500", "cells/mm3", "1800", "7500", None, 3),
    ("5.0", "neutrophil_count_decreased", "1000", "cells/uL", "1800", "7500", None, 2),
    ("4.03", "neutrophil_count_decreased", "1.5", "10^3/uL", "1.8", "7.5", None, 1),
    ("4.03", "platelet_count_decreased", "24999", "/mm3", "150000", "400000", None, 4),
    ("5.0", "platelet_count_decreased", "75000", "/uL", "150000", "400000", None, 1),
    ("4.03", "anemia", "79.9", "g/L", "130", "175", None, 3),
    ("4.03", "anemia", "80", "g/L", "130", "175", None, 2),
    ("5.0", "anemia", "100", "g/L", "130", "175", None, 1),
    ("5.0", "anemia", "4.9", "mmol/L", "8.1", "10.9", None, 2),   # molar cut-off as published, not converted
    ("4.03", "hyperkalemia", "6.0", "mEq/L", "3.5", "5.3", None, 2),
    ("4.03", "hyperkalemia", "6.01", "meq/l", "3.5", "5.3", None, 3),
    ("4.03", "hyperuricemia", "590", "umol/L", "200", "430", None, 1),
    ("4.03", "hyperuricemia", "591", "umol/L", "200", "430", None, 4),
    ("5.0", "hyperuricemia", "591", "umol/L", "200", "430", None, 1),
    ("4.03", "hypocalcemia", "1750", "umol/L", "2100", "2600", None, 2),
    ("4.03", "creatinine_increased", "1.8", "mg/dL", "0.7", "1.2", None, 1),     # 1.5 x 1.2 exactly
    ("4.03", "creatinine_increased", "1.81", "mg/dL", "0.7", "1.2", None, 2),
    ("5.0", "creatinine_increased", "159.15", "umol/L", "60", "106.1", None, 1),  # 1.5 x 106.1 exactly
    ("5.0", "creatinine_increased", "159.16", "umol/L", "60", "106.1", None, 2),
    ("4.03", "alanine_aminotransferase_increased", "2.1", "ukat/L", None, "0.7", None, 1),  # 3 x 0.7
    ("4.03", "aspartate_aminotransferase_increased", "3.5", "ukat/L", None, "0.7", None, 2),  # 5 x 0.7 exactly
    ("4.03", "aspartate_aminotransferase_increased", "4.2", "ukat/L", None, "0.7", None, 3),  # 6 x 0.7 > 5 x 0.7
    ("5.0", "blood_bilirubin_increased", "7.2", "mg/dL", None, "1.2", None, 3),   # 6 x 1.2
]


@pytest.mark.parametrize("ev", [e.name for e in EVALUATORS])
@pytest.mark.parametrize("version,term,value,unit,lln,uln,bl,grade", EDGE)
def test_unit_edge_and_exact_multiples(version, term, value, unit, lln, uln, bl, grade, ev):
    g = GRADERS[(version, ev)].grade_lab(id="x", term=term, value=value, unit=unit, lln=lln, uln=uln, baseline=bl)
    assert (g.grade, g.gradable) == (grade, True), g.reason


def test_float_trap_really_is_a_trap():
    assert 1.5 * 1.2 != 1.8 and Decimal("1.5") * Decimal("1.2") == Decimal("1.8")


@pytest.mark.parametrize("ev", [e.name for e in EVALUATORS])
def test_unknown_unit_is_not_gradable_and_named(ev):
    g = GRADERS[("4.03", ev)].grade_lab(id="x", term="anemia", value="8", unit="mg/L", lln="13", uln="17")
    assert g.grade is None and not g.gradable
    assert "'mg/L'" in g.reason and "hemoglobin" in g.reason


def test_missing_unit_named():
    g = GRADERS[("5.0", "reference")].grade_lab(id="x", term="neutrophil_count_decreased", value="0.4", unit="", lln="1.8")
    assert not g.gradable and "no unit given for neutrophils" in g.reason


def test_conversion_is_recorded_in_the_reason():
    g = GRADERS[("4.03", "reference")].grade_lab(id="x", term="anemia", value="85", unit="g/L", lln="130")
    assert g.grade == 2 and "g/L -> g/dL (x0.1)" in g.reason
    assert lab_facts(lab_map(REG), None, "anemia", "85", "g/L", "130").facts["lab.value"] == Decimal("8.5")


def test_two_directions_of_an_analyte():
    gr = GRADERS[("4.03", "reference")]
    assert gr.grade_lab(id="a", analyte="potassium", value="2.4", unit="mmol/L", lln="3.5", uln="5.3").term == "hypokalemia"
    hi = gr.grade_lab(id="b", analyte="potassium", value="7.1", unit="mmol/L", lln="3.5", uln="5.3")
    assert (hi.term, hi.grade) == ("hyperkalemia", 4)
    zero = gr.grade_lab(id="c", analyte="potassium", value="4.0", unit="mmol/L", lln="3.5", uln="5.3")
    assert (zero.term, zero.grade) == ("hypokalemia/hyperkalemia", 0)
    # one direction not gradable (no ULN) and the other 0 -> not gradable, as admiral's ATOXGR
    na = gr.grade_lab(id="d", analyte="potassium", value="4.0", unit="mmol/L", lln="3.5")
    assert na.grade is None and not na.gradable


def test_worst_case_policy_is_selectable_and_recorded():
    g = SafetyGrader("4.03", REG, ReferenceEvaluator(), {"qualifier_policy": "worst_case"})
    r = g.grade_lab(id="x", term="hypokalemia", value="3.2", unit="mmol/L", lln="3.5", uln="5.3")
    assert r.grade == 2 and r.basis == "worst_case"
    assert r.results[0].parameters["qualifier_policy"] == "worst_case"


LOW_TERMS = ["neutrophil_count_decreased", "platelet_count_decreased", "white_blood_cell_decreased",
             "lymphocyte_count_decreased", "hypokalemia", "hyponatremia", "hypocalcemia_ionized"]
UNIT = {"hypokalemia": "mmol/L", "hyponatremia": "mmol/L", "hypocalcemia_ionized": "mmol/L"}


@settings(max_examples=60, deadline=None)
@given(term=st.sampled_from(LOW_TERMS), version=st.sampled_from(["4.03", "5.0"]),
       a=st.decimals(min_value=0, max_value=200, places=2), b=st.decimals(min_value=0, max_value=200, places=2))
def test_low_terms_are_monotone_and_evaluators_agree(term, version, a, b):
    """A lower value never has a lower grade; durable and the reference agree on every value."""
    lo, hi = sorted((a, b))
    unit = UNIT.get(term, "10^9/L")
    lln = {"hyponatremia": "135", "hypokalemia": "3.5", "hypocalcemia_ionized": "1.1"}.get(term, "1.8")
    grades = []
    for v in (lo, hi):
        d = GRADERS[(version, "durable")].grade_lab(id="x", term=term, value=str(v), unit=unit, lln=lln)
        r = GRADERS[(version, "reference")].grade_lab(id="x", term=term, value=str(v), unit=unit, lln=lln)
        assert (d.grade, d.reason) == (r.grade, r.reason)
        grades.append(d.grade)
    assert grades[0] >= grades[1]


# terms the lab-terms pack maps that a CTCAE version does not grade from a lab value
NOT_IN_VERSION = {"4.03": {"blood_lactate_dehydrogenase_increased"},   # a v5.0 term
                  "5.0": {"hyperglycemia"}}                           # no numeric criteria in v5.0


@pytest.mark.parametrize("version", ["4.03", "5.0"])
def test_every_analyte_maps_to_pack_terms(version):
    """The lab-terms pack and each CTCAE pack agree: every graded term has a lab test, and every
    mapped term is graded by the version unless it is listed as not one of its lab terms."""
    terms = set(REG.get(f"ctcae-{version}").manifest.facts[0].values)
    lm = lab_map(REG)
    mapped = {t for test in lm.tests for t in lm.terms(test) if t}
    assert terms <= mapped
    assert mapped - terms == NOT_IN_VERSION[version]


ADMIRAL_V4 = """Anemia; Leukocytosis; Activated partial thromboplastin time prolonged; Alanine aminotransferase
increased; Alkaline phosphatase increased; Aspartate aminotransferase increased; Blood bilirubin increased; CD4
lymphocytes decreased; Cholesterol high; CPK increased; Creatinine increased; Fibrinogen decreased; GGT increased;
Haptoglobin decreased; Hemoglobin increased; INR increased; Lipase increased; Lymphocyte count decreased; Lymphocyte
count increased; Neutrophil count decreased; Platelet count decreased; Serum amylase increased; White blood cell
decreased; Acidosis; Alkalosis; Hypercalcemia; Hypercalcemia (Ionized); Hyperglycemia (Fasting); Hyperglycemia;
Hyperkalemia; Hypermagnesemia; Hypernatremia; Hypertriglyceridemia; Hyperuricemia; Hypoalbuminemia; Hypocalcemia;
Hypocalcemia (Ionized); Hypoglycemia; Hypokalemia; Hypomagnesemia; Hyponatremia; Hypophosphatemia"""
# admiral's v5 table: the v4 terms without hyperglycemia (both) and hypophosphatemia, plus LDH
ADMIRAL_V5_EXTRA, ADMIRAL_V5_DROPPED = {"Blood lactate dehydrogenase increased"}, {
    "Hyperglycemia (Fasting)", "Hyperglycemia", "Hypophosphatemia"}


def _ids(names):
    lm = lab_map(REG)      # the lab-terms pack's aliases read "Hypocalcemia (Ionized)" too
    return {lm.term_id(n.replace(" (Fasting)", "")) for n in names}


def test_admiral_coverage():
    """Issue 11 item 21: every term of admiral's atoxgr_criteria_ctcv4 (42 rows) and ctcv5 (40 rows)
    metadata is a lab term of our packs (v4's two hyperglycemia rows are one term here, read with
    lab.fasting; v5.0 keeps hypophosphatemia as an explicit 'no numeric criteria' row)."""
    v4_names = [n.strip() for n in ADMIRAL_V4.replace("\n", " ").split(";")]
    assert len(v4_names) == 42
    v5_names = (set(v4_names) - ADMIRAL_V5_DROPPED) | ADMIRAL_V5_EXTRA
    assert len(v5_names) == 40
    v4 = set(REG.get("ctcae-4.03").manifest.facts[0].values)
    v5 = set(REG.get("ctcae-5.0").manifest.facts[0].values)
    assert _ids(v4_names) == v4
    assert _ids(v5_names) | {"hypophosphatemia"} == v5


# (version, analyte, value, unit, lln, uln, baseline, qualifiers, term, grade): SDTM spellings and
# the new terms through the public grader (unit reading from the lab-terms pack)
SDTM = [
    ("4.03", "platelets", "80", "GI/L", "150", "400", None, {}, "platelet_count_decreased", 1),
    ("4.03", "neutrophils", "0.49", "THOU/uL", "1.8", "7.5", None, {}, "neutrophil_count_decreased", 4),
    ("5.0", "wbc", "1999", "/mm3", "4000", "11000", None, {}, "white_blood_cell_decreased", 3),
    ("4.03", "albumin", "29", "g/L", "33", "49", None, {}, "hypoalbuminemia", 2),        # 29 g/L = 2.9 g/dL
    ("4.03", "albumin", "30", "g/L", "33", "49", None, {}, "hypoalbuminemia", 1),
    ("4.03", "magnesium", "0.79", "mEq/L", "1.4", "2.0", None, {}, "hypomagnesemia", 3),   # 0.395 mmol/L
    ("4.03", "magnesium", "0.8", "mEq/L", "1.4", "2.0", None, {}, "hypomagnesemia", 2),    # 0.4 mmol/L exactly
    ("5.0", "glucose", "2.9", "mmol/L", "3.9", "6.1", None, {}, "hypoglycemia", 2),
    ("4.03", "glucose", "9.0", "mmol/L", "3.9", "6.1", None, {"fasting": True}, "hyperglycemia", 2),
    ("4.03", "cholesterol", "7.76", "mmol/L", None, "5.2", None, {}, "cholesterol_high", 2),
    ("4.03", "ck", "1001", "U/L", "30", "200", None, {}, "cpk_increased", 3),
    ("5.0", "alp", "401", "U/L", "40", "100", "200", {}, "alkaline_phosphatase_increased", 1),
    ("4.03", "fibrinogen", "49", "mg/dL", "200", "400", None, {}, "fibrinogen_decreased", 4),  # 0.49 g/L
    ("5.0", "inr", "2.6", "", None, None, None, {}, "inr_increased", 3),
    ("4.03", "calcium_ionized", "3.59", "mg/dL", "4.4", "5.2", None, {}, "hypocalcemia_ionized", 3),
    ("4.03", "uric_acid", "591", "umol/L", "208", "428", None, {}, "hyperuricemia", 4),
    ("4.03", "creatinine", "160", "umol/L", "62", "106", "80", {}, "creatinine_increased", 2),
]


@pytest.mark.parametrize("version,analyte,value,unit,lln,uln,bl,quals,term,grade", SDTM)
def test_sdtm_spellings_and_new_terms(version, analyte, value, unit, lln, uln, bl, quals, term, grade):
    g = GRADERS[(version, "durable")].grade_lab(id="x", analyte=analyte, value=value, unit=unit, lln=lln,
                                                uln=uln, baseline=bl, qualifiers=quals)
    assert (g.term, g.grade, g.gradable) == (term, grade, True), g.reason
    assert "lab-terms" in {r.pack["id"] for r in g.results}   # the map's version is recorded too


def test_a_term_the_version_does_not_grade_is_named():
    g = GRADERS[("4.03", "reference")].grade_lab(id="x", analyte="ldh", value="800", unit="U/L", lln="100", uln="250")
    assert not g.gradable and "not graded from a lab value by ctcae-4.03" in g.reason
    v5 = GRADERS[("5.0", "reference")].grade_lab(id="x", analyte="ldh", value="800", unit="U/L", lln="100", uln="250")
    assert (v5.grade, v5.term) == (1, "blood_lactate_dehydrogenase_increased")
    # glucose in v5.0: hyperglycemia has no numeric criteria, so the low direction alone grades
    glu = GRADERS[("5.0", "reference")].grade_lab(id="x", analyte="glucose", value="5.0", unit="mmol/L", lln="3.9", uln="6.1")
    assert (glu.term, glu.grade) == ("hypoglycemia", 0)


def test_unknown_lab_test_is_not_gradable_and_named():
    g = GRADERS[("4.03", "reference")].grade_lab(id="x", analyte="urine_ph", value="6", unit="pH")
    assert not g.gradable and "urine_ph" in g.reason
