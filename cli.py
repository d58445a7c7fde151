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
