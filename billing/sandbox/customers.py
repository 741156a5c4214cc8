"""Billing keys: which customer_uids may be charged, and with what (masked) card.

Only registered customer_uids have a key, as at PortOne. With ``auto_register`` on (an
explicit option for demos and benchmarks), every customer_uid that was not deleted has one too
(a test card, issued on first use: a charge, a lookup or a delete).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace

from billing.sandbox.cards import TEST_CARD, CardFace


@dataclass(frozen=True, slots=True)
class Contact:
    """The customer_* fields given when the key was issued."""

    name: str | None = None
    tel: str | None = None
    email: str | None = None
    addr: str | None = None
    postcode: str | None = None


@dataclass(frozen=True, slots=True)
class BillingKey:
    """One billing key, named by its customer_uid; never the full card number."""

    customer_uid: str
    card: CardFace
    contact: Contact
    inserted: int
    updated: int


class BillingKeys:
    """Owns the billing keys and the deleted customer_uids; thread-safe."""

    def __init__(self, auto_register: bool) -> None:
        self._lock = threading.Lock()
        self._auto_register = auto_register
        self._keys: dict[str, BillingKey] = {}
        self._deleted: set[str] = set()

    def find(self, customer_uid: str, now: int) -> BillingKey | None:
        """The key, a fresh test key when auto-registering, or None (unknown customer)."""
        with self._lock:
            return self._find_locked(customer_uid, now)

    def _find_locked(self, customer_uid: str, now: int) -> BillingKey | None:
        key = self._keys.get(customer_uid)
        if key is None and self._auto_register and customer_uid not in self._deleted:
            key = BillingKey(customer_uid, TEST_CARD, Contact(), now, now)
            self._keys[customer_uid] = key
        return key

    def register(self, customer_uid: str, card: CardFace, contact: Contact, now: int) -> BillingKey:
        """Issue (or replace) the key of ``customer_uid``."""
        with self._lock:
            self._deleted.discard(customer_uid)
            earlier = self._keys.get(customer_uid)
            if earlier is None:
                key = BillingKey(customer_uid, card, contact, now, now)
            else:
                key = replace(earlier, card=card, contact=contact, updated=now)
            self._keys[customer_uid] = key
            return key

    def delete(self, customer_uid: str, now: int) -> BillingKey | None:
        """Remove the key (auto-registering counts as having one); None when there was none."""
        with self._lock:
            key = self._find_locked(customer_uid, now)
            if key is not None:
                del self._keys[customer_uid]
                self._deleted.add(customer_uid)
            return key

    def clear(self) -> None:
        with self._lock:
            self._keys.clear()
            self._deleted.clear()
