"""Card-number guard: card data must never enter payengine.

Buyers type card numbers on the PSP's hosted page only (PCI DSS scope stays with the PSP). A
request body holding something shaped like a primary account number (13 to 19 digits, optionally
grouped by single spaces or dashes, passing the Luhn check) is refused before it is parsed,
stored or logged. The check runs on raw bytes, so it also catches a PAN sent as a JSON number or
hidden in any field. A false positive (a Luhn-valid 13+ digit run that is not a card) is refused
too: no field of our API legitimately carries one.
"""

from __future__ import annotations

import re

PAN_DIGITS_MIN = 13
PAN_DIGITS_MAX = 19

# Digit runs, allowing one space or dash between digits (4242 4242 4242 4242).
_RUN_RE = re.compile(rb"[0-9](?:[ -]?[0-9])+")


def luhn_ok(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def contains_card_number(body: bytes) -> bool:
    """True when `body` holds a 13-19 digit run that passes Luhn."""
    for match in _RUN_RE.finditer(body):
        digits = re.sub(rb"[ -]", b"", match.group()).decode("ascii")
        if PAN_DIGITS_MIN <= len(digits) <= PAN_DIGITS_MAX and luhn_ok(digits):
            return True
    return False
