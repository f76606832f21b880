"""Registry writes and reads: every write validates references, then appends an audit entry."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from attune.rights.batch import assign_party_set
from attune.rights.models import (
    Agreement,
    AgreementItem,
    AgreementModelVersion,
    AgreementTerritory,
    AgreementUse,
    Consent,
    ConsentTerritory,
    Delegation,
    Party,
    PartyAlias,
    PartyRole,
    Recording,
    RecordingArtist,
    RecordingOwner,
    Work,
    WorkShare,
)
from attune.rights.records import (
    AgreementIn,
    ConsentIn,
    DelegationIn,
    PartyIn,
    RecordingIn,
    WorkIn,
)
from attune.store import audit
from attune.store.types import decimal_text


class RegistryError(ValueError):
    """A write refused because of its content; ``field`` names the offending input."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NotFound(LookupError):
    """A referenced party, work, recording, agreement or consent record does not exist."""


def now() -> datetime:
    """The current UTC instant (one place, so tests and records agree on the clock)."""
    return datetime.now(UTC)


# --- snapshots: the one JSON shape of each entity, for audit payloads, the CLI and the API ---


def party_snapshot(p: Party) -> dict[str, Any]:
    """A party as plain JSON data."""
    return {
        "id": p.id,
        "kind": p.kind,
        "name": p.name,
        "isni": p.isni,
        "ipi": p.ipi,
        "roles": [r.role for r in p.roles],
        "aliases": [a.alias for a in p.aliases],
    }


def work_snapshot(w: Work) -> dict[str, Any]:
    """A work as plain JSON data."""
    return {
        "id": w.id,
        "title": w.title,
        "iswc": w.iswc,
        "source": w.source,
        "shares": [
            {"party_id": s.party_id, "role": s.role, "share": decimal_text(s.share)}
            for s in w.shares
        ],
    }


def recording_snapshot(r: Recording) -> dict[str, Any]:
    """A recording as plain JSON data."""
    return {
        "id": r.id,
        "title": r.title,
        "isrc": r.isrc,
        "duration_ms": r.duration_ms,
        "work_id": r.work_id,
        "content_hash": r.content_hash,
        "contains_ai": r.contains_ai,
        "artists": [{"party_id": a.party_id, "role": a.role} for a in r.artists],
        "owners": [{"party_id": o.party_id, "share": decimal_text(o.share)} for o in r.owners],
    }


def agreement_snapshot(a: Agreement) -> dict[str, Any]:
    """An agreement as plain JSON data."""
    return {
        "id": a.id,
        "reference": a.reference,
        "licensor_id": a.licensor_id,
        "licensee_id": a.licensee_id,
        "uses": [u.use for u in a.uses],
        "worldwide": a.worldwide,
        "territories": [t.territory for t in a.territories if not t.excluded],
        "excluded_territories": [t.territory for t in a.territories if t.excluded],
        "start_date": a.start_date.isoformat(),
        "end_date": a.end_date.isoformat() if a.end_date else None,
        "ai_revenue_share": decimal_text(a.ai_revenue_share),
        "minimum_guarantee": decimal_text(a.minimum_guarantee),
        "currency": a.currency,
        "model_versions": [m.model_version for m in a.model_versions],
        "covers_all": a.covers_all,
        "recording_ids": [i.recording_id for i in a.items if i.recording_id is not None],
        "work_ids": [i.work_id for i in a.items if i.work_id is not None],
    }


def consent_snapshot(c: Consent) -> dict[str, Any]:
    """A consent record as plain JSON data."""
    return {
        "id": c.id,
        "party_id": c.party_id,
        "use": c.use,
        "decision": c.decision,
        "scope": c.scope,
        "recording_id": c.recording_id,
        "work_id": c.work_id,
        "terms": json.loads(c.terms) if c.terms else None,
        "effective_from": c.effective_from.isoformat(),
        "effective_until": c.effective_until.isoformat() if c.effective_until else None,
        "worldwide": c.worldwide,
        "territories": [t.territory for t in c.territories],
        "recorded_by_id": c.recorded_by_id,
        "evidence": c.evidence,
        "supersedes_id": c.supersedes_id,
        "recorded_at": c.recorded_at.isoformat(),
    }


