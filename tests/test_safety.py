"""Safety use case: clinical terms from facts (reported grade kept when they cannot decide),
TLS around the ramp-up, attribution with the committee's override, venetoclax advisories,
the Table 3 summary, and the CLI's handling of bad listings."""
from __future__ import annotations

import csv
import json
from decimal import Decimal

import pytest
from click.testing import CliRunner

from cli import main
from engine.adjudicate.safety import (grade_subject, record_adjudication, related_of, summarize as _summarize,
                                      summary_csv)
from engine.audit.store import AuditStore
from engine.record import load_subject

from conftest import ROOT

SUBJECT = ROOT / "fixtures/safety/subject-tls-ramp-up.yaml"
LISTING = ROOT / "fixtures/safety/labs-listing.csv"



def summarize(docs, **kw):
    """The AE table in the VAH protocol's order and labels (rules/_trials/vah/protocol.yaml)."""
    from engine.rules.protocol import load_protocol
    return _summarize(docs, table=load_protocol(None, "vah").tables.ae_grade3, **kw)

def _by_id(doc):
    return {it["id"]: it for it in doc["items"]}


def test_clinical_terms_from_facts_and_reported_fallback(registry, evaluator):
    doc = grade_subject(load_subject(SUBJECT), "4.03", registry=registry, evaluator=evaluator)
    items = _by_id(doc)
    assert (items["E1"]["grade"], items["E1"]["source"]) == (3, "clinical")      # FN from ANC + fever
    assert (items["E2"]["grade"], items["E2"]["source"]) == (3, "clinical")      # TLS present
    assert (items["E4"]["grade"], items["E4"]["source"]) == (5, "clinical")      # fatal sepsis
    assert items["E3"]["source"] == "reported" and items["E3"]["grade"] == 1     # nausea without facts
    assert "investigator's grade 1 stands" in items["E3"]["reason"]
    assert items["E6"]["source"] == "reported" and items["E6"]["treatment_emergent"] is False
    # a lab-term event takes the worst lab grade from onset to resolution
    assert (items["E5"]["grade"], items["E5"]["source"]) == (4, "lab") and "lab N1" in items["E5"]["reason"]
    # labs: unit edge and a not-gradable unit
    assert items["N1"]["grade"] == 4 and items["H1"]["grade"] == 3
    assert items["X1"]["grade"] is None and "'mg/L'" in items["X1"]["reason"]
    assert items["K0"]["treatment_emergent"] is False and items["K1"]["treatment_emergent"] is True


def test_reported_grade_below_the_facts_minimum_is_flagged(registry):
    rec = load_subject(SUBJECT)
    ae = rec.adverse_events[0].model_copy(update={"reported_grade": 2, "facts": {"anc_10e9_l": 0.3, "temperature_c": 39}})
    rec = rec.model_copy(update={"adverse_events": [ae]})
    item = grade_subject(rec, "4.03", registry=registry)["items"][-1]
    assert item["source"] == "reported" and "below the G3 the facts prove" in item["reason"]


def _tls(doc, definition):
    return [t for t in doc["tls"] if t["definition"] == definition]


def test_tls_during_ramp_up(registry, evaluator):
    doc = grade_subject(load_subject(SUBJECT), "4.03", registry=registry, evaluator=evaluator)
    cb, howard = _tls(doc, "tls-cairo-bishop"), _tls(doc, "tls-howard")
    assert cb[0]["category"] == "LABORATORY_TLS"
    # K 6.1 mEq/L (>= 6.0 and +25 % from 4.0) and urate 520 umol/L (>= 0.476 mmol/L)
    assert set(cb[0]["abnormal"]) == {"TLS-URIC", "TLS-POTASSIUM"}
    assert cb[1]["status"] == "indeterminate"    # no labs around cycle 2
    # Howard: K 6.1 > 6.0 and urate 0.52 > 0.4758 mmol/L on the same day (03-03)
    assert (howard[0]["category"], howard[0]["day"]) == ("LABORATORY_TLS", "2021-03-03")
    assert set(howard[0]["abnormal"]) == {"H-URIC", "H-POTASSIUM"}


def test_tls_howard_needs_same_day(registry):
    from engine.adjudicate.safety import tls_assessments
    rec = load_subject(SUBJECT)
    labs = [l.model_copy(update={"date": l.date.replace(day=4)}) if l.id == "U1" else l for l in rec.labs]
    rec = rec.model_copy(update={"labs": labs})
    assert tls_assessments(rec, registry, packs=["tls-cairo-bishop"])[0]["category"] == "LABORATORY_TLS"  # window
    howard = tls_assessments(rec, registry, packs=["tls-howard"])
    # Howard: two abnormalities must fall in the same 24 h; on day 3 urate was not measured
    assert howard[0]["category"] is None and "tls.uric_acid" in howard[0]["missing"]


