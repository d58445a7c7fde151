"""Cold start of the command line: each command run as a fresh process, several times; prints the
median wall time of each and its ratio to `adjudicator --help` (the floor: Python, click and the
command table), so the figures mean something on a shared, noisy machine.

    .venv/bin/python benchmarks/cold_start_bench.py [--repeat 7]

Commands: `--help`, `screen` and `marrow` on one subject (text output, audited into a store that
already exists), `ae` on one subject, `ctcae grade` on a 5-row listing, `rules list`. Each is
timed with the registry cache warm (the normal case), and `screen` once more with the cache
cold (the first command after a rule pack changed: parse, validate and save).
"""
from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parents[1]
ADJ = [str(Path(sys.executable).parent / "adjudicator")]  # the installed console script, as a user runs it
LISTING = ("lab_test,value,unit,lln,uln,baseline\nneutrophils,0.4,10^9/L,1.8,7.5,\ncreatinine,1.9,mg/dL,0.7,1.2,\n"
           "hemoglobin,95,g/L,130,175,\nplatelets,20,10^9/L,150,400,\npotassium,6.5,mmol/L,3.5,5.3,\n")


def run(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds user + system) of one fresh process."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = subprocess.run(ADJ + args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    dt = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed (exit {p.returncode}):\n{p.stderr}")
    return dt, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def median_of(args: list[str], env: dict[str, str], repeat: int, before: Callable[[], object] | None = None
              ) -> tuple[float, float]:
    """Median wall and median CPU time over `repeat` fresh processes."""
    walls, cpus = [], []
    for _ in range(repeat):
        if before:
            before()
        w, c = run(args, env)
        walls.append(w)
        cpus.append(c)
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_p = Path(tmp)
        cache = tmp_p / "cache"
        env = dict(os.environ, ADJUDICATOR_DB=str(tmp_p / "audit.sqlite"), ADJUDICATOR_CACHE=str(cache))
        # as a user runs it: modules' bytecode cached in __pycache__ (compiling the engine's sources
        # on every start costs ~0.1 s); a sandbox may have set PYTHONDONTWRITEBYTECODE
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        listing = tmp_p / "labs.csv"
        listing.write_text(LISTING)
        screen = ["screen", str(ROOT / "fixtures/screening/C001-age-17.yaml")]
        marrow = ["marrow", str(ROOT / "fixtures/marrow/cr-clean.yaml")]
        ae_subject = ROOT / "fixtures/safety/subject-tls-ramp-up.yaml"
        commands = {
            "--help": ["--help"],
            "rules list": ["rules", "list"],
            "screen (1 subject)": screen,
            "marrow (1 subject, all profiles + course)": marrow,
            "ae (1 subject)": ["ae", str(ae_subject)],
            "ctcae grade (5 rows)": ["ctcae", "grade", str(listing), "--ctcae", "4.03"],
        }
        for a in commands.values():  # the store exists, bytecode and registry cached: as for every command but the first
            run(a, env)
        rows = {name: median_of(a, env, args.repeat) for name, a in commands.items()}
        rows["screen, registry cache cold"] = median_of(screen, env, args.repeat,
                                                        before=lambda: shutil.rmtree(cache, ignore_errors=True))
        help_w, help_c = rows["--help"]
        load = os.getloadavg()
        print(f"cold start, median of {args.repeat} fresh processes (load average {load[0]:.1f} {load[1]:.1f} "
              f"{load[2]:.1f} on {os.cpu_count()} cores; CPU = user + system time of the process, less "
              f"sensitive to other load than wall)")
        print(f"{'command':45s} {'wall s':>7s} {'x --help':>9s} {'CPU s':>7s} {'x --help':>9s}")
        for name, (w, c) in rows.items():
            print(f"{name:45s} {w:7.3f} {w / help_w:9.2f} {c:7.3f} {c / help_c:9.2f}")


if __name__ == "__main__":
    main()
