"""Printing: JSON for machines, aligned tables for people."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from billing.domain.times import parse_time
from billing.errors import InvalidInput

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def emit_json(value: Any) -> None:
    click.echo(json.dumps(value, ensure_ascii=False, indent=2))


def emit_table(columns: Sequence[str], rows: Sequence[Sequence[Any]], empty: str) -> None:
    if not rows:
        click.echo(empty)
        return
    table = Table(*columns, box=None, pad_edge=False, header_style="bold")
    for row in rows:
        table.add_row(*("-" if cell is None else str(cell) for cell in row))
    console = Console()
    if not console.is_terminal:
        console = Console(width=10_000)  # piped: never wrap or cut a cell
    console.print(table)


def parse_option_time(option: str, text: str, zone: Any) -> Any:
    try:
        return parse_time(text, zone)
    except ValueError as exc:
        raise InvalidInput(f"{option}: {exc}") from None