def test_tls_cycle_reports_its_worst_window_by_the_packs_rank(registry):
    """Howard: one window per lab day; the cycle reports the worst by the pack's rank. A later
    normal day (NO_TLS, rank 0) does not hide the laboratory TLS of 03-03 (rank 1); a day whose
    panel is incomplete (02-27: potassium only) could be laboratory TLS (rank 1) where the only
    complete day is normal, so it is reported, indeterminate, with what is established beside it."""
    from engine.adjudicate.safety import tls_assessments
    rec = load_subject(SUBJECT)
    normal = {"K1": Decimal("4.0"), "U1": Decimal(300), "P1": Decimal("1.0"), "C1": Decimal("2.3")}
    later = [l.model_copy(update={"id": l.id + "b", "date": l.date.replace(day=5), "value": normal[l.id]})
             for l in rec.labs if l.id in normal]
    howard = ["tls-howard"]
    full = [l for l in rec.labs if l.id != "K0"] + later
    c1 = tls_assessments(rec.model_copy(update={"labs": full}), registry, packs=howard)[0]
    assert (c1["day"], c1["category"], c1["at_least"]) == ("2021-03-03", "LABORATORY_TLS", None)
    only_normal = [l for l in full if l.date.day != 3]
    c1 = tls_assessments(rec.model_copy(update={"labs": only_normal}), registry, packs=howard)[0]
    assert (c1["day"], c1["category"]) == ("2021-03-05", "NO_TLS")
    k0 = next(l for l in rec.labs if l.id == "K0")
    partial_day = only_normal + [k0]     # K0 alone on 02-27: two other abnormalities cannot be excluded
    c1 = tls_assessments(rec.model_copy(update={"labs": partial_day}), registry, packs=howard)[0]
    assert (c1["day"], c1["status"], c1["category"]) == ("2021-02-27", "indeterminate", None)
    assert (c1["at_least"], c1["at_least_day"]) == ("NO_TLS", "2021-03-05")
    assert "tls.uric_acid" in c1["missing"]


def test_howard_clinical_tls_reads_the_events_attribution(registry, tmp_path):
    """Issue 11 item 16: Howard's clinical TLS needs a feature 'probably or definitely caused by'
    the abnormality: an arrhythmia the investigator attributes to hyperkalemia makes the ramp-up's
    laboratory TLS clinical; the same arrhythmia without the attribution leaves it undecided."""
    import yaml
    from engine.adjudicate.safety import tls_assessments
    data = yaml.safe_load(SUBJECT.read_text())
    arr = {"id": "AR1", "term": "Atrial fibrillation", "onset_date": "2021-03-03", "reported_grade": 2}
    f = tmp_path / "s.yaml"

    def run(event):
        data["adverse_events"] = [ae for ae in data["adverse_events"] if ae["id"] != "AR1"] + [event]
        f.write_text(yaml.safe_dump(data))
        return tls_assessments(load_subject(f), registry, packs=["tls-howard"])[0]
    attributed = run({**arr, "facts": {"due_to_hyperkalemia": True}})
    assert (attributed["category"], attributed["facts"]["tls.arrhythmia_due_to_hyperkalemia"]) == ("CLINICAL_TLS", True)
    unattributed = run(arr)
    assert unattributed["status"] == "indeterminate" and "tls.arrhythmia_due_to_hyperkalemia" in unattributed["missing"]
    excluded = run({**arr, "facts": {"due_to_hyperkalemia": False, "due_to_hypocalcemia": False}})
    assert excluded["category"] == "LABORATORY_TLS"


def test_tls_unit_without_a_cut_off_is_left_missing_and_noted(registry):
    """Howard's ionized-calcium limb is published in mmol/L only: an ionized calcium in mg/dL is not
    judged against it (left missing, noted), never compared with the mmol/L cut-off."""
    from engine.adjudicate.safety import tls_assessments
    from engine.record.safety import Lab
    rec = load_subject(SUBJECT)
    day = next(l.date for l in rec.labs if l.id == "K1")
    ion = Lab(id="I1", date=day, test="calcium_ionized", value=Decimal("4.0"), unit="mg/dL")
    c1 = tls_assessments(rec.model_copy(update={"labs": [*rec.labs, ion]}), registry, packs=["tls-howard"])
    notes = [n for t in c1 for n in t["notes"]]
    assert any("tls.calcium_ionized in mg/dL" in n for n in notes)
    assert all("tls.calcium_ionized" not in t["facts"] for t in c1)


