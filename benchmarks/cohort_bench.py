"""Cohort throughput: N synthetic subjects re-adjudicated end to end (screening, every marrow
under the trial / ELN 2017 / ELN 2022 profiles and the course, every lab and AE graded with
CTCAE v4.03, attribution, TLS and dosing checks), the full audit trail written, 2 worker processes.

    .venv/bin/python benchmarks/cohort_bench.py --n 1000 --n 10000 [--n 100000] [--workers 2] [--profile]
        [--format jsonl|yaml]   # the generated cohort as one JSON Lines table (default) or YAML files
        [--evaluator compiled|durable|both]   # both (default): the same cohort each way, and the ratio
        [--partitions N] [--dask local:N|tcp://HOST:PORT]   # a partitioned run (then also: audit verify's time)

Prints, per N (each in a fresh process): subjects/s and decisions/s end to end, peak RSS of the
parent and of the largest child, read before the comparison below; and, measured in the same run on a sample of the same subjects in one process: our
layers' rate (facts, evaluation, audit entries, no SQLite), the raw rate of durable-rules
asserting exactly the facts our adapter asserted (replayed through durable_rules_engine
directly, no Python layers), and the ratio between the two.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import resource
import subprocess
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "fixtures" / "cohort"))
sys.path.insert(0, str(ROOT))


def raw_comparison(folder: Path, sample: int) -> dict[str, float]:
    """Our per-subject layers vs durable-rules alone on the same asserted facts, one core."""
    from engine.adjudicate import cohort
    from engine.evaluate import durable_adapter as da
    paths = list(islice(cohort.work_items(cohort.subject_paths(folder)), sample))  # files or table lines
    cohort._init_worker(None, None, {}, "bench", None, "bench", frozenset())
    for p in paths[:5]:  # warm: rulesets compiled and registered
        cohort.adjudicate_item(p)
    for c in da._REGISTRY.values():  # the memo starts empty: the sample asserts what is new to it
        c.memo.clear()
    captured: list = []
    da.capture_asserts(captured)
    t0 = time.perf_counter()
    for p in paths:
        cohort.adjudicate_item(p)
    ours = time.perf_counter() - t0
    da.capture_asserts(None)
    t0 = time.perf_counter()
    fired = da.replay(captured)
    raw = time.perf_counter() - t0
    return {"sample": len(paths), "ours_per_s": len(paths) / ours, "raw_per_s": len(paths) / raw,
            "asserts_per_subject": len(captured) / len(paths), "firings_per_subject": fired / len(paths),
            "ratio": ours / raw}


def bench(n: int, workers: int, profile: bool, fmt: str = "jsonl", evaluators: tuple[str, ...] = ("compiled", "durable"),
          partitions: int = 0, dask: str | None = None) -> None:
    import generate
    from engine.adjudicate.cohort import run_cohort
    from engine.audit.store import AuditStore
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "subjects"
        t0 = time.perf_counter()
        generate.write_cohort(folder, n, fmt=fmt)
        gen_s = time.perf_counter() - t0
        rates = {}
        for ev in evaluators:
            db = Path(tmp) / f"audit-{ev}.sqlite"
            with AuditStore.open(db) as store:
                prof = cProfile.Profile() if profile else None
                t0, c0 = time.perf_counter(), _cpu()
                if prof:
                    prof.enable()
                res = run_cohort(str(folder), store, actor="bench", workers=workers, progress=False, evaluator=ev,
                                 partitions=partitions, dask=dask)
                if prof:
                    prof.disable()
                dt_s, cpu_s = time.perf_counter() - t0, _cpu() - c0
                files = [db] + [db.parent / leaf["file"] for leaf in (res.partitions or {}).get("leaves", [])]
                row = [0, 0, 0]
                for f in files:   # the JSON the records hold (compact format: issue 15 item 3)
                    with AuditStore.open(f, create=False, read_only=True) as s:
                        got = s._db.execute(
                            "SELECT sum(length(input)), sum(length(trace)), sum(length(outcome)) + sum(length(packs)) "
                            "+ sum(length(parameters)) FROM decisions WHERE subject_id NOT LIKE '\\_\\_%' ESCAPE '\\'"
                        ).fetchone()
                    row = [a + (b or 0) for a, b in zip(row, got)]
                if res.partitions:
                    verify_times(db, len(files) - 1)
            store_mb = sum(f.stat().st_size for f in files) / 1e6
            per = max(res.subjects, 1)
            rates[ev] = (res.subjects / dt_s, cpu_s / per)
            parent = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            child = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            check = res.check or {}
            print(f"N={n} ({fmt}), evaluator {ev}: generate {gen_s:.1f}s; adjudicate {dt_s:.1f}s with {workers} workers = "
                  f"{res.subjects / dt_s:.1f} subjects/s, {res.decisions / dt_s:.0f} decisions/s "
                  f"({res.decisions} decisions, {res.decisions / per:.1f}/subject, {len(res.failed)} failed); "
                  f"CPU (all processes) {1000 * cpu_s / per:.1f} ms/subject; "
                  f"peak RSS parent {parent:.0f} MB, largest child {child:.0f} MB"
                  + (f"; durable-rules check: {check.get('checked')} subjects, {len(check.get('disagreements') or [])} "
                     "disagreements" if check else ""), flush=True)
            print(f"  audit: store {store_mb:.0f} MB = {store_mb * 1000 / per:.1f} KB/subject; JSON per subject: input "
                  f"{(row[0] or 0) / per / 1024:.1f} KB, trace {(row[1] or 0) / per / 1024:.1f} KB, outcome + packs + "
                  f"parameters {(row[2] or 0) / per / 1024:.1f} KB", flush=True)
            if prof:
                pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        if len(rates) == 2:
            (a, ca), (b, cb) = rates["compiled"], rates["durable"]
            print(f"  compiled vs durable: {a / b:.2f}x subjects/s (wall), {ca / cb:.2f}x CPU per subject", flush=True)
        if not profile:
            r = raw_comparison(folder, min(n, 300))
            print(f"  same run, one core, {r['sample']} subjects: our layers {r['ours_per_s']:.0f} subjects/s "
                  f"(no SQLite); durable-rules alone on the same {r['asserts_per_subject']:.0f} asserted facts/subject "
                  f"({r['firings_per_subject']:.0f} firings) {r['raw_per_s']:.0f} subjects/s; "
                  f"overhead x{r['ratio']:.1f}", flush=True)


def verify_times(db: Path, n: int) -> None:
    """`audit verify` of a partitioned trail: the main chain, then the partitions in one process
    and in parallel processes (engine.audit.partitions.verify)."""
    from engine.audit import partitions
    from engine.audit.store import AuditStore
    with AuditStore.open(db, create=False, read_only=True) as store:
        t0 = time.perf_counter()
        store.verify()
        main_s = time.perf_counter() - t0
        times = {}
        for procs in (1, None):
            t0 = time.perf_counter()
            report = partitions.verify(store, processes=procs)
            times[procs] = time.perf_counter() - t0
    print(f"  audit verify: main trail {main_s:.2f}s; {n} partitions, {report['records']} records: "
          f"{times[1]:.2f}s in one process, {times[None]:.2f}s in parallel ({times[1] / times[None]:.2f}x); "
          f"problems: {len(report['problems'])}", flush=True)


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the pool's workers)."""
    s, c = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, action="append")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--profile", action="store_true", help="cProfile in-process (use --workers 1)")
    ap.add_argument("--format", dest="fmt", choices=("jsonl", "yaml"), default="jsonl",
                    help="the generated cohort: one JSON Lines table (default) or one YAML file per subject")
    ap.add_argument("--evaluator", choices=("compiled", "durable", "both"), default="both",
                    help="the cohort's evaluator; both (default): the same cohort each way, with the ratio")
    ap.add_argument("--partitions", type=int, default=0, help="a partitioned run of N partitions")
    ap.add_argument("--dask", default=None, help="run the partitions on Dask: local, local:N or tcp://HOST:PORT")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)  # internal: this process runs one N
    a = ap.parse_args()
    ns = a.n or [1000]
    evs = ("compiled", "durable") if a.evaluator == "both" else (a.evaluator,)
    if a.one or a.profile:
        for n in ns:
            bench(n, a.workers, a.profile, a.fmt, evs, a.partitions, a.dask)
        return
    for n in ns:  # a fresh process per N: peak RSS is a process's lifetime peak
        subprocess.run([sys.executable, __file__, "--n", str(n), "--workers", str(a.workers),
                        "--format", a.fmt, "--evaluator", a.evaluator, "--one", "--partitions", str(a.partitions)]
                       + (["--dask", a.dask] if a.dask else []), check=True)


if __name__ == "__main__":
    main()