def delegation_snapshot(d: Delegation) -> dict[str, Any]:
    """A delegation record as plain JSON data."""
    return {
        "id": d.id,
        "principal_id": d.principal_id,
        "delegate_id": d.delegate_id,
        "use": d.use,
        "granted": d.granted,
        "effective_from": d.effective_from.isoformat(),
        "effective_until": d.effective_until.isoformat() if d.effective_until else None,
        "evidence": d.evidence,
        "recorded_at": d.recorded_at.isoformat(),
    }


SNAPSHOTS: dict[str, tuple[type[Any], Any]] = {
    "party": (Party, party_snapshot),
    "work": (Work, work_snapshot),
    "recording": (Recording, recording_snapshot),
    "agreement": (Agreement, agreement_snapshot),
    "consent": (Consent, consent_snapshot),
    "delegation": (Delegation, delegation_snapshot),
}


# --- lookups ---


def get_party(session: Session, party_id: int, field: str = "party_id") -> Party:
    """The party with this id, or a RegistryError naming the field that referenced it."""
    party = session.get(Party, party_id)
    if party is None:
        raise RegistryError(field, f"no party with id {party_id}")
    return party


def find_party(session: Session, ref: str) -> Party:
    """Resolve a party by id, ISNI, IPI, exact name or alias (case-insensitive)."""
    ref = ref.strip()
    if ref.isdigit() and len(ref) < 11:
        party = session.get(Party, int(ref))
        if party is not None:
            return party
    compact = ref.replace(" ", "").replace("-", "").upper()
    by_id = session.scalars(
        select(Party).where(or_(Party.isni == compact, Party.ipi == compact))
    ).first()
    if by_id is not None:
        return by_id
    matches = session.scalars(
        select(Party).where(
            or_(
                func.lower(Party.name) == ref.lower(),
                Party.id.in_(
                    select(PartyAlias.party_id).where(func.lower(PartyAlias.alias) == ref.lower())
                ),
            )
        )
    ).all()
    if len(matches) > 1:
        ids = ", ".join(str(p.id) for p in matches)
        raise NotFound(f"party {ref!r} is ambiguous (ids {ids}); use an id, ISNI or IPI")
    if not matches:
        raise NotFound(f"no party matches {ref!r} (id, ISNI, IPI, name or alias)")
    return matches[0]


def find_recording(session: Session, ref: str | int) -> Recording:
    """Resolve a recording by id or ISRC (any hyphenation)."""
    text_ref = str(ref).strip()
    if text_ref.isdigit():
        rec = session.get(Recording, int(text_ref))
        if rec is not None:
            return rec
    compact = text_ref.replace("-", "").replace(" ", "").upper()
    rec = session.scalars(select(Recording).where(Recording.isrc == compact)).first()
    if rec is None:
        raise NotFound(f"no recording with id or ISRC {text_ref!r}")
    return rec


def find_work(session: Session, ref: str | int) -> Work:
    """Resolve a work by id or ISWC."""
    text_ref = str(ref).strip()
    if text_ref.isdigit():
        work = session.get(Work, int(text_ref))
        if work is not None:
            return work
    compact = "".join(ch for ch in text_ref.upper() if ch.isalnum())
    work = session.scalars(select(Work).where(Work.iswc == compact)).first()
    if work is None:
        raise NotFound(f"no work with id or ISWC {text_ref!r}")
    return work


def get_agreement(session: Session, agreement_id: int) -> Agreement:
    """The agreement with this id."""
    agreement = session.get(Agreement, agreement_id)
    if agreement is None:
        raise NotFound(f"no agreement with id {agreement_id}")
    return agreement


def get_consent(session: Session, consent_id: int) -> Consent:
    """The consent record with this id."""
    consent = session.get(Consent, consent_id)
    if consent is None:
        raise NotFound(f"no consent record with id {consent_id}")
    return consent


def list_parties(session: Session, role: str | None = None, limit: int = 1000) -> Sequence[Party]:
    """Parties in id order, optionally only those with one role."""
    stmt = select(Party).order_by(Party.id).limit(limit)
    if role:
        stmt = stmt.where(Party.id.in_(select(PartyRole.party_id).where(PartyRole.role == role)))
    return session.scalars(stmt).all()


