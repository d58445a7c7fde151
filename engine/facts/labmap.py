"""The lab-test vocabulary of a rule pack, read through the engine: which CTCAE terms a lab test
is graded for (low and high direction), its unit family, how a reported unit spelling reads
(canonical unit and exact factor), and which CTCAE term id a reported term wording names.

The knowledge is pack data (rules/lab-terms); this module only asks the pack and caches the
answers, so the engine names no lab test. Each answer keeps the pack result that produced it, for
the audit record of the grade it feeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from engine.errors import PackError
from engine.evaluate.facts import FactSheet
from engine.evaluate.run import Evaluator, PackResult, evaluate_pack
from engine.rules.load import Pack, Registry

LAB_MAP_PACK = "lab-terms"
AS_REPORTED = "as_reported"       # the unit decision's answer for families graded in multiples of ULN


def norm_unit(unit: str) -> str:
    """A unit spelling as the pack compares it: lower case, no spaces, micro sign as 'u'."""
    return unit.strip().lower().replace(" ", "").replace("µ", "u").replace("μ", "u")


def term_key(text: str) -> str:
    """A term wording as the pack compares it: lower case, '-' as a space, words joined by _."""
    return "_".join(str(text).strip().lower().replace("-", " ").split())


@dataclass(frozen=True)
class UnitReading:
    unit: str | None          # canonical unit, the reported spelling (ratio families), or None = unreadable
    factor: Decimal | None
    result: PackResult | None = None
    as_reported: bool = False  # a family graded in multiples of the record's own range: any unit


class LabMap:
    """Terms, families and unit readings of the lab-terms pack (evaluated once per test / spelling)."""

    def __init__(self, registry: Registry, evaluator: Evaluator | None = None) -> None:
        self.pack: Pack = registry.get(LAB_MAP_PACK)
        self.evaluator = evaluator
        decl = next((f for f in self.pack.manifest.facts if f.name == "lab.test"), None)
        if decl is None or not decl.values:
            raise PackError("the lab-terms pack must declare lab.test with its values", file=self.pack.file)
        self.tests: tuple[str, ...] = tuple(decl.values)
        self._terms: dict[str, tuple[str | None, str | None, str | None]] = {}
        self._units: dict[tuple[str, str], UnitReading] = {}
        self._aliases: dict[str, str] = {}
        for test in self.tests:
            self._terms[test] = self._ask_terms(test)
        self.analyte_of: dict[str, str] = {}
        for test, (low, high, _) in self._terms.items():
            for term in (low, high):
                if term:
                    self.analyte_of.setdefault(term, test)

    def _evaluate(self, facts: dict[str, Any]) -> PackResult:
        res, _ = evaluate_pack(self.pack, FactSheet.of(facts), None, self.evaluator)
        return res

    def _ask_terms(self, test: str) -> tuple[str | None, str | None, str | None]:
        dec = self._evaluate({"lab.test": test}).decisions["terms"]
        if dec.status != "decided" or not isinstance(dec.value, dict):
            raise PackError(f"lab-terms: test {test!r} has no decided terms row", file=self.pack.file)
        v = dec.value
        return v.get("low"), v.get("high"), v.get("family")

    def terms(self, test: str) -> tuple[str | None, str | None] | None:
        """(low term, high term) of a lab test; None for a test the pack does not know."""
        hit = self._terms.get(test)
        return None if hit is None else (hit[0], hit[1])

    def family(self, test: str) -> str | None:
        hit = self._terms.get(test)
        return None if hit is None else hit[2]

    def term_id(self, text: str) -> str:
        """'Neutrophil count decreased' / 'Neutropenia' -> 'neutrophil_count_decreased': the wording
        normalised (term_key), then the pack's `term_aliases` (a wording it does not list stays)."""
        key = term_key(text)
        hit = self._aliases.get(key)
        if hit is None:
            dec = self._evaluate({"term.reported": key}).decisions.get("term_aliases")
            value = dec.value if dec is not None and dec.status == "decided" and isinstance(dec.value, dict) else {}
            hit = self._aliases[key] = value.get("term") or key
        return hit

    def reading(self, test: str, unit: str | None) -> UnitReading:
        """How `unit` reads for `test`: canonical unit and exact factor; unit None = unreadable."""
        spelled = norm_unit(unit or "")
        key = (test, spelled)
        hit = self._units.get(key)
        if hit is None:
            facts: dict[str, Any] = {"lab.test": test}
            if spelled:
                facts["lab.unit_reported"] = spelled
            res = self._evaluate(facts)
            dec = res.decisions["unit"]
            value = dec.value if dec.status == "decided" and isinstance(dec.value, dict) else {}
            canon, factor = value.get("unit"), value.get("factor")
            as_reported = canon == AS_REPORTED
            if as_reported:
                canon, factor = ((unit or "").strip() or None), Decimal(1)
            hit = UnitReading(canon, Decimal(str(factor)) if factor is not None else None, res, as_reported)
            self._units[key] = hit
        return hit


_MAPS: dict[tuple[int, str], LabMap] = {}


def lab_map(registry: Registry, evaluator: Evaluator | None = None) -> LabMap:
    """The registry's lab map (one per registry and evaluator kind in a process)."""
    key = (id(registry), getattr(evaluator, "name", "default"))
    hit = _MAPS.get(key)
    if hit is None or hit.pack is not registry.packs.get(LAB_MAP_PACK):
        hit = _MAPS[key] = LabMap(registry, evaluator)
    return hit
