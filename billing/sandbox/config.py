"""The sandbox's settings: one frozen value, read by every other module."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SandboxConfig:
    """How one sandbox listens, whom it trusts and how it behaves before any scripting.

    ``port=0`` picks a free port (read it back from ``SandboxServer.url``). ``seed`` seeds the
    fault dice and the imp_uid digits, so a seeded run is reproducible. ``notice_url`` receives
    PortOne-style webhooks after every paid payment and every cancel. ``latency_ms`` is the
    latency a ``reset()`` returns to. ``auto_register`` issues a test card's billing key to any
    customer_uid on first use; off (the default), an unknown customer_uid is refused as PortOne
    refuses it (code -1, "등록되지 않은 구매자입니다").
    """

    host: str = "127.0.0.1"
    port: int = 0
    imp_key: str = "sandbox_key"
    imp_secret: str = "sandbox_secret"  # noqa: S105  (the sandbox's public test secret)
    token_ttl: int = 1800
    auto_register: bool = False
    hang_seconds: float = 60.0
    seed: int | None = None
    notice_url: str | None = None
    notice_retries: int = 0  # each notice sent again this many times (PortOne: up to 4 more)
    notice_retry_seconds: float = 60.0  # apart (PortOne: a minute)
    latency_ms: int = 0
    verbose: bool = False

    def __repr__(self) -> str:
        return (
            f"SandboxConfig(host={self.host!r}, port={self.port}, imp_key={self.imp_key!r}, "
            f"token_ttl={self.token_ttl}, auto_register={self.auto_register})"
        )
