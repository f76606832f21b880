"""API keys: issued once as ``att_<prefix>_<secret>``, stored as a SHA-256 hash, audited."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from typing import Any, Literal, get_args

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from attune.rights import registry
from attune.rights.models import ApiKey
from attune.store import audit
from attune.store.db import transaction

KeyRole = Literal["artist", "rightsholder", "platform", "admin"]
KEY_ROLES: tuple[str, ...] = get_args(KeyRole)
SCHEME = "att"


def _digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def key_snapshot(key: ApiKey) -> dict[str, Any]:
    """A key as plain JSON data, never with its secret or hash (audit payloads, listings)."""
    return {
        "id": key.id,
        "prefix": key.prefix,
        "role": key.role,
        "party_id": key.party_id,
        "label": key.label,
        "created_at": key.created_at.isoformat(),
        "revoked_at": key.revoked_at.isoformat() if key.revoked_at else None,
    }


def create_key(
    session: Session, role: str, party_id: int | None, label: str | None, actor: str
) -> tuple[ApiKey, str]:
    """Issue a key and return it with its full text, which is shown this once and never stored."""
    if role not in KEY_ROLES:
        raise registry.RegistryError("role", f"{role!r} is not one of {', '.join(KEY_ROLES)}")
    if party_id is None and role != "admin":
        raise registry.RegistryError("party_id", f"{role} keys must belong to a party")
    if party_id is not None:
        registry.get_party(session, party_id)
    prefix = secrets.token_hex(6)
    secret = secrets.token_urlsafe(32)
    key = ApiKey(
        prefix=prefix,
        key_hash=_digest(secret),
        party_id=party_id,
        role=role,
        label=label,
        created_at=registry.now(),
    )
    session.add(key)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="api_key.create",
        entity="api_key",
        entity_id=key.id,
        payload=key_snapshot(key),
    )
    return key, f"{SCHEME}_{prefix}_{secret}"


def authenticate(session: Session, presented: str) -> ApiKey | None:
    """The live key whose text was presented, or None (malformed, unknown, wrong or revoked)."""
    scheme, _, rest = presented.strip().partition("_")
    prefix, _, secret = rest.partition("_")
    if scheme != SCHEME or not prefix or not secret:
        return None
    key = session.scalars(select(ApiKey).where(ApiKey.prefix == prefix)).first()
    # Hash and compare even for an unknown prefix, so timing does not tell which prefixes exist.
    expected = key.key_hash if key is not None else _digest("")
    matches = hmac.compare_digest(expected, _digest(secret))
    if key is None or not matches or key.revoked_at is not None:
        return None
    return key


def revoke_key(session: Session, key_id: int, actor: str) -> ApiKey:
    """Revoke a key for good (it stays listed, with the instant it was revoked) and audit it."""
    key = session.get(ApiKey, key_id)
    if key is None:
        raise registry.NotFound(f"no API key with id {key_id}")
    if key.revoked_at is not None:
        raise registry.RegistryError("key_id", f"API key {key_id} is already revoked")
    key.revoked_at = registry.now()
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="api_key.revoke",
        entity="api_key",
        entity_id=key.id,
        payload=key_snapshot(key),
    )
    return key


def list_keys(session: Session, include_revoked: bool = True) -> Sequence[ApiKey]:
    """Keys in id order, optionally only the live ones."""
    stmt = select(ApiKey).order_by(ApiKey.id)
    if not include_revoked:
        stmt = stmt.where(ApiKey.revoked_at.is_(None))
    return session.scalars(stmt).all()


def bootstrap_admin_key(engine: Engine) -> str | None:
    """Create the first admin key when no key exists yet; return its text, else None."""
    with transaction(engine) as session:
        if session.scalar(select(ApiKey.id).limit(1)) is not None:
            return None
        _, text = create_key(session, "admin", None, "bootstrap", actor="bootstrap")
        return text
