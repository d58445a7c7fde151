"""Issue 16: bad input never gives a silent wrong answer nor a traceback. Each case goes through
the command line and must end in exit 2 with one line naming the file (and line), the field and
the expectation, with nothing written to the audit store."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli import main
from engine.audit import AuditStore

ROOT = Path(__file__).resolve().parent.parent
TREATED = ROOT / "fixtures" / "subjects" / "example-treated-two-marrows.yaml"
TEXT = TREATED.read_text(encoding="utf-8")


def cli(db: Path, *args: str):
    return CliRunner().invoke(main, ["--db", str(db), "--actor", "tester", *args])


def refused(result, *needles: str) -> str:
    """Exit 2, one error line, no traceback, every needle in the message."""
    out = result.output
    assert result.exit_code == 2, out
    assert "Traceback" not in out and not isinstance(result.exception, (TypeError, ValueError, KeyError))
    assert out.startswith("error: "), out
    for n in needles:
        assert n in out, (n, out)
    return out


def nothing_written(db: Path) -> None:
    if db.exists():
        with AuditStore.open(db, create=False) as store:
            assert store.count() == 0


def subject_with(tmp_path: Path, old: str, new: str, name: str = "s.yaml") -> Path:
    assert old in TEXT, old
    path = tmp_path / name
    path.write_text(TEXT.replace(old, new, 1), encoding="utf-8")
    return path


# --- tracebacks: impossible YAML scalars, numbers, aliases, nesting ---------------------------------

@pytest.mark.parametrize("old, new, field", [
    ("consent_date: 2021-09-01", "consent_date: 2021-02-30", "consent_date"),
    ("consent_date: 2021-09-01", "consent_date: 0000-09-01", "consent_date"),
    ("consent_date: 2021-09-01", "consent_date: 2021-13-01", "consent_date"),
    ("consent_date: 2021-09-01", "consent_date: 2021-09-01 25:00:00", "consent_date"),
    ("  age_years: 58", "  age_years: !!int 'abc'", "age_years"),
    ("  age_years: 58", "  age_years: !!float 'x'", "age_years"),
    ("  age_years: 58", "  age_years: " + "9" * 5000, "age_years"),
    ("  age_years: 58", "  age_years: .nan", "age_years"),
    ("  weight_kg: 66", "  weight_kg: .inf", "weight_kg"),
    ("  weight_kg: 66", "  weight_kg: !!binary aGVsbG8=", "weight_kg"),
])
def test_impossible_yaml_scalars_are_refused_with_their_line(tmp_path: Path, old: str, new: str, field: str) -> None:
    f = subject_with(tmp_path, old, new)
    line = TEXT.replace(old, new, 1).splitlines().index(new.splitlines()[0]) + 1
    db = tmp_path / "a.sqlite"
    refused(cli(db, "screen", str(f)), f"{f}:{line}")
    nothing_written(db)


@pytest.mark.parametrize("old, new, field, expect", [
    ("  weight_kg: 66", "  weight_kg: 1.0e+40", "demographics.weight_kg", "outside the range"),
    ("  weight_kg: 66", "  weight_kg: '1e999999999'", "demographics.weight_kg", "outside the range"),
    ("  wbc_10e9_l: 3.9", "  wbc_10e9_l: {value: 1.0e+40, unit: cells/uL}", "screening.wbc_10e9_l", "outside the range"),
    ("  wbc_10e9_l: 3.9", "  wbc_10e9_l: '1e999999999'", "screening.wbc_10e9_l", "outside the range"),
    ("  wbc_10e9_l: 3.9", "  wbc_10e9_l: 1.0e-300", "screening.wbc_10e9_l", "outside the range"),
    ("  wbc_10e9_l: 3.9", "  wbc_10e9_l: 1.0e+308", "screening.wbc_10e9_l", "outside the range"),
])
def test_numbers_no_measurement_can_have_are_refused(tmp_path: Path, old: str, new: str, field: str,
                                                     expect: str) -> None:
    db = tmp_path / "a.sqlite"
    refused(cli(db, "screen", str(subject_with(tmp_path, old, new))), f"field {field}", expect)
    nothing_written(db)


def test_a_boolean_where_an_integer_is_expected_is_refused(tmp_path: Path) -> None:
    """`age_years: true` was read as 1 and audited as a decided failure (issue 16 item 5)."""
    db = tmp_path / "a.sqlite"
    refused(cli(db, "screen", str(subject_with(tmp_path, "  age_years: 58", "  age_years: true"))),
            "field demographics.age_years", "a boolean (true) where a number is expected")
    refused(cli(db, "screen", str(subject_with(tmp_path, "  ecog: 2", "  ecog: yes"))), "field demographics.ecog")
    nothing_written(db)


def test_alias_bomb_and_recursive_alias_are_refused_fast(tmp_path: Path) -> None:
    bomb = "a: &a [x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
    f = tmp_path / "bomb.yaml"
    f.write_text("subject_id: X1\n" + bomb)
    assert len(f.read_bytes()) < 1200
    refused(cli(tmp_path / "a.sqlite", "screen", str(f)), str(f), "expands to more than")
    f.write_text("subject_id: X1\nsite: &s [*s]\n")
    refused(cli(tmp_path / "a.sqlite", "screen", str(f)), f"{f}:2", "recursive alias")


def test_deep_nesting_is_refused(tmp_path: Path) -> None:
    y = tmp_path / "deep.yaml"
    y.write_text("subject_id: X1\nsite:\n" + "".join("  " * i + "- \n" for i in range(1, 300)))
    refused(cli(tmp_path / "a.sqlite", "screen", str(y)), str(y), "nested deeper than")
    j = tmp_path / "deep.json"
    j.write_text('{"subject_id": "X1", "site": ' + "[" * 100_000 + "]" * 100_000 + "}")
    refused(cli(tmp_path / "a.sqlite", "screen", str(j)), str(j), "nested too deeply")


@pytest.mark.parametrize("text, needle", [
    ('{"subject_id": "X1", "site": NaN}', "NaN is not a number"),
    ('{"subject_id": "X1", "site": Infinity}', "Infinity is not a number"),
    ('{"subject_id": "X1", "site": 1e999}', "too large"),
    ('{"subject_id": "X1", "site": ' + "1" * 5000 + "}", "5000 digits"),
    ('{"subject_id": "X1", "site": "a", "site": "b"}', "duplicate key 'site'"),
])
def test_json_numbers_and_keys_that_cannot_be_data(tmp_path: Path, text: str, needle: str) -> None:
    f = tmp_path / "s.json"
    f.write_text(text)
    refused(cli(tmp_path / "a.sqlite", "screen", str(f)), str(f), needle)


def test_devices_folders_and_huge_files_are_not_read(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite"
    link = tmp_path / "zero.yaml"
    link.symlink_to("/dev/zero")
    refused(cli(db, "screen", str(link)), str(link), "not a regular file")
    big = tmp_path / "big.yaml"
    with big.open("wb") as fh:
        fh.write(b"subject_id: X1\nsite: '")
        fh.truncate(17 << 20)
    refused(cli(db, "screen", str(big)), str(big), "larger than 16 MiB")
    nothing_written(db)


def test_control_characters_in_ids_are_refused(tmp_path: Path) -> None:
    """An assessment id holding ESC[2J would clear the terminal of whoever prints it."""
    f = subject_with(tmp_path, "site: SITE-01", 'site: "SITE\\e[2J-01"')
    out = refused(cli(tmp_path / "a.sqlite", "screen", str(f)), "field site", "U+001B")
    assert "\x1b" not in out


def test_inconsistent_timelines_are_refused_with_the_field(tmp_path: Path) -> None:
    data = yaml.safe_load(TEXT)
    cycles = data["on_study"]["cycles"]
    assert len(cycles) >= 2
    cycles[1]["start_date"] = cycles[0]["start_date"]                       # cycle 2 not after cycle 1
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    refused(cli(tmp_path / "a.sqlite", "marrow", str(f)), "field on_study.cycles[1].start_date", "not after cycle 1")
    data = yaml.safe_load(TEXT)
    data["last_contact_date"] = "2021-08-01"                                 # before consent 2021-09-01
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    refused(cli(tmp_path / "a.sqlite", "marrow", str(f)), "field last_contact_date", "before consent")
    data = yaml.safe_load(TEXT)
    data["labs"][0]["date"] = "2999-01-01"                                   # in the future
    f.write_text(yaml.safe_dump(data, sort_keys=False))
    refused(cli(tmp_path / "a.sqlite", "ae", str(f)), "field labs[0].date", "in the future")


# --- packs: duplicate keys, wrong parameter types, non-finite parameters ------------------------------

def _pack_copy(tmp_path: Path, old: str, new: str) -> Path:
    import shutil
    rules = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", rules)
    p = rules / "vah-eligibility" / "pack.yaml"
    text = p.read_text()
    assert old in text
    p.write_text(text.replace(old, new, 1))
    return rules


@pytest.mark.parametrize("old, new, needle", [
    ("{name: age_min_years, value: 18,", "{name: age_min_years, value: 18, value: 99,", "duplicate key 'value'"),
    ("{name: age_min_years, value: 18,", "{name: age_min_years, value: eighteen,", "uses it as a number"),
    ("{name: age_min_years, value: 18,", "{name: age_min_years, value: .nan,", "not a finite number"),
    ("{name: age_min_years, value: 18,", "{name: age_min_years, value: .inf,", "not a finite number"),
    ("{name: age_min_years, value: 18,", "{name: age_min_years, value: " + "1" * 5000 + ",", "5000 digits"),
    ("{name: age_min_years, value: 18,", "{name: age_min_years, value: 1.0e+300,", "outside the range"),
])
def test_broken_packs_are_refused_at_load_with_file_line_and_key(tmp_path: Path, old: str, new: str,
                                                                 needle: str) -> None:
    rules = _pack_copy(tmp_path, old, new)
    result = CliRunner().invoke(main, ["--rules-dir", str(rules), "rules", "validate"])
    line = next(i for i, t in enumerate((rules / "vah-eligibility" / "pack.yaml").read_text().splitlines(), 1)
                if "age_min_years, value:" in t)
    refused(result, f"vah-eligibility/pack.yaml:{line}", needle)


def test_a_second_when_of_a_rule_is_refused(tmp_path: Path) -> None:
    """A second `when:` silently replaced the first: an ineligible candidate screened ELIGIBLE."""
    text = (ROOT / "rules" / "vah-eligibility" / "pack.yaml").read_text()
    m = re.search(r"\n(\s+)when: ", text)
    assert m
    indent = m.group(1)
    rules = _pack_copy(tmp_path, m.group(0), f"{m.group(0)}{{fact: subject.age_years, exists: true}}\n{indent}when: ")
    refused(CliRunner().invoke(main, ["--rules-dir", str(rules), "rules", "validate"]), "duplicate key 'when'",
            "field rules[")


def test_param_overrides_that_cannot_be_numbers_are_refused(tmp_path: Path) -> None:
    f = ROOT / "fixtures" / "screening" / "C006-ecog-2.yaml"
    for bad in ("nan", "inf", "1e300", "eighteen"):
        refused(cli(tmp_path / "a.sqlite", "screen", str(f), "--param", f"vah-eligibility.age_min_years={bad}"),
                "age_min_years")
    nothing_written(tmp_path / "a.sqlite")


# --- outputs checked before anything is written -------------------------------------------------------

def test_output_into_a_missing_folder_fails_before_grading(tmp_path: Path) -> None:
    listing = tmp_path / "labs.csv"
    listing.write_text("lab_test,value,unit,lln,uln\nneutrophils,0.4,10^9/L,1.5,8\n")
    db = tmp_path / "a.sqlite"
    refused(cli(db, "ctcae", "grade", str(listing), "--ctcae", "5.0", "--output", str(tmp_path / "no" / "x.csv")),
            "field --output", "folder does not exist")
    nothing_written(db)
    (tmp_path / "file").write_text("x")
    refused(cli(db, "cohort", str(ROOT / "fixtures" / "cohort" / "vah96"), "--csv-dir", str(tmp_path / "file" / "s")),
            "field --csv-dir")
    nothing_written(db)


def test_json_output_of_every_command_has_no_raw_control_characters(tmp_path: Path) -> None:
    db = tmp_path / "a.sqlite"
    result = cli(db, "screen", str(ROOT / "fixtures" / "screening" / "C006-ecog-2.yaml"), "--json")
    assert result.exit_code == 0
    json.loads(result.output)
