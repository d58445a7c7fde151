"""Cohort throughput: N synthetic subjects (screening + every marrow under all three profiles +
AE/lab grading when the safety use case exists), audit trail written, 2 worker processes.

    .venv/bin/python benchmarks/cohort_bench.py --n 1000 [--n 10000] [--workers 2] [--profile]

Prints subjects/s, decisions/s, peak RSS of the parent and of the largest child.
TODO: the raw durable-rules rate on the same facts (durable_rules_engine directly) is not yet here.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures" / "cohort"))
sys.path.insert(0, str(ROOT))


def bench(n: int, workers: int, profile: bool) -> None:
    import generate
    from engine.adjudicate.cohort import run_cohort
    from engine.audit.store import AuditStore
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "subjects"
        t0 = time.perf_counter()
        generate.write_cohort(folder, n)
        gen_s = time.perf_counter() - t0
        with AuditStore.open(Path(tmp) / "audit.sqlite") as store:
            prof = cProfile.Profile() if profile else None
            t0 = time.perf_counter()
            if prof:
                prof.enable()
            res = run_cohort(str(folder), store, actor="bench", workers=workers, progress=False)
            if prof:
                prof.disable()
            dt_s = time.perf_counter() - t0
        parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        print(f"N={n}: generate {gen_s:.1f}s; adjudicate {dt_s:.1f}s = {res.subjects / dt_s:.1f} subjects/s, "
              f"{res.decisions / dt_s:.0f} decisions/s ({res.decisions} decisions, {len(res.failed)} failed); "
              f"peak RSS parent {parent:.0f} MB, largest child {child:.0f} MB")
        if prof:
            pstats.Stats(prof).sort_stats("cumulative").print_stats(25)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, action="append")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="cProfile in-process (use --workers 1)")
    a = ap.parse_args()
    for n in a.n or [1000]:
        bench(n, a.workers, a.profile)


if __name__ == "__main__":
    main()
