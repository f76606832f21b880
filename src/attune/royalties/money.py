"""Exact money: integer micro-units, currency minor units, half-even rounding, largest remainder.

Amounts are integers everywhere (micro-units of a currency, or its minor unit such as cents);
Decimal appears only at the edges, for people.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from decimal import Decimal
from typing import TypeVar

MICRO_PER_UNIT = 1_000_000
# ISO 4217 currencies whose minor unit is not the cent; every other currency has two decimals.
_EXPONENTS = {
    "BIF": 0,
    "CLP": 0,
    "DJF": 0,
    "GNF": 0,
    "ISK": 0,
    "JPY": 0,
    "KMF": 0,
    "KRW": 0,
    "PYG": 0,
    "RWF": 0,
    "UGX": 0,
    "UYI": 0,
    "VND": 0,
    "VUV": 0,
    "XAF": 0,
    "XOF": 0,
    "XPF": 0,
    "BHD": 3,
    "IQD": 3,
    "JOD": 3,
    "KWD": 3,
    "LYD": 3,
    "OMR": 3,
    "TND": 3,
}

K = TypeVar("K", bound=Hashable)


def exponent(currency: str) -> int:
    """Decimal places of the currency's minor unit (2 unless ISO 4217 says otherwise)."""
    return _EXPONENTS.get(currency, 2)


def micro_per_minor(currency: str) -> int:
    """How many micro-units make one minor unit (10,000 for a cent)."""
    return int(MICRO_PER_UNIT // 10 ** exponent(currency))


def div_half_even(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half to even, in integers (denominator > 0)."""
    q, r = divmod(numerator, denominator)
    twice = 2 * r
    if twice > denominator or (twice == denominator and q % 2 == 1):
        q += 1
    return q


def to_micro(value: Decimal) -> int:
    """A Decimal with at most six places as integer micro-units; refuses more precision."""
    scaled = value * MICRO_PER_UNIT
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value} has more than six decimal places")
    return int(scaled)


def from_micro(micro: int) -> Decimal:
    """Integer micro-units as an exact Decimal."""
    return Decimal(micro).scaleb(-6)


def minor_text(minor: int, currency: str) -> str:
    """An amount in minor units as plain text with the currency's decimals (1234 -> '12.34')."""
    places = exponent(currency)
    return f"{Decimal(minor).scaleb(-places):.{places}f}"


def largest_remainder(total: int, weights: Sequence[tuple[K, int]]) -> dict[K, int]:
    """Split an integer total in proportion to integer weights, summing exactly to the total.

    Each key gets floor(total * w / W); the units left over go one each to the largest
    remainders, ties broken by key order. This is the reference the SQL allocation must match.
    """
    if total < 0:
        raise ValueError("total must not be negative")
    grand = sum(w for _, w in weights)
    if grand <= 0 or any(w < 0 for _, w in weights):
        raise ValueError("weights must be non-negative with a positive sum")
    parts = {k: divmod(total * w, grand) for k, w in weights}
    short = total - sum(q for q, _ in parts.values())
    winners = set(sorted(parts, key=lambda k: (-parts[k][1], k))[:short])
    return {k: q + (1 if k in winners else 0) for k, (q, _) in parts.items()}
