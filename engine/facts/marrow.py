"""Subject record -> what the response packs' courses read: the facts they declare (first dose,
last contact: each pack's `from:`) and the timeline of dated events (engine/facts/timeline.py). Structure only: which
assessment is the pretreatment one, which items the course visits, what counts as a remission or
a relapse, every window and threshold are the packs' (their collections and `course:` section).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

from engine.evaluate.events import Timeline
from engine.evaluate.facts import FactSheet
from engine.facts.derive import declared_facts, derive
from engine.facts.timeline import subject_timeline
from engine.record import SubjectRecord


def course_inputs(record: SubjectRecord, path: str | Path, packs: Iterable[Any]) -> tuple[FactSheet, Timeline]:
    """The facts the response packs declare (derived as their `from:` says) and the subject's
    timeline, each value citing the record field it came from."""
    return derive(record, declared_facts(packs), path), subject_timeline(record, path)
