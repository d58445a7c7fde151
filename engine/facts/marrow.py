"""Subject record -> what the response packs' courses read: the subject's dates (first dose, last
contact) and its timeline of dated events (engine/facts/timeline.py). Structure only: which
assessment is the pretreatment one, which items the course visits, what counts as a remission or
a relapse, every window and threshold are the packs' (their collections and `course:` section).
"""
from __future__ import annotations

from pathlib import Path

from engine.evaluate.events import Timeline
from engine.evaluate.facts import FactSheet
from engine.facts.timeline import subject_facts, subject_timeline
from engine.record import SubjectRecord


def course_inputs(record: SubjectRecord, path: str | Path = "<record>") -> tuple[FactSheet, Timeline]:
    """The subject's facts and timeline, each value citing the record field it came from."""
    return subject_facts(record, path), subject_timeline(record, path)
