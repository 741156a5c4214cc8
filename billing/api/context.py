"""What the HTTP API owns in one web process: the App (shared with the rest of ``billing
serve``) and a PortOne client with the configured timeout (refunds and billing keys)."""

from __future__ import annotations

from dataclasses import dataclass
from zoneinfo import ZoneInfo

from billing.app import App
from billing.bootstrap import make_gateway
from billing.config import Settings
from billing.errors import ConfigError
from billing.portone.client import PortOneClient

PORTONE_CONNECTIONS = 8


@dataclass
class ApiContext:
    settings: Settings
    app: App
    gateway: PortOneClient | None  # None: no PortOne to call (``gateway_error`` says why)
    gateway_error: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        """BILLING_TIMEZONE: times that belong to no plan (charges, refunds, customers)."""
        return ZoneInfo(self.settings.timezone)

    def portone(self) -> PortOneClient:
        if self.gateway is None:
            raise ConfigError(self.gateway_error or "no PortOne client")
        return self.gateway

    def close(self) -> None:
        if self.gateway is not None:
            self.gateway.close()


def build_api_context(settings: Settings, app: App) -> ApiContext:
    try:
        gateway = make_gateway(settings, connections=PORTONE_CONNECTIONS)
    except ConfigError as exc:
        return ApiContext(settings, app, None, exc.message)
    return ApiContext(settings, app, gateway)