def test_venetoclax_advisories(registry):
    doc = grade_subject(load_subject(SUBJECT), "4.03", registry=registry)
    assert doc["dosing"][0]["advisories"] == []
    rules = [a["rule"] for a in doc["dosing"][1]["advisories"]]
    assert rules == ["ADV-LABEL-POSACONAZOLE"]       # 200 mg: protocol floor met, label 70 mg not
    assert doc["dosing"][0]["not_checked"] == []
    assert [d["day.number"] for d in doc["dosing"][1]["days"]] == list(range(1, 15))


def _with_cycle2(rec, doses, **cycle):
    """The fixture subject with its cycle 2 replaced: doses {day: mg}, other cycle fields as given."""
    from engine.record.assessments import OnStudyCycle
    c1, c2 = rec.on_study.cycles
    new = OnStudyCycle.model_validate({"number": 2, "start_date": c2.start_date,
                                       "venetoclax_doses": [{"day": d, "dose_mg": v} for d, v in doses.items()], **cycle})
    return rec.model_copy(update={"on_study": rec.on_study.model_copy(update={"cycles": [c1, new]})})


PROTOCOL = {1: 100, 2: 200, **{d: 400 for d in range(3, 15)}}


@pytest.mark.parametrize("evaluator", ["durable", "reference"], indirect=True)
def test_venetoclax_inhibitor_started_mid_cycle_flags_only_its_days(registry, evaluator):
    """Issue 11 item 17: a moderate CYP3A inhibitor from day 5 (2021-04-05): the full ramp-up and
    400 mg on day 4 raise nothing; 400 mg on day 5 is above half of the day's 400 mg."""
    from engine.adjudicate.safety import dosing_advisories
    rec = load_subject(SUBJECT)
    inh = [{"name": "Fluconazole", "strength": "moderate", "pgp": False, "start_date": "2021-04-05"}]
    ok = _with_cycle2(rec, {**PROTOCOL, **{d: 200 for d in range(5, 15)}}, inhibitors=inh)
    assert dosing_advisories(ok, registry, evaluator)[1]["advisories"] == []
    bad = _with_cycle2(rec, {**PROTOCOL, **{d: 200 for d in range(6, 15)}}, inhibitors=inh)
    assert [a["rule"] for a in dosing_advisories(bad, registry, evaluator)[1]["advisories"]] == ["ADV-CYP3A-FLOOR"]


@pytest.mark.parametrize("evaluator", ["durable", "reference"], indirect=True)
def test_venetoclax_unreduced_ramp_up_day_with_an_inhibitor(registry, evaluator):
    """The issue's case: 100 / 200 mg ramp-up days with a moderate inhibitor were never checked (the
    cycle's maximum, 200 mg, is half of 400 mg)."""
    from engine.adjudicate.safety import dosing_advisories
    rec = _with_cycle2(load_subject(SUBJECT), {1: 100, 2: 200, **{d: 200 for d in range(3, 15)}},
                       cyp3a_inhibitor={"name": "Ciprofloxacin", "strength": "moderate", "pgp": False})
    assert [a["rule"] for a in dosing_advisories(rec, registry, evaluator)[1]["advisories"]] == ["ADV-CYP3A-FLOOR"]


@pytest.mark.parametrize("evaluator", ["durable", "reference"], indirect=True)
def test_venetoclax_resume_after_the_inhibitor_stops(registry, evaluator):
    """A P-gp inhibitor on days 1-7 (ends 2021-04-07): back to 400 mg on day 10 (3 days after) is
    the label's 2-3 days; on day 8 it is early; still 200 mg on day 11 is late (and off 400 mg)."""
    from engine.adjudicate.safety import dosing_advisories
    rec = load_subject(SUBJECT)
    inh = [{"name": "Amiodarone", "strength": "none", "pgp": True, "end_date": "2021-04-07"}]
    half = {1: 50, 2: 100, **{d: 200 for d in range(3, 10)}}

    def rules(doses):
        return [a["rule"] for a in dosing_advisories(_with_cycle2(rec, doses, inhibitors=inh), registry, evaluator)[1]["advisories"]]
    assert rules({**half, **{d: 400 for d in range(10, 15)}}) == []
    assert rules({**half, **{d: 400 for d in range(8, 15)}}) == ["ADV-RESUME-EARLY"]
    assert rules({**half, 10: 200, **{d: 400 for d in range(11, 15)}}) == []
    assert rules({**half, 10: 200, 11: 200, **{d: 400 for d in range(12, 15)}}) == ["ADV-TARGET", "ADV-RESUME-LATE"]