def list_works(session: Session, limit: int = 1000) -> Sequence[Work]:
    """Works in id order."""
    return session.scalars(select(Work).order_by(Work.id).limit(limit)).all()


def list_recordings(
    session: Session, owner_id: int | None = None, limit: int = 1000
) -> Sequence[Recording]:
    """Recordings in id order, optionally only those a party owns a share of."""
    stmt = select(Recording).order_by(Recording.id).limit(limit)
    if owner_id is not None:
        stmt = stmt.where(
            Recording.id.in_(
                select(RecordingOwner.recording_id).where(RecordingOwner.party_id == owner_id)
            )
        )
    return session.scalars(stmt).all()


def list_agreements(
    session: Session, party_id: int | None = None, limit: int = 1000
) -> Sequence[Agreement]:
    """Agreements in id order, optionally only those where a party is licensor or licensee."""
    stmt = select(Agreement).order_by(Agreement.id).limit(limit)
    if party_id is not None:
        stmt = stmt.where(or_(Agreement.licensor_id == party_id, Agreement.licensee_id == party_id))
    return session.scalars(stmt).all()


def consent_history(
    session: Session,
    party_id: int | None = None,
    recording_id: int | None = None,
    use: str | None = None,
) -> Sequence[Consent]:
    """Consent records in the order they were recorded, filtered by party, recording or use.

    For a recording, the history holds every record that can bear on it: its artists' and its
    work's writers' records for all their works, the recording itself, or its work.
    """
    stmt = select(Consent).order_by(Consent.id)
    if party_id is not None:
        stmt = stmt.where(Consent.party_id == party_id)
    if use is not None:
        stmt = stmt.where(Consent.use == use)
    if recording_id is not None:
        rec = session.get(Recording, recording_id)
        if rec is None:
            raise NotFound(f"no recording with id {recording_id}")
        parties = {a.party_id for a in rec.artists}
        work = session.get(Work, rec.work_id) if rec.work_id else None
        if work is not None:
            parties |= {s.party_id for s in work.shares if s.role == "writer"}
        stmt = stmt.where(
            Consent.party_id.in_(parties),
            or_(
                Consent.scope == "all",
                Consent.recording_id == recording_id,
                Consent.work_id == (rec.work_id if rec.work_id is not None else -1),
            ),
        )
    return session.scalars(stmt).all()


# --- writes ---


def _check_unique(session: Session, model: type[Any], column: Any, value: Any, field: str) -> None:
    if value is not None and session.scalar(select(model.id).where(column == value)) is not None:
        raise RegistryError(field, f"{value} is already registered")


def add_party(session: Session, data: PartyIn, actor: str) -> Party:
    """Register a party and audit it."""
    _check_unique(session, Party, Party.isni, data.isni, "isni")
    _check_unique(session, Party, Party.ipi, data.ipi, "ipi")
    party = Party(
        kind=data.kind,
        name=data.name,
        isni=data.isni,
        ipi=data.ipi,
        created_at=now(),
        roles=[PartyRole(role=r) for r in data.roles],
        aliases=[PartyAlias(alias=a) for a in sorted(set(data.aliases))],
    )
    session.add(party)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="party.add",
        entity="party",
        entity_id=party.id,
        payload=party_snapshot(party),
    )
    return party


def add_work(session: Session, data: WorkIn, actor: str) -> Work:
    """Register a work with its writer and publisher shares, and audit it."""
    _check_unique(session, Work, Work.iswc, data.iswc, "iswc")
    for i, s in enumerate(data.shares):
        get_party(session, s.party_id, f"shares[{i}].party_id")
    work = Work(
        title=data.title,
        iswc=data.iswc,
        source=data.source,
        created_at=now(),
        shares=[
            WorkShare(position=i, party_id=s.party_id, role=s.role, share=s.share)
            for i, s in enumerate(data.shares)
        ],
    )
    session.add(work)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="work.add",
        entity="work",
        entity_id=work.id,
        payload=work_snapshot(work),
    )
    return work


