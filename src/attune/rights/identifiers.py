"""Validate and normalise the music-industry identifiers the rights layer stores.

Every ``normalise_*`` function takes user- or partner-supplied text and returns one canonical
form, or raises :class:`IdentifierError`, so that equal identifiers compare equal in storage
and malformed ones never get in.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from stdnum import isni as _stdnum_isni
from stdnum import isrc as _stdnum_isrc
from stdnum.exceptions import ValidationError as _StdnumValidationError

__all__ = [
    "ISO_3166_1_ALPHA_2",
    "IdentifierError",
    "format_iswc",
    "ipi_base_check_digit",
    "ipi_name_check_digits",
    "iswc_check_digit",
    "normalise_ipi_base",
    "normalise_ipi_name",
    "normalise_isni",
    "normalise_isrc",
    "normalise_iswc",
    "normalise_territories",
    "normalise_territory",
]


class IdentifierError(ValueError):
    """Raised when a value is not a valid identifier; names the kind and the bad value."""

    def __init__(self, kind: str, value: object, reason: str) -> None:
        """Build the message from the identifier kind, the offending value and the reason."""
        self.kind = kind
        self.value = value
        self.reason = reason
        super().__init__(f"invalid {kind}: {value!r} ({reason})")

    def __reduce__(self) -> tuple[type[IdentifierError], tuple[str, object, str]]:
        """Keep the exception picklable despite the three-argument constructor."""
        return (type(self), (self.kind, self.value, self.reason))


# Officially assigned ISO 3166-1 alpha-2 codes (249). Generated once from the IANA tz database's
# iso3166.tab and cross-checked against python-stdnum's ISIN country list less the withdrawn
# AN (Netherlands Antilles) and CS (Serbia and Montenegro). User-assigned (XK, AA, QM-QZ, XA-XZ,
# ZZ), exceptionally reserved (UK, EU, ...) and withdrawn codes are deliberately absent.
# fmt: off
ISO_3166_1_ALPHA_2: frozenset[str] = frozenset(
    {
        "AD", "AE", "AF", "AG", "AI", "AL", "AM", "AO", "AQ", "AR", "AS", "AT", "AU", "AW", "AX",
        "AZ", "BA", "BB", "BD", "BE", "BF", "BG", "BH", "BI", "BJ", "BL", "BM", "BN", "BO", "BQ",
        "BR", "BS", "BT", "BV", "BW", "BY", "BZ", "CA", "CC", "CD", "CF", "CG", "CH", "CI", "CK",
        "CL", "CM", "CN", "CO", "CR", "CU", "CV", "CW", "CX", "CY", "CZ", "DE", "DJ", "DK", "DM",
        "DO", "DZ", "EC", "EE", "EG", "EH", "ER", "ES", "ET", "FI", "FJ", "FK", "FM", "FO", "FR",
        "GA", "GB", "GD", "GE", "GF", "GG", "GH", "GI", "GL", "GM", "GN", "GP", "GQ", "GR", "GS",
        "GT", "GU", "GW", "GY", "HK", "HM", "HN", "HR", "HT", "HU", "ID", "IE", "IL", "IM", "IN",
        "IO", "IQ", "IR", "IS", "IT", "JE", "JM", "JO", "JP", "KE", "KG", "KH", "KI", "KM", "KN",
        "KP", "KR", "KW", "KY", "KZ", "LA", "LB", "LC", "LI", "LK", "LR", "LS", "LT", "LU", "LV",
        "LY", "MA", "MC", "MD", "ME", "MF", "MG", "MH", "MK", "ML", "MM", "MN", "MO", "MP", "MQ",
        "MR", "MS", "MT", "MU", "MV", "MW", "MX", "MY", "MZ", "NA", "NC", "NE", "NF", "NG", "NI",
        "NL", "NO", "NP", "NR", "NU", "NZ", "OM", "PA", "PE", "PF", "PG", "PH", "PK", "PL", "PM",
        "PN", "PR", "PS", "PT", "PW", "PY", "QA", "RE", "RO", "RS", "RU", "RW", "SA", "SB", "SC",
        "SD", "SE", "SG", "SH", "SI", "SJ", "SK", "SL", "SM", "SN", "SO", "SR", "SS", "ST", "SV",
        "SX", "SY", "SZ", "TC", "TD", "TF", "TG", "TH", "TJ", "TK", "TL", "TM", "TN", "TO", "TR",
        "TT", "TV", "TW", "TZ", "UA", "UG", "UM", "US", "UY", "UZ", "VA", "VC", "VE", "VG", "VI",
        "VN", "VU", "WF", "WS", "YE", "YT", "ZA", "ZM", "ZW",
    }
)
# fmt: on

_ISWC_RE = re.compile(r"T(\d{9})(\d)", re.ASCII)
_IPI_BASE_RE = re.compile(r"I(\d{9})(\d)", re.ASCII)
_DIGITS_RE = re.compile(r"\d+", re.ASCII)
_ALPHA2_RE = re.compile(r"[A-Z]{2}", re.ASCII)


def _prepare(kind: str, value: object) -> str:
    """Return stripped ASCII text, rejecting non-strings, empties and non-ASCII look-alikes."""
    if not isinstance(value, str):
        raise IdentifierError(kind, value, f"expected a string, got {type(value).__name__}")
    text = value.strip()
    if not text:
        raise IdentifierError(kind, value, "empty")
    # Checked before any upper-casing: "ß".upper() == "SS" and "ı".upper() == "I" would otherwise
    # let non-ASCII input masquerade as a valid code.
    if not text.isascii():
        raise IdentifierError(kind, value, "contains non-ASCII characters")
    return text


def _strip_separators(text: str, separators: str) -> str:
    """Remove the given visual separator characters, which carry no meaning in these codes."""
    return text.translate({ord(c): None for c in separators})


def _weighted_mod10_check(body: str, start: int) -> str:
    """Compute the CISAC mod-10 check digit shared by ISWC (start 1) and IPI base (start 2)."""
    total = start + sum(i * int(d) for i, d in enumerate(body, start=1))
    return str((10 - total % 10) % 10)


def iswc_check_digit(body: str) -> str:
    """Return the ISWC check digit for a 9-digit work identifier, e.g. to mint or verify codes."""
    if not (len(body) == 9 and _DIGITS_RE.fullmatch(body)):
        raise IdentifierError("ISWC", body, "work identifier must be exactly 9 digits")
    return _weighted_mod10_check(body, start=1)


def ipi_base_check_digit(body: str) -> str:
    """Return the IPI base number check digit for a 9-digit body (ISWC rule, starting weight 2)."""
    if not (len(body) == 9 and _DIGITS_RE.fullmatch(body)):
        raise IdentifierError("IPI base number", body, "body must be exactly 9 digits")
    return _weighted_mod10_check(body, start=2)


def ipi_name_check_digits(body: str) -> str:
    """Return the two IPI name number check digits (mod 101) for a 9-digit body."""
    if not (len(body) == 9 and _DIGITS_RE.fullmatch(body)):
        raise IdentifierError("IPI name number", body, "body must be exactly 9 digits")
    total = sum(int(d) * (10 - i) for i, d in enumerate(body)) % 101
    if total != 0:
        total = (101 - total) % 100
    return f"{total:02d}"


def _stdnum_reason(exc: _StdnumValidationError) -> str:
    """Turn a python-stdnum validation message into a lower-case reason for IdentifierError."""
    message = str(exc).rstrip(".") or type(exc).__name__
    return message[:1].lower() + message[1:]


def normalise_isrc(value: str) -> str:
    """Return the compact 12-character upper-case ISRC, so hyphenated and bare forms match."""
    text = _prepare("ISRC", value)
    try:
        return str(_stdnum_isrc.validate(text))
    except _StdnumValidationError as exc:
        raise IdentifierError("ISRC", value, _stdnum_reason(exc)) from exc


def normalise_isni(value: str) -> str:
    """Return the compact 16-character ISNI (check character validated), dropping spaces."""
    text = _prepare("ISNI", value)
    try:
        return str(_stdnum_isni.validate(text))
    except _StdnumValidationError as exc:
        raise IdentifierError("ISNI", value, _stdnum_reason(exc)) from exc


def normalise_iswc(value: str) -> str:
    """Return the compact ISWC ``T`` + 10 digits, accepting the usual dotted/hyphenated forms."""
    text = _strip_separators(_prepare("ISWC", value), " -.").upper()
    match = _ISWC_RE.fullmatch(text)
    if match is None:
        raise IdentifierError("ISWC", value, "expected T followed by 10 digits")
    body, check = match.groups()
    if _weighted_mod10_check(body, start=1) != check:
        raise IdentifierError("ISWC", value, "check digit mismatch")
    return text


def format_iswc(compact: str) -> str:
    """Return the display form ``T-123.456.789-C`` of a (validated) ISWC."""
    text = normalise_iswc(compact)
    return f"T-{text[1:4]}.{text[4:7]}.{text[7:10]}-{text[10]}"


def normalise_ipi_name(value: str) -> str:
    """Return the 11-digit IPI name number (zero-padded), verifying its mod-101 check digits."""
    text = _strip_separators(_prepare("IPI name number", value), " ")
    if not _DIGITS_RE.fullmatch(text):
        raise IdentifierError("IPI name number", value, "must contain only digits")
    if len(text) > 11:
        raise IdentifierError("IPI name number", value, "longer than 11 digits")
    text = text.zfill(11)
    if text == "0" * 11:
        raise IdentifierError("IPI name number", value, "all zeros is not an assigned number")
    if ipi_name_check_digits(text[:9]) != text[9:]:
        raise IdentifierError("IPI name number", value, "check digits mismatch")
    return text


def normalise_ipi_base(value: str) -> str:
    """Return the IPI base number as ``I-NNNNNNNNN-C``, verifying its check digit."""
    text = _strip_separators(_prepare("IPI base number", value), " -.").upper()
    match = _IPI_BASE_RE.fullmatch(text)
    if match is None:
        raise IdentifierError("IPI base number", value, "expected I followed by 10 digits")
    body, check = match.groups()
    if _weighted_mod10_check(body, start=2) != check:
        raise IdentifierError("IPI base number", value, "check digit mismatch")
    return f"I-{body}-{check}"


def normalise_territory(value: str) -> str:
    """Return an officially assigned ISO 3166-1 alpha-2 code in upper case (no WW, XK, EU...)."""
    text = _prepare("territory", value).upper()
    if not _ALPHA2_RE.fullmatch(text):
        raise IdentifierError("territory", value, "expected a two-letter ISO 3166-1 code")
    if text not in ISO_3166_1_ALPHA_2:
        raise IdentifierError("territory", value, "not an assigned ISO 3166-1 alpha-2 code")
    return text


def normalise_territories(values: Iterable[str]) -> tuple[str, ...]:
    """Return the normalised territories sorted and deduplicated, so equal sets compare equal."""
    if isinstance(values, str):
        # A bare string is an Iterable[str] of characters; that is never what the caller meant.
        raise TypeError("normalise_territories() expects an iterable of codes, not a single str")
    return tuple(sorted({normalise_territory(v) for v in values}))
