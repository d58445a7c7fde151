"""The `adjudicator` command line: parses, calls engine/, prints. No logic here.

Exit codes: 0 success (whatever the verdict), 1 internal error, 2 bad input or bad rule pack,
3 audit trail failed verification.
"""
from __future__ import annotations

import getpass
import json
import sys
from typing import Any

import click

from engine.errors import AuditIntegrityError, InputError


class AdjudicatorGroup(click.Group):
    """Maps engine errors to exit codes and one-line messages (no traceback for bad input)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except AuditIntegrityError as exc:
            click.echo(f"audit verification failed: {exc}", err=True)
            sys.exit(3)


def emit_json(obj: Any) -> None:
    """Print one JSON document (the `--json` output of every command)."""
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


@click.group(cls=AdjudicatorGroup)
@click.option("--db", envvar="ADJUDICATOR_DB", type=click.Path(dir_okay=False),
              help="Audit store (SQLite file). Default: ./adjudicator-audit.sqlite, or $ADJUDICATOR_DB.")
@click.option("--actor", default=None, help="Who is acting (recorded in the audit trail). Default: the OS user.")
@click.option("--rules-dir", envvar="ADJUDICATOR_RULES", type=click.Path(file_okay=False),
              help="Folder of rule packs. Default: the repository's rules/, or $ADJUDICATOR_RULES.")
@click.pass_context
def main(ctx: click.Context, db: str | None, actor: str | None, rules_dir: str | None) -> None:
    """Rule-based eligibility, response and safety adjudication for clinical trials."""
    ctx.ensure_object(dict)
    ctx.obj["db"] = db
    ctx.obj["actor"] = actor or getpass.getuser()
    ctx.obj["rules_dir"] = rules_dir


# --- commands are registered below, one small section per command group -------------------


def parse_params(values: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """`--param PACK.NAME=VALUE` options -> {pack: {name: value}} (values typed by the pack)."""
    out: dict[str, dict[str, str]] = {}
    for v in values:
        key, sep, value = v.partition("=")
        pack, dot, name = key.rpartition(".")
        if not sep or not dot or not pack or not name:
            raise InputError(f"--param {v!r}", expected="PACK.NAME=VALUE, e.g. vah-trial-response.mrd_threshold_pct=0.1")
        out.setdefault(pack, {})[name] = value
    return out


def registry(ctx: click.Context):  # noqa: ANN201 - engine type
    from engine.rules.load import load_registry
    return load_registry(ctx.obj.get("rules_dir"))


# --- rules ------------------------------------------------------------------------------------

@main.group()
def rules() -> None:
    """Write, validate, test and explain rule packs."""


@rules.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rules_list(ctx: click.Context, as_json: bool) -> None:
    """Every pack: id, version, effective date, sha256, rule count, dependencies."""
    reg = registry(ctx)
    rows = [dict(p.identity(), effective=str(p.manifest.effective), title=p.manifest.title,
                 rules=len(p.manifest.rules), decisions=len(p.manifest.decisions), tests=len(p.tests),
                 depends_on=[d.pack for d in p.manifest.depends_on]) for p in reg.packs.values()]
    if as_json:
        return emit_json(rows)
    from engine.report.tables import print_table
    print_table(["pack", "version", "effective", "rules", "tests", "depends on", "sha256"],
                [[r["id"], r["version"], r["effective"], r["rules"], r["tests"], ", ".join(r["depends_on"]),
                  r["sha256"][:12]] for r in rows], title=f"Rule packs in {reg.root}")


@rules.command("validate")
@click.argument("packs", nargs=-1, type=click.Path(exists=True, file_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rules_validate(ctx: click.Context, packs: tuple[str, ...], as_json: bool) -> None:
    """Load and check packs (all of the rules folder by default); exit 2 naming file, line and key."""
    from engine.rules.load import load_pack
    loaded = [load_pack(p) for p in packs] if packs else list(registry(ctx).packs.values())
    for p in loaded:
        from engine.evaluate.durable_adapter import compile_plan
        from engine.evaluate.run import resolve_params
        compile_plan(p.plan, p.identity(), resolve_params(p), str(p.path))
    if as_json:
        return emit_json({"valid": [p.identity() for p in loaded]})
    for p in loaded:
        click.echo(f"ok  {p.id} {p.version}  ({len(p.manifest.rules)} rules, sha256 {p.sha256[:12]})")


@rules.command("test")
@click.argument("pack_ids", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rules_test(ctx: click.Context, pack_ids: tuple[str, ...], as_json: bool) -> None:
    """Run the embedded tests of every pack through durable-rules and the reference evaluator."""
    from engine.rules.testing import run_pack_tests
    reg = registry(ctx)
    reports = [run_pack_tests(reg.get(pid)) for pid in (pack_ids or reg.packs)]
    if as_json:
        emit_json([r.to_dict() for r in reports])
    else:
        from engine.report.tables import print_rule_tests
        print_rule_tests(reports)
    if any(not r.ok for r in reports):
        sys.exit(1)


@rules.command("schema")
def rules_schema() -> None:
    """The JSON Schema of pack.yaml, generated from the models (for editors)."""
    from engine.rules.model import Manifest
    emit_json(Manifest.model_json_schema())


@rules.command("explain")
@click.argument("pack_id")
@click.argument("rule_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def rules_explain(ctx: click.Context, pack_id: str, rule_id: str, as_json: bool) -> None:
    """A rule, its source text and its condition in plain words."""
    from engine.rules.explain import explain_rule
    info = explain_rule(registry(ctx).get(pack_id), rule_id)
    if as_json:
        return emit_json(info)
    click.echo(f"{info['rule']}: {info['title']}   [{info['kind']}, basis: {info['basis']}]")
    click.echo(f"pack {info['pack']['id']} {info['pack']['version']} (sha256 {info['pack']['sha256'][:12]})")
    click.echo(f"source: {info['citation']}")
    click.echo(f"  \"{info['source_text']}\"")
    if info["note"]:
        click.echo(f"note: {info['note']}")
    click.echo("met when:")
    for line in info["condition"]:
        click.echo("  " + line)
    click.echo(f"unknown when: {info['unknown_when']}")


# --- schema: JSON Schemas of the input files ---------------------------------------------
@main.group()
def schema() -> None:
    """Print the JSON Schema of an input file type."""


@schema.command("subject")
def schema_subject() -> None:
    """JSON Schema of a subject record file (YAML or JSON); fields in docs/subject-record.md."""
    from engine.record import subject_json_schema

    emit_json(subject_json_schema())


# --- audit: read, export, verify and override the audit trail -------------------------------
@main.group()
def audit() -> None:
    """Read, export, verify the audit trail; record a committee override."""


def _audit_store(ctx: click.Context, *, create: bool = False) -> Any:
    from engine.audit import AuditStore

    return AuditStore.open(ctx.obj["db"], create=create)


@audit.command("show")
@click.option("--subject", help="Only this subject.")
@click.option("--use-case", help="Only this use case (screen, marrow, ae, ...).")
@click.option("--run", "run_id", help="Only this run id.")
@click.option("--decision", "decision_id", help="Only this decision id.")
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N matching records.")
@click.option("--json", "as_json", is_flag=True, help="Print the full records as a JSON list.")
@click.pass_context
def audit_show(ctx: click.Context, subject: str | None, use_case: str | None, run_id: str | None,
               decision_id: str | None, limit: int | None, as_json: bool) -> None:
    """Show audit records, oldest first."""
    from engine.audit import outcome_summary

    with _audit_store(ctx) as store:
        if decision_id:
            found = store.get(decision_id)
            if found is None:
                raise InputError(f"no decision {decision_id} in {store.path}", field="--decision")
            records = [found]
        else:
            records = list(store.iter(subject_id=subject, use_case=use_case, run_id=run_id, last=limit))
    if as_json:
        emit_json([r.model_dump() for r in records])
        return
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for name in ("seq", "time (UTC)", "subject", "use case", "item", "outcome", "actor", "supersedes"):
        table.add_column(name, no_wrap=name in ("seq", "time (UTC)", "subject"), overflow="fold")
    for r in records:
        table.add_row(str(r.seq), r.created_at, r.subject_id, r.use_case, r.item or "",
                      outcome_summary(r.outcome), r.actor, r.supersedes or "")
    Console().print(table)


@audit.command("verify")
@click.option("--json", "as_json", is_flag=True, help="Print the verification report as JSON.")
@click.pass_context
def audit_verify(ctx: click.Context, as_json: bool) -> None:
    """Recompute the hash chain; exit 3 naming the first edited, deleted or reordered record."""
    with _audit_store(ctx) as store:
        report = store.verify()
    if as_json:
        emit_json(report.model_dump())
    if not report.ok:
        raise AuditIntegrityError(report.message())
    if not as_json:
        click.echo(report.message())


@audit.command("export")
@click.option("--format", "fmt", type=click.Choice(["jsonl", "csv"]), default="jsonl", show_default=True)
@click.option("--output", type=click.Path(dir_okay=False), help="Write here (atomically) instead of stdout.")
@click.pass_context
def audit_export(ctx: click.Context, fmt: str, output: str | None) -> None:
    """Export every field of every record, in seq order."""
    from engine.audit import export, export_to_path

    with _audit_store(ctx) as store:
        if output:
            n = export_to_path(store, output, fmt)
            click.echo(f"{n} records written to {output}", err=True)
        else:
            export(store, sys.stdout, fmt)


@audit.command("override")
@click.argument("decision_id")
@click.option("--outcome", "outcome_text", required=True, help="The committee's outcome, a JSON object.")
@click.option("--reviewer", required=True, help="Who on the committee decided.")
@click.option("--reason", required=True, help="Why the decision is overridden.")
@click.option("--json", "as_json", is_flag=True, help="Print the new record as JSON.")
@click.pass_context
def audit_override(ctx: click.Context, decision_id: str, outcome_text: str, reviewer: str, reason: str,
                   as_json: bool) -> None:
    """Record a committee override: a new record superseding DECISION_ID (which stays)."""
    try:
        outcome = json.loads(outcome_text)
    except json.JSONDecodeError as exc:
        raise InputError(f"not valid JSON ({exc.msg})", field="--outcome", expected="a JSON object") from exc
    with _audit_store(ctx) as store:
        record = store.override(decision_id, outcome, reviewer=reviewer, reason=reason, actor=ctx.obj["actor"])
    if as_json:
        emit_json(record.model_dump())
    else:
        click.echo(f"decision {record.decision_id} (seq {record.seq}) supersedes {decision_id}")
