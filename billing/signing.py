"""Signatures of outgoing webhooks, and where they may go.

Standard Webhooks (https://www.standardwebhooks.com): ``webhook-id`` (the notice's event id,
stable across redeliveries), ``webhook-timestamp`` (Unix seconds of this attempt) and
``webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">``, one ``v1,`` entry per
secret, separated by spaces. A secret spelled ``whsec_<base64>`` is used as the bytes it
encodes (the form Standard Webhooks libraries expect); any other spelling as its UTF-8 bytes.
The variable ``secret_env`` names holds one secret, or several separated by white space while
rotating (new first): every one signs, so a receiver that knows either accepts.

``X-Billing-Signature: sha256=<hex HMAC of the body>`` with the first secret is kept for
receivers written against earlier releases; it carries no timestamp, so it cannot refuse a
replay, and it goes away in the next release.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
AddressResolver = Callable[[str, int], list[str]]


def secrets_of(value: str) -> list[str]:
    return value.split()


def key_of(secret: str) -> bytes:
    if secret.startswith(SECRET_PREFIX):
        try:
            return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError):
            pass  # not base64 after all: the text itself is the key
    return secret.encode()


def standard_signature(secrets: list[str], event_id: str, timestamp: int, body: bytes) -> str:
    content = f"{event_id}.{timestamp}.".encode() + body
    return " ".join(
        "v1," + base64.b64encode(hmac.new(key_of(s), content, hashlib.sha256).digest()).decode()
        for s in secrets
    )


def legacy_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def is_public(address: str) -> bool:
    """True for an address on the internet; False for loopback, private, link-local (cloud
    metadata at 169.254.169.254), shared, reserved, multicast or unspecified ones."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def literal_host_is_private(url: str) -> bool:
    """A URL whose host is ``localhost`` or an address that is not public (no DNS asked)."""
    host = (urlsplit(url).hostname or "").rstrip(".").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return not is_public(host)
    except ValueError:
        return False  # a name: checked when a notice is sent, against what it resolves to


def resolve(host: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)]


def private_addresses(url: str, resolver: AddressResolver = resolve) -> list[str]:
    """The addresses the URL's host resolves to that are not public (empty: all public)."""
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return [a for a in resolver(parts.hostname or "", port) if not is_public(a.split("%")[0])]
