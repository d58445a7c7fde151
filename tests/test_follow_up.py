"""Follow-up: the record's transplant/DLI events (checked dates), the follow-up pack's overall
survival decision and the timeline the report draws, recorded once per enrolled subject."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from engine.adjudicate.follow_up import cohort_entries, timeline
from engine.errors import InputError
from engine.record import load_subject

ROOT = Path(__file__).resolve().parents[1]
VAH96 = ROOT / "fixtures" / "cohort" / "vah96"


def _subject_with(tmp_path: Path, sid: str, change) -> Path:
    data = yaml.safe_load((VAH96 / f"{sid}.yaml").read_text())
    change(data)
    out = tmp_path / f"{sid}.yaml"
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def _dead_and_transplanted() -> str:
    for p in sorted(VAH96.glob("*.yaml")):
        d = yaml.safe_load(p.read_text())
        if d.get("death") and any(e["type"] == "hsct" for e in (d.get("follow_up") or {}).get("events", [])):
            return d["subject_id"]
    raise AssertionError("the designed cohort has transplanted subjects who died")


def test_death_is_an_os_event_with_the_days_from_day_1(registry, evaluator):
    sid = _dead_and_transplanted()
    rec = load_subject(VAH96 / f"{sid}.yaml")
    [entry] = cohort_entries(rec, VAH96 / f"{sid}.yaml", registry, {}, evaluator, "tester")
    o = entry["outcome"]
    assert entry["use_case"] == "follow-up" and o["os"] == {"event": True, "kind": "death"}
    assert o["values"]["follow_up.os_days"] == (rec.death.date - rec.on_study.first_dose_date).days
    kinds = [e["kind"] for e in entry["input"]["timeline"]]
    assert kinds[0] in ("assessment", "first_dose") and "hsct" in kinds and kinds[-1] == "last_contact"
    assert kinds.index("hsct") < kinds.index("death")
    from engine.audit.compact import sources_of
    assert sources_of(entry["input"])["follow_up.death_date"].endswith(f"{sid}.yaml#death.date")
    # the file is named once per record, each fact by its field
    [(file, fields)] = entry["input"]["source_files"].items()
    assert file.endswith(f"{sid}.yaml") and fields["follow_up.death_date"] == "death.date"


def test_alive_is_censored_at_the_last_contact_and_missing_is_not_censored(tmp_path, registry, evaluator):
    alive = next(p for p in sorted(VAH96.glob("*.yaml")) if "death:" not in p.read_text())
    rec = load_subject(alive)
    [entry] = cohort_entries(rec, alive, registry, {}, evaluator, "tester")
    assert entry["outcome"]["os"] == {"event": False, "kind": "censored"}
    unknown = _subject_with(tmp_path, alive.stem, lambda d: d.pop("last_contact_date"))
    [entry] = cohort_entries(load_subject(unknown), unknown, registry, {}, evaluator, "tester")
    assert entry["outcome"]["os"] is None                       # neither death nor last contact: no outcome
    assert entry["outcome"]["values"]["follow_up.os_days"] is None


@pytest.mark.parametrize("field, change, message", [
    ("follow_up.events[0].date", lambda d: d.setdefault("follow_up", {"events": []})["events"].insert(
        0, {"type": "hsct", "date": d["on_study"]["first_dose_date"].replace(year=2019), "kind": "allogeneic"}),
     "before the first dose"),
    ("follow_up.events[0].date", lambda d: d.setdefault("follow_up", {"events": []})["events"].insert(
        0, {"type": "dli", "date": d["last_contact_date"].replace(year=d["last_contact_date"].year + 1)}),
     "after the last contact"),
])
def test_follow_up_dates_are_checked(tmp_path, field, change, message):
    path = _subject_with(tmp_path, "VAH-001", change)
    with pytest.raises(InputError) as e:
        load_subject(path)
    assert field in str(e.value) and message in str(e.value)


def test_timeline_is_in_date_order():
    rec = load_subject(VAH96 / f"{_dead_and_transplanted()}.yaml")
    dates = [e["date"] for e in timeline(rec)]
    assert dates == sorted(dates)
