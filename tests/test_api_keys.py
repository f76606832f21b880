"""API keys: shown once, stored hashed, refused once revoked, every issue and revocation audited."""

from __future__ import annotations

import hashlib
import json

import pytest
from sqlalchemy import Engine, select

from attune.api.keys import (
    authenticate,
    bootstrap_admin_key,
    create_key,
    list_keys,
    revoke_key,
)
from attune.rights.models import ApiKey
from attune.rights.registry import NotFound, RegistryError
from attune.store.audit import AuditEntry, verify_chain
from attune.store.db import transaction
from tests import factory as f


def test_key_text_is_shown_once_and_only_the_secret_hash_is_stored(engine: Engine) -> None:
    with transaction(engine) as s:
        artist = f.party(s, "Mara Vell", "artist")
        key, text = create_key(s, "artist", artist.id, "phone", actor="test")
    scheme, prefix, secret = text.split("_", 2)
    assert (scheme, prefix) == ("att", key.prefix)
    assert len(secret) >= 40
    with transaction(engine) as s:
        stored = s.scalars(select(ApiKey)).one()
    assert stored.key_hash == hashlib.sha256(secret.encode()).hexdigest()
    assert secret not in (stored.prefix, stored.key_hash, stored.label)
    assert (stored.role, stored.party_id, stored.label) == ("artist", artist.id, "phone")


def test_authenticate_accepts_the_live_key_and_refuses_wrong_malformed_or_revoked(
    engine: Engine,
) -> None:
    with transaction(engine) as s:
        key, text = create_key(s, "admin", None, None, actor="test")
    prefix = key.prefix
    with transaction(engine) as s:
        found = authenticate(s, text)
        assert found is not None and found.id == key.id
        assert authenticate(s, f"  {text}\n") is not None
        for bad in ("", "att", "att__", f"att_{prefix}_", f"att_{prefix}_wrong", "xyz" + text[3:]):
            assert authenticate(s, bad) is None, bad
        assert authenticate(s, text.replace(prefix, "000000000000")) is None
        revoke_key(s, key.id, actor="test")
    with transaction(engine) as s:
        assert authenticate(s, text) is None


@pytest.mark.parametrize("role", ["artist", "rightsholder", "platform"])
def test_party_roles_need_a_party(engine: Engine, role: str) -> None:
    with transaction(engine) as s, pytest.raises(RegistryError) as err:
        create_key(s, role, None, None, actor="test")
    assert err.value.field == "party_id"
    with transaction(engine) as s, pytest.raises(RegistryError) as err:
        create_key(s, role, 999, None, actor="test")
    assert err.value.field == "party_id"


def test_unknown_role_is_refused(engine: Engine) -> None:
    with transaction(engine) as s, pytest.raises(RegistryError) as err:
        create_key(s, "superuser", None, None, actor="test")
    assert err.value.field == "role"


def test_issue_and_revocation_are_audited_without_secret_or_hash(engine: Engine) -> None:
    with transaction(engine) as s:
        key, text = create_key(s, "admin", None, "ops", actor="alice")
        revoke_key(s, key.id, actor="bob")
    with transaction(engine) as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.entity == "api_key")).all()
        stored_hash = s.scalars(select(ApiKey.key_hash)).one()
        assert verify_chain(s) == (2, None)
    assert [(e.action, e.actor, e.entity_id) for e in entries] == [
        ("api_key.create", "alice", str(key.id)),
        ("api_key.revoke", "bob", str(key.id)),
    ]
    secret = text.split("_", 2)[2]
    for e in entries:
        assert secret not in e.payload and stored_hash not in e.payload
        assert set(json.loads(e.payload)) == {
            "id",
            "prefix",
            "role",
            "party_id",
            "label",
            "created_at",
            "revoked_at",
        }
    assert json.loads(entries[1].payload)["revoked_at"] is not None


def test_revoking_twice_or_an_unknown_key_is_refused(engine: Engine) -> None:
    with transaction(engine) as s:
        key, _ = create_key(s, "admin", None, None, actor="test")
        revoke_key(s, key.id, actor="test")
    with transaction(engine) as s, pytest.raises(RegistryError):
        revoke_key(s, key.id, actor="test")
    with transaction(engine) as s, pytest.raises(NotFound):
        revoke_key(s, key.id + 1, actor="test")


def test_list_keys_can_leave_out_revoked_keys(engine: Engine) -> None:
    with transaction(engine) as s:
        create_key(s, "admin", None, "live", actor="test")
        dead, _ = create_key(s, "admin", None, "dead", actor="test")
        revoke_key(s, dead.id, actor="test")
    with transaction(engine) as s:
        assert [k.label for k in list_keys(s)] == ["live", "dead"]
        assert [k.label for k in list_keys(s, include_revoked=False)] == ["live"]


def test_bootstrap_creates_the_first_admin_key_only(engine: Engine) -> None:
    text = bootstrap_admin_key(engine)
    assert text is not None
    assert bootstrap_admin_key(engine) is None
    with transaction(engine) as s:
        key = authenticate(s, text)
        assert key is not None and key.role == "admin" and key.party_id is None
        assert len(list_keys(s)) == 1
