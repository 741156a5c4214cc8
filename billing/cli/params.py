"""Whole numbers on the command line: the digits 0-9 only; and the options several commands share.

Python's ``int()`` (and so click's ``INT``) also reads ``1_000``, ``٣`` (Arabic-Indic three) and
``１２`` (full-width twelve); an id or an amount of money typed like that is more likely a
slip than a wish, so it is refused with the reason instead of being read as some other number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import click
from click.decorators import FC

from billing.db.tables import MAX_ID

WHOLE = re.compile(r"[+-]?[0-9]+")


class _DigitsOnly(click.ParamType[Any]):
    """Refuses any text but ASCII digits (and a sign) before the integer type reads it."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and not WHOLE.fullmatch(value.strip()):
            self.fail(f"{value!r} is not a whole number written with the digits 0-9", param, ctx)
        return super().convert(value, param, ctx)


class WholeNumber(_DigitsOnly, click.types.IntParamType):
    """Any whole number."""


class WholeRange(_DigitsOnly, click.IntRange):
    """A whole number within bounds (``click.IntRange`` for the range and its message)."""

    name = "integer"


class Identifier(WholeRange):
    """A row id: 1 or more, and no larger than a PostgreSQL bigint."""

    def __init__(self) -> None:
        super().__init__(min=1)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if number > MAX_ID:
            self.fail(f"{number} is larger than any id (at most 2^63-1)", param, ctx)
        return number


def whole(min: int | None = None, max: int | None = None) -> click.ParamType[Any]:
    """The type of a whole-number option or argument, bounded where a bound is given."""
    if min is None and max is None:
        return WholeNumber()
    return WholeRange(min=min, max=max)


ID_TYPE = Identifier()


def host_option(help: str) -> Callable[[FC], FC]:
    """``--host``: the address a server process listens on, 127.0.0.1 unless told."""
    return click.option("--host", default="127.0.0.1", show_default=True, help=help)


def port_option(default: int, help: str) -> Callable[[FC], FC]:
    """``--port``: the port a server process listens on (0 for any free port)."""
    return click.option(
        "--port", type=whole(0, 65535), default=default, show_default=True, help=help
    )
