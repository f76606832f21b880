"""Small builders for registry test data, written through the real registry functions."""

from __future__ import annotations

import itertools
from datetime import date, datetime
from decimal import Decimal

from sqlalchemy.orm import Session

from attune.rights import registry
from attune.rights.models import Agreement, Consent, Party, Recording, Work
from attune.rights.records import (
    AgreementIn,
    ArtistIn,
    ConsentIn,
    OwnerIn,
    PartyIn,
    RecordingIn,
    ShareIn,
    WorkIn,
)

ACTOR = "test"
_isrc_numbers = itertools.count(1)


def next_isrc() -> str:
    """A fresh valid ISRC (country GB, registrant ATT)."""
    return f"GBATT26{next(_isrc_numbers):05d}"


def party(s: Session, name: str, *roles: str, kind: str = "person") -> Party:
    """Register a party with roles."""
    return registry.add_party(s, PartyIn(name=name, kind=kind, roles=roles), ACTOR)  # type: ignore[arg-type]


def work(s: Session, title: str, *writers: Party, publisher: Party | None = None) -> Work:
    """Register a work split equally between writers (and 50% to a publisher, if given)."""
    pool = Decimal(50 if publisher else 100)
    each = (pool / len(writers)).quantize(Decimal("0.000001"))
    shares = [ShareIn(party_id=w.id, role="writer", share=each) for w in writers]
    rest = pool - each * len(writers)
    if rest:
        shares[0] = ShareIn(party_id=writers[0].id, role="writer", share=each + rest)
    if publisher:
        shares.append(ShareIn(party_id=publisher.id, role="publisher", share=Decimal(50)))
    return registry.add_work(s, WorkIn(title=title, shares=tuple(shares)), ACTOR)


def recording(
    s: Session,
    title: str,
    w: Work | None,
    owners: list[Party],
    artists: list[Party],
    featured: list[Party] | None = None,
) -> Recording:
    """Register a recording owned equally by ``owners``."""
    each = (Decimal(100) / len(owners)).quantize(Decimal("0.000001"))
    shares = [each] * len(owners)
    shares[0] += Decimal(100) - each * len(owners)
    return registry.add_recording(
        s,
        RecordingIn(
            title=title,
            isrc=next_isrc(),
            work_id=w.id if w else None,
            artists=tuple(ArtistIn(party_id=a.id, role="main") for a in artists)
            + tuple(ArtistIn(party_id=a.id, role="featured") for a in featured or []),
            owners=tuple(
                OwnerIn(party_id=o.id, share=sh) for o, sh in zip(owners, shares, strict=True)
            ),
        ),
        ACTOR,
    )


def agreement(
    s: Session,
    licensor: Party,
    licensee: Party,
    uses: tuple[str, ...] = ("train",),
    territories: tuple[str, ...] = (),
    excluded: tuple[str, ...] = (),
    start: date = date(2026, 1, 1),
    end: date | None = None,
    **extra: object,
) -> Agreement:
    """Register an agreement; worldwide when no territories are given."""
    return registry.add_agreement(
        s,
        AgreementIn(
            licensor_id=licensor.id,
            licensee_id=licensee.id,
            uses=uses,
            worldwide=not territories,
            territories=territories,
            excluded_territories=excluded,
            start_date=start,
            end_date=end,
            **extra,  # type: ignore[arg-type]
        ),
        ACTOR,
    )


def consent(
    s: Session,
    who: Party,
    decision: str = "allowed",
    use: str = "train",
    since: datetime = datetime(2026, 1, 1),
    **extra: object,
) -> Consent:
    """Record a consent for all of a party's works unless a scope is given."""
    return registry.record_consent(
        s,
        ConsentIn(party_id=who.id, use=use, decision=decision, effective_from=since, **extra),  # type: ignore[arg-type]
        ACTOR,
    )
