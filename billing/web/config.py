"""Settings of the web process that only it reads (``billing serve`` options)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from billing.errors import ConfigError
from billing.services.webhook_guard import WebhookLimits

ALLOW_VARIABLE = "BILLING_WEBHOOK_ALLOW"
FORWARDED_VARIABLE = "FORWARDED_ALLOW_IPS"  # uvicorn's name; unset here means nobody
# The addresses PortOne publishes as the sources of V1 webhooks (3.35.36.134 appears in
# some of its documents only; allowing one more PortOne address costs nothing, since every
# webhook is verified by re-fetching the payment anyway).
PORTONE_SOURCES = ("52.78.100.19", "52.78.48.223", "52.78.5.241", "3.35.36.134")
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ServerLimits:
    """Seconds a client has for its headers, for its body, and idle between requests."""

    header_seconds: float = 10.0
    body_seconds: float = 30.0
    keep_alive_seconds: int = 5


@dataclass(frozen=True)
class WebConfig:
    """``webhook_allow`` None: any source may post a webhook (the default; webhooks are
    verified with PortOne either way). ``answer_within``: seconds a webhook waits for its
    verification before it is answered anyway (the verification goes on, bounded by
    ``portone_timeout``, and the scheduler's reconciliation settles what it does not).
    ``webhook_limits``: how many webhooks a source may send and how many re-fetches the process
    makes a second (past either: 429, PortOne sends it again)."""

    webhook_allow: tuple[Network, ...] | None = None
    answer_within: float = 0.5
    portone_timeout: float = 2.0
    verifiers: int = 8  # webhooks verified at once
    backlog: int = 64  # webhooks in verification before new ones are left to reconciliation
    max_body: int = 16_384
    webhook_limits: WebhookLimits = field(default_factory=WebhookLimits)  # per source, re-fetches

    def allows(self, host: str | None) -> bool:
        if self.webhook_allow is None:
            return True
        try:
            address = ipaddress.ip_address(host or "")
        except ValueError:
            return False
        return any(address in network for network in self.webhook_allow)


def parse_allowlist(text: str | None) -> tuple[Network, ...] | None:
    """``""``/``off``: no allowlist. Else addresses or CIDR blocks, separated by commas or
    spaces; ``portone`` stands for PortOne's published webhook sources."""
    words = (text or "").replace(",", " ").split()
    if not words or words == ["off"]:
        return None
    networks: list[Network] = []
    for word in words:
        for item in PORTONE_SOURCES if word.lower() == "portone" else (word,):
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
            except ValueError:
                raise ConfigError(
                    f"{ALLOW_VARIABLE}: {item!r} is not an address or a CIDR block "
                    "(use addresses, blocks such as 10.0.0.0/8, or 'portone')"
                ) from None
    return tuple(networks)
