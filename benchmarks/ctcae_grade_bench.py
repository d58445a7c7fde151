"""Grade a generated 10,000-row lab listing end to end (CSV read, grading through durable-rules,
one audit record per row in one transaction) and print rows/s and peak memory (max RSS from resource.getrusage; tracemalloc slowed the
run threefold, so it is not used).

Usage: .venv/bin/python benchmarks/ctcae_grade_bench.py [--rows 10000] [--version 4.03]
       [--evaluator durable|reference] [--no-audit] [--distinct]
--distinct makes every row's facts unique (defeats the grader's cache: the worst case).
"""
from __future__ import annotations

import argparse
import csv
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.adjudicate.safety import grade_listing, read_listing  # noqa: E402
from engine.audit.store import AuditStore  # noqa: E402
from engine.rules.load import load_registry  # noqa: E402

# analyte, unit, lln, uln, low, high (synthetic ranges, not thresholds)
ANALYTES = [("neutrophils", "10^9/L", 1.8, 7.5, 0.0, 9.0), ("neutrophils", "cells/mm3", 1800, 7500, 0, 9000),
            ("platelets", "10^9/L", 150, 400, 2, 450), ("wbc", "10^9/L", 4, 10, 0.1, 150),
            ("lymphocytes", "10^9/L", 1.0, 4.0, 0.05, 5), ("hemoglobin", "g/L", 130, 175, 50, 180),
            ("hemoglobin", "g/dL", 13, 17.5, 5, 18), ("creatinine", "mg/dL", 0.7, 1.2, 0.4, 9),
            ("bilirubin", "mg/dL", 0.2, 1.2, 0.1, 15), ("ast", "U/L", 5, 40, 5, 1000), ("alt", "U/L", 5, 50, 5, 1200),
            ("potassium", "mEq/L", 3.5, 5.3, 2.2, 7.5), ("calcium_corrected", "mg/dL", 8.5, 10.5, 5.5, 14),
            ("calcium_ionized", "mmol/L", 1.1, 1.3, 0.7, 1.9), ("uric_acid", "umol/L", 200, 430, 100, 800),
            ("phosphate", "mmol/L", 0.87, 1.45, 0.2, 2.5), ("sodium", "mmol/L", 135, 145, 115, 150),
            ("hemoglobin", "mg/L", 130, 175, 50, 180)]


def generate(path: Path, rows: int, distinct: bool, seed: int = 7) -> None:
    rnd = random.Random(seed)
    with path.open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["subject_id", "lab_test", "value", "unit", "lln", "uln", "baseline", "visit"])
        for i in range(rows):
            a, unit, lln, uln, lo, hi = rnd.choice(ANALYTES)
            places = 4 if distinct else 1
            v = round(rnd.uniform(lo, hi), places)
            base = round(rnd.uniform(lo, uln), 1) if a == "creatinine" else ""
            w.writerow([f"S{i % 96:03d}", a, v, unit, lln, uln, base, f"C{i % 6 + 1}D{i % 28 + 1}"])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--version", default="4.03")
    ap.add_argument("--evaluator", choices=["durable", "reference"], default="durable")
    ap.add_argument("--no-audit", action="store_true")
    ap.add_argument("--distinct", action="store_true")
    args = ap.parse_args()
    from engine.evaluate.durable_adapter import DurableEvaluator
    from engine.evaluate.reference import ReferenceEvaluator
    evaluator = DurableEvaluator() if args.evaluator == "durable" else ReferenceEvaluator()
    with tempfile.TemporaryDirectory() as tmp:
        listing, db = Path(tmp) / "labs.csv", Path(tmp) / "audit.sqlite"
        generate(listing, args.rows, args.distinct)
        reg = load_registry()
        t0 = time.perf_counter()
        rows = list(read_listing(listing))
        graded = gradable = 0
        if args.no_audit:
            for r in grade_listing(rows, args.version, registry=reg, evaluator=evaluator):
                graded += 1
                gradable += bool(r["gradable"])
        else:
            with AuditStore.open(db) as store, store.batch() as w:
                for r in grade_listing(rows, args.version, registry=reg, evaluator=evaluator, writer=w,
                                       listing=listing.name):
                    graded += 1
                    gradable += bool(r["gradable"])
        dt = time.perf_counter() - t0
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ctcae v{args.version} evaluator={args.evaluator} audit={'off' if args.no_audit else 'on'} "
          f"distinct={args.distinct}: {graded} rows ({gradable} gradable) in {dt:.2f} s = "
          f"{graded / dt:,.0f} rows/s; peak memory (max RSS) {rss:.0f} MB")


if __name__ == "__main__":
    main()
