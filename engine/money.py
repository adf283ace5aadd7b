"""Money: an integer of minor units plus an ISO 4217 currency code. Never a float.

Why this module exists: every amount that enters payengine passes through `parse_amount` (the
wire format, a decimal string in major units) or `Money.of_minor` (an integer already in minor
units). Both refuse anything that is not exactly representable: floats, exponents, more decimals
than the currency has, unknown currencies. Arithmetic refuses to mix currencies.

Exponents come from the ISO 4217 table (the `iso4217` package); `EXPONENT_OVERRIDES` holds the
few places where payengine (or a PSP) deviates, and a PSP adapter may pass its own table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import attrs
import iso4217

from engine.errors import InvalidAmount, UnknownCurrency

#: Currencies whose exponent we deliberately take from the PSP world rather than ISO 4217.
#: ISO lists no exponent for funds/precious metals (XAU, XDR...): those are refused as unknown.
EXPONENT_OVERRIDES: Mapping[str, int] = {}

#: The largest amount, in minor units, that payengine accepts: it fits PostgreSQL BIGINT with
#: room to sum a day of them. 10^15 minor units is 10 trillion USD.
AMOUNT_MINOR_MAX = 10**15

_CODE_RE = re.compile(r"^[A-Z]{3}$")
_AMOUNT_RE = re.compile(r"^(?P<sign>-)?(?P<int>0|[1-9][0-9]*)(?:\.(?P<frac>[0-9]+))?$")
_exponent_cache: dict[str, int] = {}


def currency_exponent(code: str, overrides: Mapping[str, int] | None = None) -> int:
    """The number of decimals of `code`; raises UnknownCurrency for anything not in ISO 4217."""
    if overrides is None and type(code) is str:  # the hot path: a code already looked up
        known = _exponent_cache.get(code)
        if known is not None and code not in EXPONENT_OVERRIDES:
            return known
    if not isinstance(code, str) or not _CODE_RE.match(code):
        raise UnknownCurrency(f"currency must be a three-letter ISO 4217 code, got {code!r}")
    if overrides is not None and code in overrides:
        return overrides[code]
    if code in EXPONENT_OVERRIDES:
        return EXPONENT_OVERRIDES[code]
    cached = _exponent_cache.get(code)
    if cached is not None:
        return cached
    try:
        exponent = iso4217.Currency(code).exponent
    except (ValueError, KeyError):
        raise UnknownCurrency(f"currency {code!r} is not an ISO 4217 currency") from None
    if exponent is None:
        raise UnknownCurrency(f"currency {code!r} has no minor unit in ISO 4217 (not money)")
    _exponent_cache[code] = int(exponent)
    return int(exponent)


def _check_minor(value: Any, *, field: str = "amount_minor") -> int:
    # bool is an int subclass; True is not an amount.
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidAmount(
            f"{field} must be an integer of minor units, got {type(value).__name__} {value!r}"
        )
    if abs(value) > AMOUNT_MINOR_MAX:
        raise InvalidAmount(f"{field} {value} exceeds the limit of {AMOUNT_MINOR_MAX} minor units")
    return value


def _validate_currency(instance: Money, attribute: attrs.Attribute[str], value: str) -> None:
    currency_exponent(value)


def _validate_minor(instance: Money, attribute: attrs.Attribute[int], value: int) -> None:
    _check_minor(value, field=attribute.name)


@attrs.frozen(order=False)
class Money:
    """An exact amount: `minor` units of `currency` (cents for USD, yen for JPY, fils for BHD)."""

    minor: int = attrs.field(validator=_validate_minor)
    currency: str = attrs.field(validator=_validate_currency)

    @classmethod
    def of_minor(cls, minor: int, currency: str) -> Money:
        return cls(minor, currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    @property
    def exponent(self) -> int:
        return currency_exponent(self.currency)

    def _same(self, other: object) -> Money:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise InvalidAmount(
                f"currency mismatch: cannot combine {self.currency} with {other.currency}"
            )
        return other

    def __add__(self, other: Money) -> Money:
        return Money(self.minor + self._same(other).minor, self.currency)

    def __sub__(self, other: Money) -> Money:
        return Money(self.minor - self._same(other).minor, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.minor, self.currency)

    def __lt__(self, other: Money) -> bool:
        return self.minor < self._same(other).minor

    def __le__(self, other: Money) -> bool:
        return self.minor <= self._same(other).minor

    def __gt__(self, other: Money) -> bool:
        return self.minor > self._same(other).minor

    def __ge__(self, other: Money) -> bool:
        return self.minor >= self._same(other).minor

    def __mul__(self, other: object) -> Money:
        raise TypeError("Money cannot be multiplied; use a rounding rule such as split_bps")

    def is_zero(self) -> bool:
        return self.minor == 0

    def to_wire(self) -> str:
        return format_amount(self.minor, self.currency)

    def __str__(self) -> str:
        return f"{format_amount(self.minor, self.currency)} {self.currency}"


def parse_amount(
    text: Any,
    currency: str,
    *,
    allow_negative: bool = False,
    allow_zero: bool = False,
    overrides: Mapping[str, int] | None = None,
) -> Money:
    """Parse a wire amount (a decimal string in major units) into Money.

    Strict on purpose: the string must be digits with at most one '.', no leading zeros, no
    '+', no exponent, no whitespace, no more decimals than the currency has. A float or any
    other non-string is refused: a JSON number has already lost exactness in most parsers.
    """
    if isinstance(text, float):
        raise InvalidAmount(f"amount must be a decimal string, not a float ({text!r})")
    if not isinstance(text, str):
        raise InvalidAmount(f"amount must be a decimal string, got {type(text).__name__}")
    exponent = currency_exponent(currency, overrides)
    if len(text) > 40:
        raise InvalidAmount("amount string is longer than 40 characters")
    match = _AMOUNT_RE.match(text)
    if match is None:
        if "e" in text.lower():
            raise InvalidAmount(f"amount {text!r} uses an exponent; write plain digits")
        if text.startswith("+"):
            raise InvalidAmount(f"amount {text!r} has a '+' sign; write plain digits")
        raise InvalidAmount(
            f"amount {text!r} is not a plain decimal (digits, optional '.', no leading zeros)"
        )
    frac = match["frac"] or ""
    if len(frac) > exponent:
        raise InvalidAmount(
            f"amount {text!r} has {len(frac)} decimals but {currency} allows {exponent}"
        )
    negative = match["sign"] is not None
    if negative and not allow_negative:
        raise InvalidAmount(f"amount {text!r} is negative; only positive amounts are allowed here")
    minor = int(match["int"]) * 10**exponent + int(frac.ljust(exponent, "0") or "0")
    if negative:
        minor = -minor
    if minor == 0 and not allow_zero:
        raise InvalidAmount(f"amount {text!r} is zero; a positive amount is required")
    if negative and minor == 0:
        raise InvalidAmount(f"amount {text!r} is a negative zero")
    return Money(_check_minor(minor, field="amount"), currency)


def format_amount(minor: int, currency: str, overrides: Mapping[str, int] | None = None) -> str:
    """The wire form of `minor` units: `format_amount(1234, "USD") == "12.34"`."""
    _check_minor(minor)
    exponent = currency_exponent(currency, overrides)
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor))
    if exponent == 0:
        return sign + digits
    digits = digits.rjust(exponent + 1, "0")
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"


BPS_DENOMINATOR = 10_000


def round_half_even(numerator: int, denominator: int) -> int:
    """Integer division rounded half to even (banker's rounding), for non-negative inputs."""
    assert numerator >= 0 and denominator > 0
    quotient, remainder = divmod(numerator, denominator)
    twice = 2 * remainder
    if twice > denominator or (twice == denominator and quotient % 2 == 1):
        quotient += 1
    return quotient


def split_bps(amount: Money, rate_bps: int) -> tuple[Money, Money]:
    """Split `amount` into (part at `rate_bps`, the rest), exactly, for a rate in basis points.

    The part is rounded half to even to a whole minor unit; the rest is `amount - part`, so the
    two always add back to `amount` and no minor unit is created or lost.
    """
    if isinstance(rate_bps, bool) or not isinstance(rate_bps, int):
        raise InvalidAmount(f"rate_bps must be an integer, got {rate_bps!r}")
    if not 0 <= rate_bps <= BPS_DENOMINATOR:
        raise InvalidAmount(f"rate_bps must be within 0..{BPS_DENOMINATOR}, got {rate_bps}")
    if amount.minor < 0:
        raise InvalidAmount(f"cannot split a negative amount {amount}")
    part = round_half_even(amount.minor * rate_bps, BPS_DENOMINATOR)
    return Money(part, amount.currency), Money(amount.minor - part, amount.currency)


def allocate(amount: Money, weights: list[int]) -> list[Money]:
    """Split `amount` proportionally to integer `weights`, largest remainder first, exactly."""
    if not weights or any(w < 0 for w in weights) or sum(weights) == 0:
        raise InvalidAmount(
            f"allocation weights must be non-negative with a positive sum: {weights}"
        )
    total = sum(weights)
    shares = [amount.minor * w // total for w in weights]
    remainders = [amount.minor * w % total for w in weights]
    leftover = amount.minor - sum(shares)
    for index in sorted(range(len(weights)), key=lambda i: (-remainders[i], i))[:leftover]:
        shares[index] += 1
    assert sum(shares) == amount.minor
    return [Money(s, amount.currency) for s in shares]
