"""Links from the console to Flower (``BILLING_FLOWER_URL``): its workers, and its task lists
filtered by task name (and state), so that the two dashboards feel like one.

Flower's task pages are per Celery task id, which this product does not keep (a message
carries up to 16 charges, and a row may be published many times); the console links to
the list of the tasks of that kind instead, which Flower filters with ``?name=``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from billing.errors import ConfigError

VARIABLE = "BILLING_FLOWER_URL"


@dataclass(frozen=True)
class FlowerLinks:
    base: str | None = None  # None: no links

    def workers(self) -> str | None:
        return f"{self.base}/workers" if self.base else None

    def tasks(self, name: str | None = None, state: str | None = None) -> str | None:
        if not self.base:
            return None
        query = {key: value for key, value in (("name", name), ("state", state)) if value}
        return f"{self.base}/tasks" + (f"?{urlencode(query)}" if query else "")


def parse_flower_url(text: str | None) -> FlowerLinks:
    """``http(s)://host[:port][/prefix]`` as the operators' browsers reach Flower."""
    if not text:
        return FlowerLinks()
    value = text.strip().rstrip("/")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc or not value.isprintable():
        raise ConfigError(f"{VARIABLE}: expected an http:// or https:// address of Flower")
    if parts.query or parts.fragment:
        raise ConfigError(f"{VARIABLE}: expected Flower's address without ? or #")
    return FlowerLinks(value)


def load_flower_links(environ: Mapping[str, str] | None = None) -> FlowerLinks:
    source = os.environ if environ is None else environ
    return parse_flower_url(source.get(VARIABLE))
