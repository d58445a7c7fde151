"""SDTM LB import + CTCAE grading (issue 14 item 6): `adjudicator ctcae grade LB` on the full CDISC
pilot LB (59,580 rows, 306 subjects), run as a fresh process exactly as a user runs it (read and
check the SDTM file, map test codes and baselines, grade in columns with the durable-rules check,
the Parquet audit batch and its record, the CSV written), in each SDTM file format; then the same
rows through the row path (`--evaluator durable`: every row through durable-rules) for the ratio.

    .venv/bin/python benchmarks/sdtm_lb_bench.py [--lb ../shared/data/cdisc-pilot/lb.csv]
        [--formats csv,xpt,json] [--durable] [--repeat 1]

Without the pilot file (it is not in the repository), the fixture slice fixtures/sdtm/pilot/lb.csv
is replicated to the pilot's size under new subject ids. Prints, per format: wall time, CPU time
(user + system), rows/s (wall and CPU), peak memory (max RSS), rows graded, and the reading phase
alone (read + checks + mapping, in a fresh process) with its rows/s and peak memory.
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
PILOT = ROOT.parent.parent / "shared" / "data" / "cdisc-pilot" / "lb.csv"
PILOT_ROWS = 59_580


def replicated(target: Path, rows: int) -> Path:
    """The fixture slice repeated under new USUBJIDs until `rows` rows."""
    lines = (ROOT / "fixtures" / "sdtm" / "pilot" / "lb.csv").read_text().splitlines()
    header, body = lines[0], lines[1:]
    u = header.split(",").index("USUBJID")
    out, k = [header], 0
    while len(out) - 1 < rows:
        for line in body:
            cells = line.split(",")
            cells[u] = f"{cells[u]}-R{k}"
            out.append(",".join(cells))
            if len(out) - 1 >= rows:
                break
        k += 1
    target.write_text("\n".join(out) + "\n")
    return target


def convert(lb_csv: Path, fmt: str, tmp: Path) -> Path:
    from engine.sdtm.read import read_dataset
    from engine.sdtm.write import Column, write_dataset
    ds = read_dataset(lb_csv)
    numeric = {"LBSEQ", "LBSTRESN", "LBSTNRLO", "LBSTNRHI", "VISITNUM", "VISITDY", "LBDY"}
    cols = [Column(v.name, v.name, "number" if v.name in numeric else "text") for v in ds.variables]
    return write_dataset(tmp / f"lb.{fmt}", "LB", "Laboratory Test Results", cols, ds.rows(), fmt)


def run_cli(lb: Path, db: Path, out: Path, evaluator: str) -> tuple[float, float, float, str]:
    adj = Path(sys.executable).parent / "adjudicator"
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run([str(adj), "--db", str(db), "ctcae", "grade", str(lb), "--ctcae", "4.03", "--output", str(out),
                        "--evaluator", evaluator], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"ctcae grade failed ({p.returncode}): {p.stderr[-2000:]}")
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime), r1.ru_maxrss / 1024, p.stderr


def reading_phase(lb: Path) -> tuple[float, int, float]:
    """(seconds, rows to grade, peak RSS MB) of read + checks + mapping alone, in a fresh process
    (untraced: tracemalloc would slow the reading it measures)."""
    p = subprocess.run([sys.executable, __file__, "--reading-only", str(lb)], capture_output=True, text=True)
    if p.returncode != 0:
        raise SystemExit(f"reading phase failed ({p.returncode}): {p.stderr[-2000:]}")
    secs, n, rss = p.stdout.split()
    return float(secs), int(n), float(rss)


def _reading_only(lb: Path) -> None:
    from engine.rules.load import load_registry
    from engine.sdtm.grading import read_lb
    from engine.sdtm.mapping import load_mapping
    reg, mapping = load_registry(), load_mapping()
    t0 = time.perf_counter()
    lab = read_lb(lb, registry=reg, mapping=mapping)
    secs = time.perf_counter() - t0
    print(secs, len(lab.listing), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lb", type=Path, default=PILOT, help="an SDTM LB file (default: the CDISC pilot's, if present)")
    ap.add_argument("--formats", default="csv,xpt,json")
    ap.add_argument("--durable", action="store_true", help="also the row path (--evaluator durable) on the CSV")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--reading-only", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.reading_only:
        return _reading_only(args.reading_only)
    with tempfile.TemporaryDirectory() as tmp_s:
        tmp = Path(tmp_s)
        src = args.lb if args.lb.is_file() else replicated(tmp / "lb.csv", PILOT_ROWS)
        what = "the CDISC pilot LB" if args.lb.is_file() else "the fixture slice replicated"
        rows = sum(1 for _ in src.open()) - 1
        print(f"{what}: {rows:,} rows ({src})")
        runs = [(fmt, "columnar") for fmt in args.formats.split(",")] + ([("csv", "durable")] if args.durable else [])
        for fmt, evaluator in runs:
            lb = src if fmt == "csv" else convert(src, fmt, tmp)
            for i in range(args.repeat):
                db = tmp / f"{fmt}-{evaluator}-{i}.sqlite"
                wall, cpu, rss, err = run_cli(lb, db, tmp / "graded.csv", evaluator)
                graded = sum(int(line.split()[2]) for line in err.splitlines()[2:] if line[:1].isalpha()
                             and len(line.split()) > 2 and line.split()[2].isdigit())
                load = os.getloadavg()[0]
                print(f"  {fmt:<5} {evaluator:<9} wall {wall:6.1f} s = {rows / wall:7,.0f} rows/s; CPU {cpu:6.1f} s = "
                      f"{rows / cpu:7,.0f} rows/s; peak memory {rss:5,.0f} MB; graded {graded:,}; load {load:.1f}")
            secs, n, peak = reading_phase(lb)
            print(f"        reading + checks + mapping alone: {secs:.1f} s = {rows / secs:,.0f} rows/s, "
                  f"{n:,} rows to grade, peak memory {peak:,.0f} MB (a fresh process, registry and mapping loaded)")


if __name__ == "__main__":
    main()
