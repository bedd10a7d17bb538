"""``idp rfi import FILE``: load identities into the embedded registry (all or nothing)."""

from __future__ import annotations

import sys

import click

from idp.cli import emit, json_option, with_app


@click.group("rfi")
def rfi_group() -> None:
    """The embedded identity registry."""


@rfi_group.command("import")
@click.argument("path", type=click.Path(exists=True, dir_okay=False))
@json_option
@with_app
def import_command(path: str, as_json: bool) -> None:
    """Import FILE (a JSON array of records, DESIGN.md §6); a bad record imports nothing (exit status 1)."""
    from idp.rfi_adapter.sql import ImportRejected, import_records, load_file

    try:
        count = import_records(load_file(path))
    except ImportRejected as exc:
        errors = [{"index": e.index, "field": e.field, "message": e.message} for e in exc.errors]
        emit({"imported": 0, "errors": errors}, as_json,
             "Nothing imported:\n" + "\n".join(f"  {e}" for e in exc.errors))
        sys.exit(1)
    emit({"imported": count, "errors": []}, as_json, f"{count} identities imported.")
