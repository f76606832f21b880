"""The consent engine: may this recording be used for this purpose, here, now, and why?

Default deny. A use is allowed only when every master owner has an active agreement covering it,
and every main/featured artist and every writer of the recorded work has an effective opt-in.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from attune.rights.models import Agreement, Consent, Party, Recording, Work

ALLOWING = ("allowed", "constrained")


@dataclass(frozen=True, slots=True)
class Reason:
    """One reason behind a decision, naming the record it rests on.

    code: a stable machine-readable kind (``agreement_covers``, ``no_agreement``,
    ``consent_allowed``, ``consent_refused``, ``consent_missing``, ``no_owner``, ``no_artist``,
    ``no_work``, ``no_writer``). message: the same for people. The ids name the agreement,
    consent record or party concerned.
    """

    code: str
    message: str
    party_id: int | None = None
    agreement_id: int | None = None
    consent_id: int | None = None

    def as_dict(self) -> dict[str, Any]:
        """The reason as JSON data."""
        return {
            "code": self.code,
            "message": self.message,
            "party_id": self.party_id,
            "agreement_id": self.agreement_id,
            "consent_id": self.consent_id,
        }


@dataclass(frozen=True, slots=True)
class Decision:
    """The answer for one recording: allowed or not, every reason, and any consent terms."""

    allowed: bool
    use: str
    recording_id: int
    at: datetime
    territory: str | None
    reasons: tuple[Reason, ...]
    terms: tuple[dict[str, Any], ...] = field(default=())

    @property
    def first_exclusion(self) -> Reason | None:
        """The first reason that denies, in the engine's fixed order (owners, artists, writers)."""
        return None if self.allowed else self.reasons[0]

    def as_dict(self) -> dict[str, Any]:
        """The decision as JSON data."""
        return {
            "allowed": self.allowed,
            "use": self.use,
            "recording_id": self.recording_id,
            "at": self.at.isoformat(),
            "territory": self.territory,
            "reasons": [r.as_dict() for r in self.reasons],
            "terms": list(self.terms),
        }


def as_instant(at: datetime | date | None) -> datetime:
    """Normalise a decision time: a date means its start (00:00 UTC); None means now."""
    if at is None:
        return datetime.now(UTC)
    if isinstance(at, datetime):
        return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return datetime(at.year, at.month, at.day, tzinfo=UTC)


def _where(territory: str | None) -> str:
    return f"in {territory}" if territory else "worldwide"


def agreement_gap(
    a: Agreement,
    use: str,
    recording: Recording,
    day: date,
    territory: str | None,
    licensee_id: int | None,
    model_version: str | None,
) -> str | None:
    """Why this agreement does not cover the use, or None when it does."""
    if licensee_id is not None and a.licensee_id != licensee_id:
        return f"licenses party {a.licensee_id}, not party {licensee_id}"
    if use not in {u.use for u in a.uses}:
        return f"does not license {use!r}"
    if day < a.start_date:
        return f"starts {a.start_date.isoformat()}"
    if a.end_date is not None and day > a.end_date:
        return f"ended {a.end_date.isoformat()}"
    listed = {t.territory for t in a.territories if not t.excluded}
    excluded = {t.territory for t in a.territories if t.excluded}
    if territory is None:
        if not a.worldwide or excluded:
            return "does not cover every territory"
    elif a.worldwide and territory in excluded:
        return f"excludes {territory}"
    elif not a.worldwide and territory not in listed:
        return f"does not cover {territory}"
    pins = {m.model_version for m in a.model_versions}
    if pins and model_version not in pins:
        pinned = ", ".join(sorted(pins))
        return f"is pinned to model versions {pinned}" + (
            "" if model_version is None else f", not {model_version}"
        )
    if not a.covers_all:
        recordings = {i.recording_id for i in a.items if i.recording_id is not None}
        works = {i.work_id for i in a.items if i.work_id is not None}
        if recording.id not in recordings and recording.work_id not in works:
            return "does not list this recording or its work"
    return None


def consent_order(c: Consent) -> tuple[datetime, int, int]:
    """Sort key of 'latest wins': effective start, then a refusal over a grant, then record id."""
    return (c.effective_from, 1 if c.decision == "not_allowed" else 0, c.id)


def _covers(c: Consent, territory: str | None) -> bool:
    if c.worldwide:
        return True
    return territory is not None and territory in {t.territory for t in c.territories}


def winning_consent(records: list[Consent], territory: str | None) -> Consent | None:
    """The record that decides for one party, or None when no record applies.

    With no territory (meaning everywhere), only a worldwide grant can allow, and any later
    refusal in any territory denies.
    """
    if territory is not None:
        covering = [c for c in records if _covers(c, territory)]
        return max(covering, key=consent_order) if covering else None
    worldwide = [c for c in records if c.worldwide]
    if not worldwide:
        refusals = [c for c in records if c.decision == "not_allowed"]
        return max(refusals, key=consent_order) if refusals else None
    best = max(worldwide, key=consent_order)
    later_refusals = [
        c for c in records if c.decision == "not_allowed" and consent_order(c) > consent_order(best)
    ]
    return max(later_refusals, key=consent_order) if later_refusals else best