def test_dose_day_events():
    """The day listing: every day to day 14 (or the last recorded dose), unrecorded doses absent,
    the strongest inhibitor of the day, P-gp unknown when not recorded, days since an inhibitor
    (of an earlier cycle too) ended."""
    import datetime as dt
    from engine.facts.safety import dose_day_events
    from engine.record.assessments import OnStudyCycle
    c1 = OnStudyCycle.model_validate({"number": 1, "start_date": "2021-03-01", "venetoclax_doses": [{"day": 1, "dose_mg": 100}],
                                      "inhibitors": [{"name": "Voriconazole", "strength": "strong", "pgp": False,
                                                      "start_date": "2021-03-20", "end_date": "2021-03-30"}]})
    c2 = OnStudyCycle.model_validate({"number": 2, "start_date": "2021-04-01",
                                      "venetoclax_doses": [{"day": 1, "dose_mg": 100}, {"day": 16, "dose_mg": 400}],
                                      "cyp3a_inhibitor": {"name": "Fluvoxamine", "strength": "weak"},
                                      "inhibitors": [{"name": " Posaconazole ", "strength": "strong",
                                                      "start_date": "2021-04-03", "end_date": "2021-04-04"}]})
    days = dose_day_events(c2, "venetoclax", [c1, c2], 14)
    assert [e.fields["day.number"] for e in days] == list(range(1, 17))
    assert days[0].date == dt.date(2021, 4, 1) and days[0].id == "cycle 2 day 1"
    d1, d2, d3, d5 = days[0].fields, days[1].fields, days[2].fields, days[4].fields
    assert d1 == {"day.number": 1, "day.cycle": 2, "day.dose": 100, "day.cyp3a": "weak", "day.cyp3a_drug": "fluvoxamine",
                  "day.days_since_inhibitor_stop": 2}       # no day.pgp: fluvoxamine's P-gp status not recorded
    assert "day.dose" not in d2
    assert d3["day.cyp3a"] == "strong" and d3["day.cyp3a_drug"] == "posaconazole"
    assert "day.days_since_inhibitor_stop" not in d3          # an inhibitor given that day
    assert d5["day.days_since_inhibitor_stop"] == 1           # posaconazole ended the day before
    c1b = c1.model_copy(update={"inhibitors": [c1.inhibitors[0].model_copy(update={"end_date": dt.date(2021, 4, 2)})]})
    spill = dose_day_events(c2, "venetoclax", [c1b, c2], 14)         # cycle 1's voriconazole runs to cycle 2 day 2
    assert [e.fields.get("day.cyp3a_drug") for e in spill[:3]] == ["voriconazole", "voriconazole", "posaconazole"]
    assert "day.days_since_inhibitor_stop" not in spill[0].fields
    with pytest.raises(Exception, match="end_date"):
        OnStudyCycle.model_validate({"number": 1, "start_date": "2021-03-01", "inhibitors": [
            {"name": "X", "strength": "moderate", "start_date": "2021-03-05", "end_date": "2021-03-04"}]})


def test_committee_override_wins_in_the_summary(registry, db_path):
    rec = load_subject(SUBJECT)
    with AuditStore.open(db_path) as store:
        doc = grade_subject(rec, "4.03", registry=registry, store=store, actor="tester")
        assert related_of(_by_id(doc)["E1"]) is True
        before = summarize([doc], related_only=True)
        record_adjudication(store, "SAF-01", "E1", False, "Dr Committee", "fever explained by line infection", "tester")
        again = grade_subject(rec, "4.03", registry=registry, store=store, actor="tester")
        e1 = _by_id(again)["E1"]
        assert e1["attribution"]["treatment_related"] is True                    # investigator
        assert e1["attribution"]["adjudicated"]["treatment_related"] is False     # committee
        assert e1["attribution"]["adjudicated"]["reviewer"] == "Dr Committee"
        assert related_of(e1) is False
        after = summarize([again], related_only=True)
        assert store.verify().ok
    row = lambda s, t: next(r for r in s["table"] if r["term"] == t)
    assert row(before, "febrile_neutropenia")["grade_3_plus_n"] == 1
    assert row(after, "febrile_neutropenia")["grade_3_plus_n"] == 0