def add_recording(session: Session, data: RecordingIn, actor: str) -> Recording:
    """Register a recording with its artists and master owners, and audit it.

    Also maps it to its party set, the derived index batch decisions read (not audited).
    """
    _check_unique(session, Recording, Recording.isrc, data.isrc, "isrc")
    if data.work_id is not None and session.get(Work, data.work_id) is None:
        raise RegistryError("work_id", f"no work with id {data.work_id}")
    for i, a in enumerate(data.artists):
        get_party(session, a.party_id, f"artists[{i}].party_id")
    for i, o in enumerate(data.owners):
        get_party(session, o.party_id, f"owners[{i}].party_id")
    rec = Recording(
        title=data.title,
        isrc=data.isrc,
        duration_ms=data.duration_ms,
        work_id=data.work_id,
        content_hash=data.content_hash,
        contains_ai=data.contains_ai,
        created_at=now(),
        artists=[
            RecordingArtist(position=i, party_id=a.party_id, role=a.role)
            for i, a in enumerate(data.artists)
        ],
        owners=[
            RecordingOwner(position=i, party_id=o.party_id, share=o.share)
            for i, o in enumerate(data.owners)
        ],
    )
    session.add(rec)
    session.flush()
    assign_party_set(session, rec)
    audit.append(
        session,
        actor=actor,
        action="recording.add",
        entity="recording",
        entity_id=rec.id,
        payload=recording_snapshot(rec),
    )
    return rec


def add_agreement(session: Session, data: AgreementIn, actor: str) -> Agreement:
    """Register an upfront licence and audit it."""
    get_party(session, data.licensor_id, "licensor_id")
    get_party(session, data.licensee_id, "licensee_id")
    _check_unique(session, Agreement, Agreement.reference, data.reference, "reference")
    for i, rid in enumerate(data.recording_ids):
        if session.get(Recording, rid) is None:
            raise RegistryError(f"recording_ids[{i}]", f"no recording with id {rid}")
    for i, wid in enumerate(data.work_ids):
        if session.get(Work, wid) is None:
            raise RegistryError(f"work_ids[{i}]", f"no work with id {wid}")
    items = [AgreementItem(recording_id=r) for r in sorted(set(data.recording_ids))]
    items += [AgreementItem(work_id=w) for w in sorted(set(data.work_ids))]
    for i, item in enumerate(items):
        item.position = i
    agreement = Agreement(
        reference=data.reference,
        licensor_id=data.licensor_id,
        licensee_id=data.licensee_id,
        start_date=data.start_date,
        end_date=data.end_date,
        worldwide=data.worldwide,
        covers_all=data.covers_all,
        ai_revenue_share=data.ai_revenue_share,
        minimum_guarantee=data.minimum_guarantee,
        currency=data.currency,
        created_at=now(),
        uses=[AgreementUse(use=u) for u in data.uses],
        territories=[AgreementTerritory(territory=t, excluded=False) for t in data.territories]
        + [AgreementTerritory(territory=t, excluded=True) for t in data.excluded_territories],
        model_versions=[
            AgreementModelVersion(model_version=m) for m in sorted(set(data.model_versions))
        ],
        items=items,
    )
    session.add(agreement)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="agreement.add",
        entity="agreement",
        entity_id=agreement.id,
        payload=agreement_snapshot(agreement),
    )
    return agreement


def delegation_allows(
    session: Session, principal_id: int, delegate_id: int, use: str, at: datetime
) -> Delegation | None:
    """The delegation record letting ``delegate_id`` record ``use`` consent for the principal.

    The latest record in effect at ``at`` (for this use or for every use) wins; a revoked
    delegation (granted = false) allows nothing.
    """
    rows = session.scalars(
        select(Delegation)
        .where(
            Delegation.principal_id == principal_id,
            Delegation.delegate_id == delegate_id,
            or_(Delegation.use.is_(None), Delegation.use == use),
            Delegation.effective_from <= at,
            or_(Delegation.effective_until.is_(None), Delegation.effective_until > at),
        )
        .order_by(Delegation.effective_from.desc(), Delegation.id.desc())
    ).all()
    if not rows or not rows[0].granted:
        return None
    return rows[0]


