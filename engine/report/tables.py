"""Readable tables on a terminal (rich); plain text when piped."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

from rich.console import Console
from rich.table import Table

import sys

# a pipe or a file gets wide tables rather than rich's 80-column default
# emoji=False: ":name:" in a subject's text is printed as written (and rich's emoji table, ~3,600
# entries, is not loaded on every command)
console = Console(soft_wrap=False, emoji=False, width=None if sys.stdout.isatty() else 160)


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], title: str | None = None) -> None:
    t = Table(title=title, show_lines=False, header_style="bold")
    for h in headers:
        t.add_column(h, overflow="fold")
    for r in rows:
        t.add_row(*["" if v is None else str(v) for v in r])
    console.print(t)


def print_rule_tests(reports: list) -> None:  # list[PackReport]
    rows = []
    for r in reports:
        cov = r.uncovered()
        rows.append([r.pack["id"], r.pack["version"], r.tests, r.tests - len(r.failures), len(r.failures),
                     f"{len(r.seen) - len([x for x, s in r.seen.items() if not s])}/{len(r.seen)}",
                     sum(len(v) for v in cov.values()),
                     f"{len(r.rows_met) - len(r.rows_never_met())}/{len(r.rows_met)}"])
    print_table(["pack", "version", "tests", "passed", "failed", "rules tested", "outcomes not exercised",
                 "decision rows met"], rows,
                title="Embedded pack tests (durable-rules, the reference evaluator and the compiled batch evaluator)")
    for r in reports:
        for f in r.failures:
            console.print(f"[bold red]FAIL[/] {r.pack['id']}: {f.test}")
            for p in f.problems:
                console.print(f"   - {p}")
            for t in f.trace:
                miss = f" missing={t['missing']}" if t.get("missing") else ""
                console.print(f"     trace {t['rule']}: {t['outcome']} inputs={t['inputs']}{miss}")
        never = r.rows_never_met()
        if never:
            console.print(f"[dim]{r.pack['id']}: decision rows no test meets: {', '.join(never)}[/]")
        cov = r.uncovered()
        if cov:
            console.print(f"[dim]{r.pack['id']}: outcomes no test exercises: "
                          + "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(cov.items())) + "[/]")
