"""Hash-chained audit log: every write appends an entry whose SHA-256 covers the previous hash."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Integer, String, Text, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from attune.store.db import Base
from attune.store.types import UtcDateTime

GENESIS = "0" * 64


class AuditEntry(Base):
    """One audit entry: who did what to which entity, with the entity's state after the write."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(UtcDateTime())
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(60))
    entity: Mapped[str] = mapped_column(String(40))
    entity_id: Mapped[str] = mapped_column(String(60))
    payload: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))


def canonical_json(value: Any) -> str:
    """Serialise to one canonical JSON text (sorted keys, no spaces), the form that gets hashed."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    entity: str,
    entity_id: str,
    payload: str,
    prev_hash: str,
) -> str:
    """SHA-256 over the entry's content and the previous entry's hash."""
    body = canonical_json(
        {
            "seq": seq,
            "at": at.astimezone(UTC).isoformat(),
            "actor": actor,
            "action": action,
            "entity": entity,
            "entity_id": entity_id,
            "payload": payload,
            "prev": prev_hash,
        }
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _lock_chain(session: Session) -> None:
    """Serialise appenders so two writers never fork the chain."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(7123001)"))
    else:
        # Taking SQLite's write lock before reading the chain head: a no-op write does it.
        session.execute(text("UPDATE audit_log SET seq = seq WHERE 0"))


def append(
    session: Session,
    *,
    actor: str,
    action: str,
    entity: str,
    entity_id: object,
    payload: dict[str, Any],
) -> AuditEntry:
    """Append one entry to the chain inside the caller's transaction."""
    _lock_chain(session)
    session.flush()
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0] + 1, last[1]) if last else (1, GENESIS)
    at = datetime.now(UTC)
    body = canonical_json(payload)
    entry = AuditEntry(
        seq=seq,
        at=at,
        actor=actor,
        action=action,
        entity=entity,
        entity_id=str(entity_id),
        payload=body,
        prev_hash=prev,
        hash=entry_hash(seq, at, actor, action, entity, str(entity_id), body, prev),
    )
    session.add(entry)
    session.flush()
    return entry


@dataclass(frozen=True, slots=True)
class ChainProblem:
    """The first entry where the chain breaks, and why."""

    seq: int
    reason: str


def iter_entries(session: Session, batch: int = 5000) -> Iterator[AuditEntry]:
    """Stream the chain in order without loading it whole."""
    last = 0
    while True:
        rows = session.scalars(
            select(AuditEntry).where(AuditEntry.seq > last).order_by(AuditEntry.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify_chain(session: Session) -> tuple[int, ChainProblem | None]:
    """Walk the chain; return how many entries were checked and the first bad one, if any."""
    prev = GENESIS
    expected_seq = 1
    count = 0
    for e in iter_entries(session):
        if e.seq != expected_seq:
            return count, ChainProblem(expected_seq, f"entry {expected_seq} is missing")
        if e.prev_hash != prev:
            return count, ChainProblem(e.seq, "previous-hash link does not match entry before it")
        actual = entry_hash(
            e.seq, e.at, e.actor, e.action, e.entity, e.entity_id, e.payload, e.prev_hash
        )
        if actual != e.hash:
            return count, ChainProblem(e.seq, "content does not match its hash (entry was edited)")
        prev = e.hash
        expected_seq += 1
        count += 1
    return count, None


def latest_payloads(session: Session) -> dict[tuple[str, str], dict[str, Any]]:
    """The last audited state of every entity, keyed by (entity kind, entity id), in one pass."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for e in iter_entries(session):
        out[(e.entity, e.entity_id)] = json.loads(e.payload)
    return out