def record_consent(session: Session, data: ConsentIn, actor: str) -> Consent:
    """Append one consent record; a delegate may record only where a delegation allows it."""
    get_party(session, data.party_id)
    recorded_by = data.recorded_by_id if data.recorded_by_id is not None else data.party_id
    get_party(session, recorded_by, "recorded_by_id")
    stamp = now()
    if (
        recorded_by != data.party_id
        and delegation_allows(session, data.party_id, recorded_by, data.use, stamp) is None
    ):
        raise RegistryError(
            "recorded_by_id",
            f"party {recorded_by} holds no delegation from party {data.party_id} "
            f"to record {data.use!r} consent",
        )
    if data.recording_id is not None and session.get(Recording, data.recording_id) is None:
        raise RegistryError("recording_id", f"no recording with id {data.recording_id}")
    if data.work_id is not None and session.get(Work, data.work_id) is None:
        raise RegistryError("work_id", f"no work with id {data.work_id}")
    if data.supersedes_id is not None:
        prior = session.get(Consent, data.supersedes_id)
        if prior is None or prior.party_id != data.party_id:
            raise RegistryError(
                "supersedes_id", f"no consent record {data.supersedes_id} of party {data.party_id}"
            )
    consent = Consent(
        party_id=data.party_id,
        scope=data.scope,
        recording_id=data.recording_id,
        work_id=data.work_id,
        use=data.use,
        decision=data.decision,
        terms=audit.canonical_json(data.terms) if data.terms else None,
        effective_from=data.effective_from or stamp,
        effective_until=data.effective_until,
        worldwide=not data.territories,
        recorded_by_id=recorded_by,
        evidence=data.evidence,
        supersedes_id=data.supersedes_id,
        recorded_at=stamp,
        territories=[ConsentTerritory(territory=t) for t in data.territories],
    )
    session.add(consent)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="consent.record",
        entity="consent",
        entity_id=consent.id,
        payload=consent_snapshot(consent),
    )
    return consent


def revoke_consent(
    session: Session,
    consent_id: int,
    actor: str,
    *,
    effective_from: datetime | None = None,
    recorded_by_id: int | None = None,
    evidence: str | None = None,
) -> Consent:
    """Revoke a consent record by appending a ``not_allowed`` record with the same reach."""
    prior = get_consent(session, consent_id)
    if prior.decision == "not_allowed":
        raise RegistryError("consent_id", f"consent record {consent_id} is already a refusal")
    return record_consent(
        session,
        ConsentIn(
            party_id=prior.party_id,
            use=prior.use,
            decision="not_allowed",
            scope=prior.scope,
            recording_id=prior.recording_id,
            work_id=prior.work_id,
            effective_from=effective_from,
            territories=tuple(t.territory for t in prior.territories),
            recorded_by_id=recorded_by_id,
            evidence=evidence,
            supersedes_id=prior.id,
        ),
        actor,
    )


def add_delegation(session: Session, data: DelegationIn, actor: str) -> Delegation:
    """Append a delegation record (a grant, or a withdrawal with ``granted`` false)."""
    get_party(session, data.principal_id, "principal_id")
    get_party(session, data.delegate_id, "delegate_id")
    stamp = now()
    delegation = Delegation(
        principal_id=data.principal_id,
        delegate_id=data.delegate_id,
        use=data.use,
        granted=data.granted,
        effective_from=data.effective_from or stamp,
        effective_until=data.effective_until,
        evidence=data.evidence,
        recorded_at=stamp,
    )
    session.add(delegation)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="delegation.add",
        entity="delegation",
        entity_id=delegation.id,
        payload=delegation_snapshot(delegation),
    )
    return delegation


def verify_state(session: Session) -> tuple[int, str | None]:
    """Compare every registry row with its last audited state; name the first that differs.

    The chain proves the log was not edited; this proves the tables were not edited behind it.
    """
    audited = audit.latest_payloads(session)
    checked = 0
    for entity, (model, snap) in SNAPSHOTS.items():
        for row in session.scalars(select(model).order_by(model.id)):
            checked += 1
            key = (entity, str(row.id))
            if key not in audited:
                return checked, f"{entity} {row.id} has no audit entry (written outside Attune)"
            if audit.canonical_json(snap(row)) != audit.canonical_json(audited.pop(key)):
                return checked, f"{entity} {row.id} differs from its last audited state (edited)"
    missing = sorted(k for k in audited if k[0] in SNAPSHOTS)
    if missing:
        kind, ident = missing[0]
        return checked, f"{kind} {ident} is audited but missing from its table (deleted)"
    return checked, None