def test_summary_layout_and_csv(registry, tmp_path):
    docs = [grade_subject(load_subject(SUBJECT), "4.03", registry=registry),
            grade_subject(load_subject(ROOT / "fixtures/subjects/example-treated-two-marrows.yaml"), "4.03", registry=registry)]
    s = summarize(docs)
    assert s["subjects"] == 2
    fn = next(r for r in s["table"] if r["term"] == "febrile_neutropenia")
    assert (fn["any_grade_n"], fn["grade_3_plus_n"], fn["grade_3_plus_pct"]) == (2, 2, 100.0)
    sepsis = next(r for r in s["table"] if r["term"] == "sepsis")
    assert (sepsis["any_grade_n"], sepsis["grade_3_plus_n"]) == (1, 1)
    assert s["worst_grade"]["SAF-01"]["neutrophil_count_decreased"] == 4
    assert "alopecia" not in s["worst_grade"]["SAF-01"]        # before the first dose: not emergent
    out = tmp_path / "t3.csv"
    summary_csv(s, out)
    rows = list(csv.reader(out.open()))
    assert rows[0][:7] == ["term", "adverse_event", "subjects", "any_grade_n", "any_grade_pct", "grade_3_plus_n",
                           "grade_3_plus_pct"]       # counts and percentages in columns of their own
    assert ["febrile_neutropenia", "Febrile neutropenia", "2", "2", "100.0", "2", "100.0", "2", "0", "0", "0"] in rows


def test_summary_counts_lab_grades_and_says_which_source(registry, tmp_path):
    """Issue 11 item 20: neutropenia graded >= 3 from a lab counts in the AE table although no
    adverse-event record names it; each subject counts once per term, at the worst grade of
    either source, and the table says which source reached it."""
    import yaml
    data = yaml.safe_load(SUBJECT.read_text())
    data["subject_id"] = "SAF-02"
    data["adverse_events"] = [ae for ae in data["adverse_events"] if ae["id"] != "E5"]   # no neutropenia AE
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    labs_only = grade_subject(load_subject(f), "4.03", registry=registry)
    both = grade_subject(load_subject(SUBJECT), "4.03", registry=registry)       # N1 lab G4 and event E5
    s = summarize([labs_only, both])
    neut = next(r for r in s["table"] if r["term"] == "neutrophil_count_decreased")
    assert (neut["grade_3_plus_n"], neut["grade_3_plus_pct"]) == (2, 100.0)
    assert neut["grade_3_plus_by_source"] == {"event": 0, "lab": 1, "both": 1}
    assert s["worst_grade_source"]["SAF-02"]["neutrophil_count_decreased"] == "lab"
    # a grade 0 lab never makes a row, and a subject counts once however many labs it has
    assert all(r["any_grade_n"] <= 2 for r in s["table"])
    # the related-only table cannot attribute a lab: it counts events and says how many labs it left out
    rel = summarize([labs_only], related_only=True)
    assert next(r for r in rel["table"] if r["term"] == "neutrophil_count_decreased")["grade_3_plus_n"] == 0
    assert rel["sources"] == ["event"] and "graded lab results left out" in rel["note"]


def test_summary_reports_unknown_emergence(registry, tmp_path):
    import yaml
    data = yaml.safe_load(SUBJECT.read_text())
    data["on_study"].pop("last_dose_date")
    data.pop("death", None)
    data.pop("last_contact_date", None)
    data["labs"].append({"id": "LATE", "date": "2021-09-01", "test": "platelets", "value": 20,
                         "unit": "10^9/L", "lln": 150, "uln": 400})
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    s = summarize([grade_subject(load_subject(f), "4.03", registry=registry)])
    plt = next(r for r in s["table"] if r["term"] == "platelet_count_decreased")
    assert plt["grade_3_plus_n"] == 1 and plt["emergence_unknown_n"] == 1


# --- CLI ----------------------------------------------------------------------------------------

def _run(args, db):
    return CliRunner().invoke(main, ["--db", str(db), "--actor", "tester", *args], catch_exceptions=False)


def test_ctcae_grade_listing_rows_and_audit(tmp_path):
    db = tmp_path / "a.sqlite"
    r = _run(["ctcae", "grade", str(LISTING), "--ctcae", "4.03", "--json", "--evaluator", "durable"], db)
    assert r.exit_code == 0, r.output
    rows = json.loads(r.output)
    assert len(rows) == 12 and rows[0]["visit"] == "C1D8"                    # extra columns kept
    assert [x["grade"] for x in rows[:9]] == [3, 4, 2, 2, 1, 2, 3, 4, 2]
    assert rows[10]["reason"] == "row 12: column value: 'abc' is not a number"
    assert rows[11]["grade"] == "" and "LLN missing" in rows[11]["reason"]
    with AuditStore.open(db) as store:
        assert store.count() == 11 and store.verify().ok                     # one per graded row


def test_ctcae_grade_csv_output_file(tmp_path):
    out = tmp_path / "graded.csv"
    r = _run(["ctcae", "grade", str(LISTING), "--ctcae", "5.0", "--output", str(out)], tmp_path / "a.sqlite")
    assert r.exit_code == 0
    rows = list(csv.DictReader(out.open()))
    assert rows[7]["term"] == "hyperuricemia" and rows[7]["grade"] == "1"    # v5.0: no numeric G4