def _party_label(party: Party | None, party_id: int) -> str:
    return f"{party.name!r} (party {party_id})" if party else f"party {party_id}"


def decide(
    session: Session,
    use: str,
    recording: Recording | int,
    at: datetime | date | None = None,
    territory: str | None = None,
    *,
    licensee_id: int | None = None,
    model_version: str | None = None,
) -> Decision:
    """Decide one use of one recording at one instant in one territory (None: everywhere)."""
    rec = recording if isinstance(recording, Recording) else session.get(Recording, recording)
    if rec is None:
        raise LookupError(f"no recording with id {recording}")
    when = as_instant(at)
    day = when.date()
    where = _where(territory)
    denials: list[Reason] = []
    grants: list[Reason] = []
    terms: list[dict[str, Any]] = []

    if not rec.owners:
        denials.append(Reason("no_owner", "no master owner is registered for this recording"))
    for owner in rec.owners:
        party = session.get(Party, owner.party_id)
        label = _party_label(party, owner.party_id)
        agreements = session.scalars(
            select(Agreement).where(Agreement.licensor_id == owner.party_id).order_by(Agreement.id)
        ).all()
        gaps = []
        covering = None
        for a in agreements:
            gap = agreement_gap(a, use, rec, day, territory, licensee_id, model_version)
            if gap is None:
                covering = a
                break
            gaps.append(f"agreement {a.id} {gap}")
        if covering is not None:
            grants.append(
                Reason(
                    "agreement_covers",
                    f"agreement {covering.id} with master owner {label} covers {use!r} {where} "
                    f"on {day.isoformat()}",
                    party_id=owner.party_id,
                    agreement_id=covering.id,
                )
            )
        else:
            detail = "; ".join(gaps) if gaps else "it has licensed nothing"
            denials.append(
                Reason(
                    "no_agreement",
                    f"master owner {label} has no agreement covering {use!r} {where} on "
                    f"{day.isoformat()} ({detail})",
                    party_id=owner.party_id,
                )
            )

    mains = [a for a in rec.artists if a.role == "main"]
    if not mains:
        denials.append(Reason("no_artist", "no main artist is registered for this recording"))
    people: list[tuple[int, str]] = [(a.party_id, f"{a.role} artist") for a in rec.artists]
    work = session.get(Work, rec.work_id) if rec.work_id is not None else None
    if work is None:
        denials.append(
            Reason(
                "no_work", "the recording is not linked to a work, so its writers cannot consent"
            )
        )
    else:
        writers = [s for s in work.shares if s.role == "writer"]
        if not writers:
            denials.append(Reason("no_writer", f"work {work.id} has no writer registered"))
        people += [(s.party_id, "writer") for s in writers]

    seen: set[int] = set()
    for party_id, capacity in people:
        if party_id in seen:
            continue
        seen.add(party_id)
        label = _party_label(session.get(Party, party_id), party_id)
        records = list(
            session.scalars(
                select(Consent).where(
                    Consent.party_id == party_id,
                    Consent.use == use,
                    Consent.effective_from <= when,
                    or_(Consent.effective_until.is_(None), Consent.effective_until > when),
                    or_(
                        Consent.scope == "all",
                        Consent.recording_id == rec.id,
                        Consent.work_id == (rec.work_id if rec.work_id is not None else -1),
                    ),
                )
            )
        )
        win = winning_consent(records, territory)
        if win is None:
            denials.append(
                Reason(
                    "consent_missing",
                    f"{capacity} {label} has no consent record for {use!r} {where} in effect",
                    party_id=party_id,
                )
            )
        elif win.decision == "not_allowed":
            denials.append(
                Reason(
                    "consent_refused",
                    f"{capacity} {label} refused {use!r} {where} (consent record {win.id})",
                    party_id=party_id,
                    consent_id=win.id,
                )
            )
        else:
            code = "consent_allowed" if win.decision == "allowed" else "consent_constrained"
            grants.append(
                Reason(
                    code,
                    f"{capacity} {label} opted in to {use!r} {where} (consent record {win.id})"
                    + (" under terms" if win.terms else ""),
                    party_id=party_id,
                    consent_id=win.id,
                )
            )
            if win.terms:
                terms.append({"consent_id": win.id, **json.loads(win.terms)})

    if denials:
        return Decision(False, use, rec.id, when, territory, tuple(denials))
    return Decision(True, use, rec.id, when, territory, tuple(grants), tuple(terms))
