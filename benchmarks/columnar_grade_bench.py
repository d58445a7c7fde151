"""Columnar CTCAE grading (issue 15 item 4): `adjudicator ctcae grade` on a generated listing of
1,000,000 rows, run as a fresh process exactly as a user runs it (read, grade in columns, the
durable-rules check, the Parquet audit batch and its record, the CSV written to a file); then a
differential of the same kind of listing against the row path (every row through durable-rules).

    .venv/bin/python benchmarks/columnar_grade_bench.py [--rows 1000000] [--version 4.03]
        [--differential 100000] [--repeat 1]

Prints wall time, CPU time (user + system, all threads; less sensitive to other load), rows/s,
peak memory (max RSS of the process), how many rows durable-rules graded or checked, and for the
differential: mismatches (must be 0) and the throughput ratio columnar / row path.
"""
from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from ctcae_grade_bench import generate  # noqa: E402 - the listing the row-path benchmark grades


def run_cli(listing: Path, version: str, db: Path, out: Path) -> tuple[float, float, float]:
    """(wall s, CPU s, max RSS MB) of one `ctcae grade` process."""
    adj = Path(sys.executable).parent / "adjudicator"
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([str(adj), "--db", str(db), "ctcae", "grade", str(listing), "--ctcae", version,
                        "--output", str(out)], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"ctcae grade failed ({p.returncode}): {p.stderr}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), r1.ru_maxrss / 1024


def differential(n: int, version: str, tmp: Path) -> None:
    from engine.adjudicate.lab_listing import grade_listing_batch
    from engine.adjudicate.safety import grade_listing, read_listing
    from engine.audit.store import AuditStore
    from engine.evaluate.durable_adapter import DurableEvaluator
    from engine.rules.load import load_registry
    listing = tmp / "diff.csv"
    generate(listing, n, True, seed=11)
    reg = load_registry()
    t0 = time.perf_counter()
    with AuditStore.open(tmp / "diff.sqlite") as store:
        batch = grade_listing_batch(listing, version, registry=reg, params=None, store=store, actor="bench")
    columnar_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    want = list(grade_listing(read_listing(listing), version, registry=reg, evaluator=DurableEvaluator()))
    row_s = time.perf_counter() - t0
    got = [{k: v for k, v in r.items() if k != "decision_id"} for r in batch.rows()]
    bad = sum(1 for w, g in zip(want, got) if w != g) + abs(len(want) - len(got))
    print(f"differential, {n:,} rows (CTCAE v{version}): {bad} mismatches; columnar {n / columnar_s:,.0f} rows/s "
          f"({batch.engine_rows} rows through durable-rules, {batch.record['durable_check']['rows']} checked), "
          f"row path {n / row_s:,.0f} rows/s: ratio {row_s / columnar_s:.1f}x")
    if bad:
        raise SystemExit("the columnar grades differ from the row path's")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--version", default="4.03")
    ap.add_argument("--differential", type=int, default=100_000, help="rows of the differential (0: skip)")
    ap.add_argument("--repeat", type=int, default=1)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        listing = tmp / "labs.csv"
        generate(listing, args.rows, True)
        for i in range(args.repeat):
            db = tmp / f"audit{i}.sqlite"
            wall, cpu, rss = run_cli(listing, args.version, db, tmp / "graded.csv")
            load = os.getloadavg()
            print(f"ctcae grade, {args.rows:,} rows (CTCAE v{args.version}, every row audited in one Parquet batch): "
                  f"wall {wall:.1f} s = {args.rows / wall:,.0f} rows/s; CPU {cpu:.1f} s; peak memory (max RSS) "
                  f"{rss:,.0f} MB; load average {load[0]:.1f} on {os.cpu_count()} cores")
            size = sum(f.stat().st_size for f in (tmp / f"audit{i}.sqlite.batches").glob("*.parquet"))
            print(f"  audit: 1 record, batch file {size / 1e6:.1f} MB")
        if args.differential:
            differential(args.differential, args.version, tmp)


if __name__ == "__main__":
    main()