@pytest.mark.parametrize("content,needle", [
    ("", "empty file"),
    ("subject_id,unit\nS1,g/L\n", "header lacks term or lab_test"),
    ("term,unit\nAnemia,g/L\n", "header lacks value"),
    ("term,value\nAnemia,8,extra\n", "row 2 has more fields than the header"),
])
def test_malformed_listing_exits_2_and_writes_nothing(tmp_path, content, needle):
    f = tmp_path / "bad.csv"
    f.write_text(content)
    db = tmp_path / "a.sqlite"
    r = _run(["ctcae", "grade", str(f), "--ctcae", "4.03"], db)
    assert r.exit_code == 2 and needle in r.output and str(f) in r.output
    assert not db.exists()


def test_unknown_version_and_missing_file_exit_2(tmp_path):
    assert _run(["ctcae", "grade", str(LISTING), "--ctcae", "6.0"], tmp_path / "a").exit_code == 2
    r = _run(["ctcae", "grade", str(tmp_path / "nope.csv"), "--ctcae", "4.03"], tmp_path / "a")
    assert r.exit_code == 2 and "cannot read" in r.output


def test_ae_command_json_and_summary(tmp_path):
    db = tmp_path / "a.sqlite"
    r = _run(["ae", str(SUBJECT), "--ctcae", "5.0", "--json"], db)
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    item = _by_id(doc)["E1"]
    assert set(item) >= {"id", "term", "grade", "gradable", "reason", "source", "treatment_emergent",
                         "attribution", "decision_id"} and item["decision_id"]
    r = _run(["ae-adjudicate", "SAF-01", "E1", "--unrelated", "--reviewer", "Dr C", "--reason", "line infection"], db)
    assert r.exit_code == 0 and "supersedes" in r.output
    out = tmp_path / "t3.csv"
    r = _run(["ae-summary", str(SUBJECT), "--related-only", "--csv", str(out), "--json"], db)
    summary = json.loads(r.output)
    fn = next(x for x in summary["table"] if x["term"] == "febrile_neutropenia")
    assert fn["any_grade_n"] == 0 and out.exists()


