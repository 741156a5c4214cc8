"""Customers: the holders of billing keys, named by their customer_uid."""

from __future__ import annotations

import re
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from billing.db.tables import Customer
from billing.domain.events import CustomerSaved
from billing.errors import Conflict, InvalidInput, NotFound
from billing.services.history import record_event

# customer_uid travels in a URL path (GET /subscribe/customers/{customer_uid}): no '/', '?',
# '#', '%' or spaces. PortOne allows at most 80 characters.
CUSTOMER_UID = re.compile(r"^[A-Za-z0-9_.:@+=-]{1,80}$")
EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]{1,189}$")
PHONE = re.compile(r"^\+?[0-9][0-9 -]{3,30}$")


def check_customer_uid(customer_uid: str) -> str:
    if not CUSTOMER_UID.match(customer_uid):
        raise InvalidInput(
            f"customer_uid {customer_uid!r} must be 1-80 characters of "
            "letters, digits and _ . : @ + = -"
        )
    return customer_uid


def check_contact(name: str | None, email: str | None, phone: str | None) -> None:
    if name is not None and not 0 < len(name) <= 200:
        raise InvalidInput("--name must be 1-200 characters")
    if email is not None and not EMAIL.match(email):
        raise InvalidInput(f"--email {email!r} is not an e-mail address")
    if phone is not None and not PHONE.match(phone):
        raise InvalidInput(f"--phone {phone!r} is not a phone number")


def add_customer(
    session: Session,
    customer_uid: str,
    now: datetime,
    *,
    name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
) -> Customer:
    check_customer_uid(customer_uid)
    check_contact(name, email, phone)
    if find_customer(session, customer_uid) is not None:
        raise Conflict(f"customer {customer_uid!r} already exists")
    customer = Customer(
        customer_uid=customer_uid, name=name, email=email, phone=phone, created_at=now
    )
    session.add(customer)
    session.flush()
    return customer


def find_customer(session: Session, customer_uid: str) -> Customer | None:
    return session.scalar(select(Customer).where(Customer.customer_uid == customer_uid))


def get_customer(session: Session, customer_uid: str) -> Customer:
    customer = find_customer(session, customer_uid)
    if customer is None:
        raise NotFound(f"unknown customer {customer_uid!r} (add it with `billing customers add`)")
    return customer


def save_customer(
    session: Session,
    customer_uid: str,
    now: datetime,
    *,
    name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
) -> tuple[Customer, bool]:
    """Create the customer, or replace its name, e-mail and phone; True when created."""
    check_customer_uid(customer_uid)
    check_contact(name, email, phone)
    query = select(Customer).where(Customer.customer_uid == customer_uid).with_for_update()
    customer = session.scalar(query)
    created = customer is None
    if customer is None:
        customer = add_customer(session, customer_uid, now, name=name, email=email, phone=phone)
    else:
        customer.name, customer.email, customer.phone = name, email, phone
    record_event(session, CustomerSaved(customer_uid=customer_uid, created=created), now)
    return customer, created
