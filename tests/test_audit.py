"""The hash-chained audit log: every write chains; edits, deletions and reorders are caught."""

from __future__ import annotations

import itertools
import threading

from sqlalchemy import Engine, text

from attune.rights import registry
from attune.store import audit
from attune.store.db import transaction
from tests import factory as f


def _world(engine: Engine) -> None:
    with transaction(engine) as s:
        label = f.party(s, "Northbound", "label", kind="organisation")
        artist = f.party(s, "Mara", "artist", "songwriter")
        w = f.work(s, "Song", artist)
        f.recording(s, "Song", w, [label], [artist])
        f.agreement(s, label, f.party(s, "Tonal", "platform", kind="organisation"))
        f.consent(s, artist)


def test_each_write_appends_a_chained_entry(engine: Engine) -> None:
    _world(engine)
    with transaction(engine) as s:
        entries = list(audit.iter_entries(s))
        assert [e.action for e in entries] == [
            "party.add",
            "party.add",
            "work.add",
            "recording.add",
            "party.add",
            "agreement.add",
            "consent.record",
        ]
        assert entries[0].prev_hash == audit.GENESIS
        assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(entries))
        assert audit.verify_chain(s) == (7, None)
        assert registry.verify_state(s) == (7, None)


def test_edited_entry_is_named(engine: Engine) -> None:
    _world(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE audit_log SET payload = '{}' WHERE seq = 4"))
    with transaction(engine) as s:
        count, problem = audit.verify_chain(s)
    assert count == 3 and problem is not None and problem.seq == 4
    assert "edited" in problem.reason


def test_deleted_entry_is_named(engine: Engine) -> None:
    _world(engine)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_log WHERE seq = 5"))
    with transaction(engine) as s:
        _, problem = audit.verify_chain(s)
    assert problem is not None and problem.seq == 5 and "missing" in problem.reason


def test_rehashed_forgery_breaks_the_next_link(engine: Engine) -> None:
    _world(engine)
    with transaction(engine) as s:
        e = s.get(audit.AuditEntry, 3)
        assert e is not None
        e.payload = '{"title":"forged"}'
        e.hash = audit.entry_hash(
            e.seq, e.at, e.actor, e.action, e.entity, e.entity_id, e.payload, e.prev_hash
        )
    with transaction(engine) as s:
        _, problem = audit.verify_chain(s)
    assert problem is not None and problem.seq == 4 and "previous-hash" in problem.reason


def test_direct_table_edits_are_found_by_state_check(engine: Engine) -> None:
    _world(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE recording_owners SET share = 50000000"))
    with transaction(engine) as s:
        assert audit.verify_chain(s)[1] is None
        _, problem = registry.verify_state(s)
    assert problem == "recording 1 differs from its last audited state (edited)"
    with engine.begin() as conn:
        conn.execute(text("UPDATE recording_owners SET share = 100000000"))
        conn.execute(text("DELETE FROM consents"))
    with transaction(engine) as s:
        assert registry.verify_state(s)[1] == (
            "consent 1 is audited but missing from its table (deleted)"
        )


def test_concurrent_writers_never_fork_the_chain(engine: Engine) -> None:
    errors: list[BaseException] = []

    def write(prefix: str) -> None:
        try:
            for i in range(10):
                with transaction(engine) as s:
                    f.party(s, f"{prefix}{i}", "artist")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(p,)) for p in "abc"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    with transaction(engine) as s:
        assert audit.verify_chain(s) == (30, None)