def test_ae_command_bad_subject_file_exits_2(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("subject_id: S1\nlabs:\n  - {id: L1, date: 2021-01-01, test: neutrophils, value: x, unit: 10^9/L}\n")
    r = _run(["ae", str(bad)], tmp_path / "a.sqlite")
    assert r.exit_code == 2 and "labs[0].value" in r.output


def test_wrongly_typed_clinical_fact_names_subject_and_event(tmp_path):
    bad = tmp_path / "s.yaml"
    bad.write_text("subject_id: S9\nadverse_events:\n  - {id: V1, term: Vomiting, onset_date: 2021-01-01, "
                   "reported_grade: 2, facts: {episodes_24h: many}}\n")
    r = _run(["ae", str(bad)], tmp_path / "a.sqlite")
    assert r.exit_code == 2
    assert "subject S9" in r.output and "adverse event V1: facts.episodes_24h" in r.output and "integer" in r.output
    assert not (tmp_path / "a.sqlite").exists() or AuditStore.open(tmp_path / "a.sqlite").count() == 0


def _subject_without_last_dose(tmp_path, ongoing):
    import yaml
    data = yaml.safe_load(SUBJECT.read_text())
    data["on_study"].pop("last_dose_date", None)
    data.pop("death", None)
    data.pop("last_contact_date", None)
    if ongoing is not None:
        data["on_study"]["treatment_ongoing"] = ongoing
    late = {"id": "LATE", "term": "Alopecia", "onset_date": "2021-12-01", "reported_grade": 1}
    data["adverse_events"].append(late)
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    return load_subject(f)


@pytest.mark.parametrize("ongoing,want", [(None, None), (True, True), (False, None)])
def test_missing_last_dose_is_not_ongoing(registry, tmp_path, ongoing, want):
    """Issue 11 item 18 (paper: 'from the first dose until 28 days after the discontinuation of
    treatment'): an event 9 months after the first dose is treatment-emergent only when the
    record says treatment is ongoing; with the last dose date unknown it is unknown."""
    doc = grade_subject(_subject_without_last_dose(tmp_path, ongoing), "4.03", registry=registry)
    assert _by_id(doc)["LATE"]["treatment_emergent"] is want
    # an event within 28 days of the first dose is emergent whatever the last dose date
    assert _by_id(doc)["E1"]["treatment_emergent"] is True


def test_treatment_ongoing_with_a_last_dose_is_refused(tmp_path):
    import yaml
    from engine.errors import InputError
    data = yaml.safe_load(SUBJECT.read_text())
    data["on_study"]["treatment_ongoing"] = True
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as exc:
        load_subject(f)
    assert "treatment_ongoing" in str(exc.value)


def _subject_with_attribution(tmp_path, attribution, trial=None):
    import yaml
    data = yaml.safe_load(SUBJECT.read_text())
    data["adverse_events"][0]["attribution"] = attribution
    if trial:
        data["trial"] = trial
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    return f


def test_attribution_is_a_map_of_the_protocols_study_drugs(registry, tmp_path):
    """Issue 12 item 3: attribution {<drug>: <level>} (the old per-drug keys are this map); the
    drugs come from the protocol; an unrecorded drug leaves relatedness unknown, never 'unrelated'."""
    rec = load_subject(_subject_with_attribution(tmp_path, {"venetoclax": "unlikely", "azacitidine": "unrelated"}))
    e1 = _by_id(grade_subject(rec, "4.03", registry=registry))["E1"]
    assert e1["attribution"]["investigator"] == {"venetoclax": "unlikely", "azacitidine": "unrelated",
                                                 "homoharringtonine": None}
    assert e1["attribution"]["treatment_related"] is None           # homoharringtonine not recorded
    rec = load_subject(_subject_with_attribution(tmp_path, {"venetoclax": "unlikely", "azacitidine": "unrelated",
                                                            "homoharringtonine": "unlikely"}))
    assert _by_id(grade_subject(rec, "4.03", registry=registry))["E1"]["attribution"]["treatment_related"] is False


def test_attribution_naming_another_drug_or_level_is_refused(tmp_path):
    """A drug that is not a study drug of the trial, or a level the attribution pack does not
    declare: exit 2, file, subject, field and expectation named, nothing written."""
    db = tmp_path / "a.sqlite"
    f = _subject_with_attribution(tmp_path, {"venetoclax": "possible", "cytarabine": "possible"})
    r = _run(["ae", str(f)], db)
    assert r.exit_code == 2, r.output
    assert "s.yaml" in r.output and "subject SAF-01" in r.output
    assert "adverse_events[0].attribution.cytarabine" in r.output and "not a study drug of trial vah" in r.output
    assert "venetoclax, azacitidine, homoharringtonine" in r.output
    f = _subject_with_attribution(tmp_path, {"venetoclax": "maybe"})
    r = _run(["ae", str(f)], db)
    assert r.exit_code == 2, r.output
    assert "adverse event E1: attribution.venetoclax" in r.output and "'maybe' is not allowed" in r.output
    assert not db.exists() or AuditStore.open(db).count() == 0


def test_term_aliases_are_lab_terms_pack_data(registry):
    """Issue 12 item 3: the reported wording -> CTCAE term id map is the lab-terms pack's decision
    `term_aliases` (no alias table in engine/): a listed wording maps, any other is read as written."""
    from engine.facts.labmap import lab_map
    lm = lab_map(registry)
    assert [lm.term_id(t) for t in ("Anaemia", "Tumour lysis syndrome", "TLS", "Hypocalcemia (Ionized)",
                                    "Pneumonia", "Febrile neutropenia")] == [
        "anemia", "tumor_lysis_syndrome", "tumor_lysis_syndrome", "hypocalcemia_ionized", "lung_infection",
        "febrile_neutropenia"]
    rows = {r.id for d in lm.pack.manifest.decisions if d.id == "term_aliases" for r in d.rows}
    assert {"ANEMIA", "TUMOR-LYSIS-SYNDROME", "LUNG-INFECTION"} <= rows


# --- issue 12 item 3: doses per study drug; VIALE-A's dosing as data -----------------------------------

VIALE_A_SUBJECT = ROOT / "fixtures/safety/viale-a-subject.yaml"


def test_per_drug_doses_and_the_old_key_as_its_alias(tmp_path):
    """`doses: {<drug>: [...]}`; the first records' `venetoclax_doses` is read as doses.venetoclax
    (any `<drug>_doses` key); giving both for one drug is refused, naming the field."""
    import yaml
    from engine.errors import InputError
    old = load_subject(SUBJECT).on_study.cycles[0]
    assert [d.dose_mg for d in old.doses["venetoclax"][:3]] == [100, 200, 400]
    new = load_subject(VIALE_A_SUBJECT).on_study.cycles[0]
    assert sorted(new.doses) == ["azacitidine", "venetoclax"] and len(new.doses["azacitidine"]) == 7
    data = yaml.safe_load(SUBJECT.read_text())
    data["on_study"]["cycles"][0]["doses"] = {"venetoclax": [{"day": 1, "dose_mg": 100}]}
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    with pytest.raises(InputError) as exc:
        load_subject(f)
    assert "cycles[0].venetoclax_doses" in str(exc.value) and "twice" in str(exc.value)


@pytest.mark.parametrize("evaluator", ["durable", "reference"], indirect=True)
def test_viale_a_missed_ramp_up_step_is_an_advisory(registry, evaluator):
    """VIALE-A (rules/viale-a-dosing, no Python): venetoclax 100 mg day 1, 200 mg day 2, 400 mg from
    day 3 in cycle 1, then 400 mg from day 1 in 28-day cycles. Day 2 left at 100 mg is a missed
    ramp step; 200 mg there is the schedule; cycle 2's 0 mg days are an interruption."""
    from engine.adjudicate.safety import dosing_advisories
    viale_a = registry.for_trial("viale-a")
    rec = load_subject(VIALE_A_SUBJECT)
    got = dosing_advisories(rec, viale_a, evaluator)
    assert [(d["drug"], d["cycle"], [a["rule"] for a in d["advisories"]]) for d in got] == [
        ("venetoclax", 1, ["ADV-RAMP-UP"]), ("venetoclax", 2, [])]
    assert [d["day.number"] for d in got[0]["days"]] == list(range(1, 29))   # the protocol's day 28
    c1 = rec.on_study.cycles[0]
    fixed = c1.model_copy(update={"doses": {**c1.doses, "venetoclax": [
        d.model_copy(update={"dose_mg": 200}) if d.day == 2 else d for d in c1.doses["venetoclax"]]}})
    ok = rec.model_copy(update={"on_study": rec.on_study.model_copy(update={"cycles": [fixed, *rec.on_study.cycles[1:]]})})
    assert [a["rule"] for d in dosing_advisories(ok, viale_a, evaluator) for a in d["advisories"]] == []


def test_viale_a_ae_command(tmp_path):
    """`adjudicator --trial viale-a ae`: TLS around cycle 1 day 1 of the drug with a ramp-up, the
    dosing advisory, attribution to VIALE-A's two study drugs (a VAH drug would be refused)."""
    db = tmp_path / "a.sqlite"
    r = CliRunner().invoke(main, ["--db", str(db), "--actor", "tester", "--trial", "viale-a", "ae",
                                  str(VIALE_A_SUBJECT)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "TLS tls-cairo-bishop cycle 1 (start 2019-03-04): NO_TLS" in r.output
    assert "venetoclax cycle 1: a cycle 1 ramp-up dose (day 1: 100 mg, day 2: 200 mg) differs" in r.output
    assert "venetoclax cycle 2: no advisory" in r.output
    import yaml
    data = yaml.safe_load(VIALE_A_SUBJECT.read_text())
    data["adverse_events"][0]["attribution"]["homoharringtonine"] = "unlikely"
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    r = CliRunner().invoke(main, ["--db", str(tmp_path / "b.sqlite"), "--trial", "viale-a", "ae", str(f)])
    assert r.exit_code == 2 and "not a study drug of trial viale-a" in r.output
    assert "one of venetoclax, azacitidine" in r.output


def test_a_dose_outside_the_dosing_packs_range_is_refused(tmp_path):
    """The record takes any dose up to 100 g; the dosing pack declares venetoclax's plausible
    range (0-1200 mg): 5000 mg on cycle 1 day 1 is bad input, naming the day and drug."""
    import yaml
    data = yaml.safe_load(VIALE_A_SUBJECT.read_text())
    data["on_study"]["cycles"][0]["doses"]["venetoclax"][0]["dose_mg"] = 5000
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    db = tmp_path / "a.sqlite"
    r = CliRunner().invoke(main, ["--db", str(db), "--trial", "viale-a", "ae", str(f)])
    assert r.exit_code == 2, r.output
    assert "subject VA-SAF-01" in r.output and "cycle 1 day 1: doses.venetoclax (day.dose)" in r.output
    assert not db.exists() or AuditStore.open(db).count() == 0


def test_doses_of_a_drug_the_trial_does_not_give_are_refused(tmp_path):
    import yaml
    data = yaml.safe_load(VIALE_A_SUBJECT.read_text())
    data["on_study"]["cycles"][0]["doses"]["homoharringtonine"] = [{"day": 1, "dose_mg": 2}]
    f = tmp_path / "s.yaml"
    f.write_text(yaml.safe_dump(data))
    r = CliRunner().invoke(main, ["--db", str(tmp_path / "a.sqlite"), "--trial", "viale-a", "ae", str(f)])
    assert r.exit_code == 2, r.output
    assert "on_study.cycles[0].doses.homoharringtonine" in r.output and "not a study drug of trial viale-a" in r.output
