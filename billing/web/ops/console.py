"""What the console's handlers share: the web process's context, the credentials, the CSRF
tokens and the templates, and how a page or an error is answered."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse

from billing.api.context import ApiContext
from billing.app import App
from billing.domain.times import format_time
from billing.web.context import WebContext
from billing.web.ops.auth import OpsAuth
from billing.web.ops.csrf import FIELD, CsrfTokens
from billing.web.ops.links import FlowerLinks


@dataclass
class Console:
    web: WebContext
    api: ApiContext  # its PortOne client serves refunds and receipts
    auth: OpsAuth
    tokens: CsrfTokens
    templates: Environment
    flower: FlowerLinks = field(default_factory=FlowerLinks)

    @property
    def app(self) -> App:
        return self.web.app

    @property
    def zone(self) -> ZoneInfo:
        """BILLING_TIMEZONE: times that belong to no one plan."""
        return ZoneInfo(self.web.settings.timezone)

    def page(self, request: Request, name: str, status: int = 200, **values: Any) -> HTMLResponse:
        template = self.templates.get_template(name)
        body = template.render(
            base=base_path(request),
            user=self.auth.user,
            csrf=self.tokens.issue(),
            csrf_field=FIELD,
            zone=self.zone,
            flower=self.flower,
            query=values.pop("query", ""),
            **values,
        )
        return HTMLResponse(body, status_code=status)

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.page(request, "error.html", status, code=status, message=message)

    def redirect(self, request: Request, path: str) -> RedirectResponse:
        return RedirectResponse(base_path(request) + path, status_code=303)


def base_path(request: Request) -> str:
    """Where the console is mounted (``/ops``), for its links."""
    return str(request.scope.get("root_path", ""))


def make_templates() -> Environment:
    env = Environment(
        loader=PackageLoader("billing.web.ops", "templates"),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=when, krw=krw, duration=duration)
    return env


def when(moment: datetime | None, zone: ZoneInfo) -> str:
    """``2027-01-31 00:30:00+09:00``: ISO 8601 in ``zone``, easier to read; ``-`` for none."""
    shown = format_time(moment, zone)
    return shown.replace("T", " ") if shown else "-"


def krw(amount: int) -> str:
    return f"{amount:,} KRW"


UNITS = (("d", 86400), ("h", 3600), ("min", 60), ("s", 1))


def duration(seconds: int) -> str:
    """``2 d 3 h``, ``4 h``, ``7 min 5 s``, ``42 s``: the largest unit and the next one."""
    for index, (name, size) in enumerate(UNITS):
        if seconds >= size or size == 1:
            shown = f"{seconds // size} {name}"
            if index + 1 < len(UNITS):
                next_name, next_size = UNITS[index + 1]
                rest = seconds % size // next_size
                shown += f" {rest} {next_name}" if rest else ""
            return shown
    return f"{seconds} s"
