"""The trial as data (issue 12): the protocol file picks the packs, profiles, drugs and tables;
`--trial NAME` chooses it; a broken protocol, an unknown trial or a subject file of another trial is
refused with one message, exit 2, nothing written."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from cli import main
from engine.errors import InputError, PackError
from engine.rules.load import load_registry
from engine.rules.protocol import default_trial, known_trials, load_protocol

from test_bad_input import nothing_written, refused

ROOT = Path(__file__).resolve().parents[1]
SUBJECT = ROOT / "fixtures" / "screening" / "C027-dic-score-4.yaml"


def cli(db: Path, *args: str):
    return CliRunner().invoke(main, ["--db", str(db), "--actor", "tester", *args])


@pytest.fixture
def rules_copy(tmp_path: Path) -> Path:
    """A copy of the rules folder whose protocols a test may break."""
    dst = tmp_path / "rules"
    shutil.copytree(ROOT / "rules", dst)
    return dst


def _edit(rules: Path, trial: str, change) -> None:
    path = rules / "_trials" / trial / "protocol.yaml"
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    change(doc)
    path.write_text(yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")


def test_the_vah_protocol_names_its_packs_by_role():
    reg = load_registry(ROOT / "rules").for_trial("vah")
    proto = reg.trial()
    assert proto.registry == "NCT04424147"
    assert list(proto.profile_packs()) == ["trial", "eln-2017", "eln-2022"]     # the primary first
    assert proto.role("eligibility") == "vah-eligibility" and proto.ctcae_pack() == "ctcae-4.03"
    assert proto.ctcae_pack("5.0") == "ctcae-5.0"
    assert [d.name for d in proto.study_drugs] == ["venetoclax", "azacitidine", "homoharringtonine"]
    assert [e.id for e in proto.endpoints if e.primary] == ["crc_by_landmark"]
    with pytest.raises(InputError, match="unknown CTCAE version"):
        proto.ctcae_pack("3.0")


def test_every_trial_protocol_loads_against_the_rules_folder():
    reg = load_registry(ROOT / "rules")
    for trial in known_trials(ROOT / "rules"):
        proto = load_protocol(ROOT / "rules", trial, set(reg.packs), strict=True)
        assert proto.id == trial


def test_a_protocol_naming_a_missing_pack_is_refused(tmp_path: Path, rules_copy: Path):
    _edit(rules_copy, "vah", lambda d: d["packs"].__setitem__("eligibility", "no-such-pack"))
    db = tmp_path / "audit.sqlite"
    out = refused(cli(db, "--rules-dir", str(rules_copy), "--trial", "vah", "screen", str(SUBJECT)),
                  "no-such-pack", "protocol.yaml", "packs.eligibility")
    assert out.count("\n") == 1
    nothing_written(db)
    refused(cli(db, "--rules-dir", str(rules_copy), "rules", "validate"), "no-such-pack", "packs.eligibility")


def test_a_protocol_with_an_unknown_key_or_a_bad_primary_is_refused(rules_copy: Path):
    _edit(rules_copy, "vah", lambda d: d.__setitem__("endpointz", []))
    with pytest.raises(PackError, match="endpointz"):
        load_protocol(rules_copy, "vah")
    _edit(rules_copy, "vah", lambda d: (d.pop("endpointz"), d["packs"]["response"].__setitem__("primary", "x")))
    with pytest.raises(PackError, match="primary profile 'x'"):
        load_protocol(rules_copy, "vah")


def test_a_duplicate_key_in_a_protocol_is_refused(rules_copy: Path):
    path = rules_copy / "_trials" / "vah" / "protocol.yaml"
    path.write_text(path.read_text(encoding="utf-8") + "cycle_days: 21\n", encoding="utf-8")
    with pytest.raises(PackError, match="protocol.yaml"):
        load_protocol(rules_copy, "vah")


def test_an_unknown_trial_is_refused(tmp_path: Path):
    db = tmp_path / "audit.sqlite"
    refused(cli(db, "--trial", "no-such-trial", "screen", str(SUBJECT)), "no-such-trial", "--trial")
    nothing_written(db)


def test_a_subject_file_of_another_trial_is_refused(tmp_path: Path):
    subject = tmp_path / "s.yaml"
    doc = yaml.safe_load(SUBJECT.read_text(encoding="utf-8"))
    doc["trial"] = "some-other-trial"
    subject.write_text(yaml.safe_dump(doc), encoding="utf-8")
    db = tmp_path / "audit.sqlite"
    for command in (["screen"], ["marrow"], ["ae"]):
        refused(cli(db, "--trial", "vah", *command, str(subject)), "some-other-trial", "trial", str(subject))
    nothing_written(db)
    doc["trial"] = "vah"                              # its own trial: accepted
    subject.write_text(yaml.safe_dump(doc), encoding="utf-8")
    assert cli(db, "--trial", "vah", "screen", str(subject)).exit_code == 0


def test_default_trial_comes_from_the_config_file_or_the_environment(rules_copy: Path, monkeypatch):
    monkeypatch.delenv("ADJUDICATOR_TRIAL", raising=False)
    shutil.copytree(rules_copy / "_trials" / "vah", rules_copy / "_trials" / "other")
    _edit(rules_copy, "other", lambda d: d.__setitem__("id", "other"))
    config = rules_copy / "_trials" / "config.yaml"
    config.unlink(missing_ok=True)
    with pytest.raises(InputError, match="several trials"):
        default_trial(rules_copy)
    config.write_text("default: other\n", encoding="utf-8")
    assert default_trial(rules_copy) == "other"
    monkeypatch.setenv("ADJUDICATOR_TRIAL", "vah")
    assert default_trial(rules_copy) == "vah"
