"""Column types of every table: exact decimals stored as integer micro-units, UTC instants."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, DateTime, Dialect
from sqlalchemy.types import TypeDecorator

MICRO = Decimal(1_000_000)


def plain(value: Decimal) -> Decimal:
    """The same number without trailing zeros or exponent (100.000 -> 100, 0.50 -> 0.5)."""
    return Decimal(format(value.normalize(), "f"))


def decimal_text(value: Decimal) -> str:
    """Canonical text of a decimal, identical before and after a database round trip."""
    return format(plain(value), "f")


class Micro(TypeDecorator[Decimal]):
    """A Decimal with at most six decimal places, stored exactly as integer millionths.

    Shares (percent or fraction) and money both use it, so SQL sums stay exact on SQLite too.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        scaled = Decimal(value) * MICRO
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than six decimal places")
        return int(scaled)

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return plain(Decimal(int(value)).scaleb(-6))


class UtcDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC instant, stored naive-UTC so SQLite compares it as text correctly."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} given; instants must carry a zone"
            )
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        moment = datetime.fromisoformat(value) if isinstance(value, str) else value
        assert isinstance(moment, datetime)
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
