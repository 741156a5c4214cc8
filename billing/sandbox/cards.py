"""Card facts the sandbox may keep: the checks a card must pass and its masked form.

Nothing here stores or returns a full card number, a birth date or a password: the checks
answer yes or no, and ``CardFace`` holds only what PortOne itself shows back (masked number,
issuer name and code, card type).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date

CARD_DIGITS = re.compile(r"^\d{15,16}$")
EXPIRY = re.compile(r"^(\d{4})-(\d{2})$")
BIRTH_DATE = re.compile(r"^\d{2}(\d{2})(\d{2})$")
BUSINESS_NUMBER = re.compile(r"^\d{10}$")
PASSWORD_2 = re.compile(r"^\d{2}$")
CREDIT = 0  # PortOne card_type: 0 credit, 1 check

# First digit of the card number -> (card_name, card_code). Codes are Korean card standard codes.
ISSUERS: dict[str, tuple[str, str]] = {
    "3": ("현대카드", "367"),
    "4": ("신한카드", "366"),
    "5": ("삼성카드", "365"),
    "6": ("롯데카드", "368"),
    "9": ("BC카드", "361"),
}
DEFAULT_ISSUER = ("KB국민카드", "381")


class CardRefused(ValueError):
    """The card cannot get a billing key; the message names why without echoing the card."""


@dataclass(frozen=True)
class CardFace:
    """What may be shown of a card: masked number, issuer, type."""

    number: str
    name: str
    code: str
    card_type: int = CREDIT


TEST_CARD = CardFace(number="411111******1111", name="신한카드", code="366")


def digits_of(card_number: str) -> str:
    """The card number without dashes and spaces."""
    return card_number.replace("-", "").replace(" ", "")


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of a string of digits."""
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def mask(digits: str) -> str:
    """``411111******1111``: the first six and last four digits, the rest starred."""
    return digits[:6] + "*" * (len(digits) - 10) + digits[-4:]


def card_face(card_number: str) -> CardFace:
    """Check a card number (15-16 digits, Luhn) and answer its masked face."""
    digits = digits_of(card_number)
    if not CARD_DIGITS.match(digits):
        raise CardRefused("카드번호는 15~16자리 숫자여야 합니다 (card_number must be 15-16 digits)")
    if not luhn_ok(digits):
        raise CardRefused("유효하지 않은 카드번호입니다 (card_number fails the Luhn check)")
    name, code = ISSUERS.get(digits[0], DEFAULT_ISSUER)
    return CardFace(number=mask(digits), name=name, code=code)


def check_expiry(expiry: str, today: date) -> None:
    """``YYYY-MM``, a real month, not before the current month."""
    match = EXPIRY.match(expiry)
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise CardRefused("카드 유효기간 형식이 올바르지 않습니다 (expiry must be YYYY-MM)")
    if (int(match.group(1)), int(match.group(2))) < (today.year, today.month):
        raise CardRefused("유효기간이 지난 카드입니다 (expiry is in the past)")


def check_birth(birth: str) -> None:
    """Six digits YYMMDD (a plausible month and day) or a ten-digit business number."""
    if BUSINESS_NUMBER.match(birth):
        return
    match = BIRTH_DATE.match(birth)
    if not match or not (1 <= int(match.group(1)) <= 12 and 1 <= int(match.group(2)) <= 31):
        raise CardRefused(
            "생년월일 6자리 또는 사업자등록번호 10자리가 필요합니다 "
            "(birth must be YYMMDD or 10 digits)"
        )


def check_password(pwd_2digit: str) -> None:
    """The first two digits of the card password."""
    if not PASSWORD_2.match(pwd_2digit):
        raise CardRefused(
            "카드 비밀번호 앞 2자리가 올바르지 않습니다 (pwd_2digit must be 2 digits)"
        )
