"""`adjudicator ctcae grade LB_FILE` for an SDTM LB dataset: read it as the mapping says, grade the
rows it maps through the one grader every listing uses, and say per test code why the rest is not
graded. One row out per LB record, in record order.

Audit: by default the columnar batch of `ctcae grade` (engine/adjudicate/lab_listing.py): one
record citing a Parquet file of every row (its input cells include `source_record`, `LB <USUBJID>
LBSEQ <n>`), whose input also names the SDTM file (sha256), the mapping in force (its files'
hashes), the per-code counts and the problem report. With `--evaluator durable`: one decision per
graded row (its input cites `LB <USUBJID> LBSEQ <n>` as the source of each fact) and one `sdtm-lb`
record with the same source description. Either way one transaction: nothing is written when
anything fails.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping as TMapping

from engine.sdtm.lb import LabRows, lab_rows, per_code_lines
from engine.sdtm.mapping import Mapping

USE_CASE = "sdtm-lb"
COLUMNS = ("usubjid", "domain", "seq", "lbtestcd", "visit", "date", "lab_test", "value", "unit", "lln", "uln",
           "baseline", "term", "grade", "gradable", "reason", "source", "decision_id", "source_record")


@dataclass
class SdtmGrading:
    rows: list[dict[str, Any]]          # one per LB record, record order
    lab: LabRows
    record_id: str | None               # the sdtm-lb audit record

    def report_lines(self) -> list[str]:
        lines = per_code_lines(self.lab, self.rows)
        rep = self.lab.report
        if len(rep):
            lines.append(f"problems: {rep.summary()}" + (f"; skipped subjects: {', '.join(self.lab.skipped_subjects)}"
                                                         if self.lab.skipped_subjects else ""))
            lines += ["  " + line for line in rep.lines()[:50]]
            if len(rep) > 50:
                lines.append(f"  ... {len(rep) - 50} more (--json lists them all)")
        return lines

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "per_code": self.lab.per_code, "problems": self.lab.report.to_dict(),
                "record_id": self.record_id}


def read_lb(path: str | Path, *, registry: Any, mapping: Mapping, strict: bool = False) -> LabRows:
    """Read and check the LB file (before any store is opened: a refused file writes nothing)."""
    from engine.facts.labmap import lab_map
    return lab_rows(path, mapping, lab_map(registry).tests, strict=strict)


def grade_lb(lab: LabRows, version: str, *, registry: Any, mapping: Mapping, store: Any, actor: str,
             params: TMapping[str, Any] | None = None, evaluator: str = "columnar") -> SdtmGrading:
    """Grade the rows `read_lb` gave (module docstring). `columnar`: the columnar batch (one audit
    record citing a Parquet file of every row, a sample checked by durable-rules; docs/performance.md);
    `durable`: every row through durable-rules, one record each, plus the `sdtm-lb` record."""
    path = Path(lab.dataset.file)
    source = {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
              "format": lab.dataset.format, "records": len(lab.dataset), "mapping": mapping.identity(),
              "per_code": lab.per_code, "problems": lab.report.to_dict(), "skipped_subjects": lab.skipped_subjects}
    if evaluator == "columnar" and lab.listing:
        graded, record_id = _columnar(lab, path, version, registry, params, store, actor, source)
    else:
        graded, record_id = _durable(lab, path, version, registry, params, store, actor, source)
    by_record = dict(zip((n for n, _ in lab.listing), graded))
    rows = [by_record[n] if n in by_record else lab.not_graded[n] for n in lab.dataset.records]
    return SdtmGrading([{k: r.get(k, "") for k in COLUMNS} for r in rows], lab, record_id)


def _columnar(lab: LabRows, path: Path, version: str, registry: Any, params: Any, store: Any, actor: str,
              source: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    import polars as pl

    from engine.adjudicate.lab_listing import grade_listing_batch
    names = list(lab.listing[0][1])
    frame = pl.DataFrame({**{c: pl.Series(c, [r[c] for _, r in lab.listing], dtype=pl.Utf8) for c in names},
                          "__n": pl.Series("__n", [n for n, _ in lab.listing], dtype=pl.Int64)})
    batch = grade_listing_batch(path, version, registry=registry, params=params, store=store, actor=actor,
                                frame=frame, source=source)
    return batch.rows(), batch.decision_id


def _durable(lab: LabRows, path: Path, version: str, registry: Any, params: Any, store: Any, actor: str,
             source: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
    from engine.adjudicate.common import audit_entry
    from engine.adjudicate.safety import grade_listing
    with store.batch() as writer:
        graded = list(grade_listing(lab.listing, version, registry=registry, params=params, writer=writer,
                                    actor=actor, listing=path.name))
        entry = audit_entry(subject_id=path.name, use_case=USE_CASE, item=path.name, snapshot=source, results=[],
                            actor=actor, outcome={"ctcae": version, "rows": len(lab.dataset), "to_grade": len(lab.listing),
                                                  "graded": sum(1 for r in graded if r.get("gradable") is True)})
        record_id = writer.add(entry)
    return graded, record_id
