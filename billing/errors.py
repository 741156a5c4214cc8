"""Errors a user or operator sees: each carries a one-line reason."""

from __future__ import annotations


class BillingError(Exception):
    """Base of every error the product reports as a one-line reason (exit code 1)."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(BillingError):
    """An environment variable has a value the product cannot use."""


class CatalogError(BillingError):
    """A plan catalog file is refused; nothing was changed."""


class InvalidInput(BillingError):
    """An argument is malformed (a time, an id, a duration)."""


class NotFound(BillingError):
    """The thing named does not exist."""


class Conflict(BillingError):
    """The request is valid but the current state does not allow it."""


class SchemaOutOfDate(BillingError):
    """The database schema is not at this release's revision."""


class BrokerUnavailable(BillingError):
    """The broker could not be reached: a publish did not happen (the rows are the truth; the
    scheduler's sweep publishes again what was lost)."""


class DatabaseUnavailable(BillingError):
    """The database could not be reached just now (refused, timed out, out of connections):
    daemons wait and try again; a command exits with this one line."""
