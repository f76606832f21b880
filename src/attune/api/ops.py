"""Operators' routes: issue, list and revoke API keys, verify the audit log, report health."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, UploadFile
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import text

from attune import __version__
from attune.api import keys, responses
from attune.api.deps import AdminKey, DbSession, actor
from attune.api.responses import AuditReport, ChainProblemOut, Health, IssuedKey, KeyOut
from attune.rights import registry
from attune.rights.catalog_import import import_catalog
from attune.store import audit

router = APIRouter(tags=["operations"])


class KeyIn(BaseModel):
    """A key to issue: its role and, except for an admin key, the party it acts for."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: keys.KeyRole
    party_id: int | None = None
    label: str | None = Field(default=None, max_length=200)


@router.post("/v1/keys", status_code=201)
def create_key(data: KeyIn, key: AdminKey, session: DbSession) -> IssuedKey:
    """Issue a key; its full text is in this response only and is never stored."""
    issued, secret = keys.create_key(session, data.role, data.party_id, data.label, actor(key))
    return IssuedKey.model_validate({**keys.key_snapshot(issued), "key": secret})


@router.get("/v1/keys")
def list_keys(key: AdminKey, session: DbSession, include_revoked: bool = True) -> list[KeyOut]:
    """Every key in id order, without secrets."""
    return [responses.key(k) for k in keys.list_keys(session, include_revoked)]


@router.post("/v1/keys/{key_id}/revoke")
def revoke_key(key_id: int, key: AdminKey, session: DbSession) -> KeyOut:
    """Revoke a key: every later request with it gets 401."""
    return responses.key(keys.revoke_key(session, key_id, actor(key)))


@router.get("/v1/audit/verify")
def verify_audit(key: AdminKey, session: DbSession) -> AuditReport:
    """Check the audit hash chain, then every registry row against its last audited state."""
    entries, broken = audit.verify_chain(session)
    rows, drift = registry.verify_state(session)
    return AuditReport(
        ok=broken is None and drift is None,
        entries_checked=entries,
        chain_problem=ChainProblemOut(seq=broken.seq, reason=broken.reason) if broken else None,
        rows_checked=rows,
        state_problem=drift,
    )


@router.post("/v1/imports", status_code=201)
def import_file(
    file: UploadFile, key: AdminKey, session: DbSession, skip_invalid: bool = False,
    owner: str | None = None, format: str | None = None,
) -> dict[str, Any]:
    """Import a catalog file (CSV, JSON or DDEX ERN); all or nothing unless skip_invalid."""
    name = Path(file.filename or "upload").name
    with tempfile.TemporaryDirectory(prefix="attune-import-") as tmp:
        path = Path(tmp) / name
        with path.open("wb") as fh:
            shutil.copyfileobj(file.file, fh)
        report = import_catalog(session, path, fmt=format, skip_invalid=skip_invalid,
                                actor=actor(key), owner_ref=owner)
    data = report.as_dict()
    data["path"] = name
    return data


@router.get("/v1/health")
def health(session: DbSession) -> Health:
    """The service answers and its database too (no key needed)."""
    session.execute(text("SELECT 1"))
    return Health(status="ok", version=__version__)
