"""`gateway attachments`: the files kept on a case, listed and written out byte for byte."""
from __future__ import annotations

from pathlib import Path

import click

from gateway import views
from gateway.cli.app import App, pass_app, print_rows
from gateway.db import session_scope


@click.group("attachments")
def attachments() -> None:
    """Files kept on cases, including those too big to travel by mail."""


@attachments.command("list")
@click.argument("number", type=int)
@click.option("--json", "as_json", is_flag=True)
@pass_app
def attachments_list(app: App, number: int, as_json: bool) -> None:
    """The files of case NUMBER: id, name, size, type and the message that brought each."""
    with session_scope(app.engine) as session:
        rows = views.attachments_list(session, number)
    if rows is None:
        raise click.ClickException(f"no case {number}")
    if not rows and not as_json:
        click.echo(f"case {number} has no files")
        return
    print_rows(rows, as_json, ["id", "size", "content_type", "event", "author", "filename"])


@attachments.command("get")
@click.argument("number", type=int)
@click.argument("file_id", type=int)
@click.option("--output", "-o", type=click.Path(dir_okay=True, allow_dash=True),
              help="Where to write it: a file, a folder, or - for standard output "
                   "(default: the file's own name in the current folder).")
@pass_app
def attachments_get(app: App, number: int, file_id: int, output: str | None) -> None:
    """Write file FILE_ID of case NUMBER, byte for byte; never overwrites a file."""
    with session_scope(app.engine) as session:
        found = views.attachment_data(session, number, file_id)
    if found is None:
        raise click.ClickException(f"case {number} has no file {file_id} (see: gateway attachments list {number})")
    filename, data = found
    if output == "-":
        # open_file("-") is standard output, left open; click.get_binary_stream is deprecated.
        with click.open_file("-", "wb") as out:
            out.write(data)
        return
    target = Path(output or ".")
    if target.is_dir():
        target = target / (filename or f"file-{file_id}")
    _write_new(target, data)
    click.echo(f"{target} ({len(data)} bytes)")


def _write_new(target: Path, data: bytes) -> None:
    """Write `data` to `target`, which must not exist yet: a file already there is kept."""
    try:
        with open(target, "xb") as out:
            out.write(data)
    except FileExistsError as exc:
        raise click.ClickException(f"{target} exists; choose another --output") from exc
