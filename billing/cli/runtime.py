"""What every command shares: settings, read once, and the App, built on first use."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from billing.app import App, build_app
from billing.config import Settings, load_settings


class Runtime:
    def __init__(self) -> None:
        self._settings: Settings | None = None
        self._app: App | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def settings_zone(self) -> ZoneInfo:
        """BILLING_TIMEZONE, for times that belong to no plan."""
        return ZoneInfo(self.settings.timezone)

    @property
    def app(self) -> App:
        if self._app is None:
            self._app = build_app(self.settings)
        return self._app

    def close(self) -> None:
        if self._app is not None:
            self._app.close()
            self._app = None
