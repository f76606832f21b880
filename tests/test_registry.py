"""Registry writes: validation with named fields, exact shares, references, migrations."""

from __future__ import annotations

from decimal import Decimal

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, func, inspect, select

from attune.rights import registry
from attune.rights.models import Recording, Work
from attune.rights.records import AgreementIn, ConsentIn, PartyIn, RecordingIn, ShareIn, WorkIn
from attune.store.audit import AuditEntry
from attune.store.db import Base, transaction
from attune.store.migrate import downgrade, upgrade
from tests import factory as f


def test_party_identifiers_are_checked_and_normalised(engine: Engine) -> None:
    with transaction(engine) as s:
        p = registry.add_party(
            s,
            PartyIn(
                name="  Brian May ",
                roles=("songwriter", "artist", "artist"),
                isni="0000 0001 2146 438X",
                ipi="87038166",
                aliases=("Bri",),
            ),
            "t",
        )
        assert (p.name, p.isni, p.ipi) == ("Brian May", "000000012146438X", "00087038166")
        assert [r.role for r in p.roles] == ["artist", "songwriter"]
        assert registry.find_party(s, "bri").id == p.id
        assert registry.find_party(s, "00087038166").id == p.id
    with pytest.raises(ValidationError, match="ipi"):
        PartyIn(name="X", ipi="00119750560")
    with transaction(engine) as s, pytest.raises(registry.RegistryError, match="isni"):
        registry.add_party(s, PartyIn(name="Twin", isni="000000012146438X"), "t")


def test_work_shares_must_total_exactly_100(engine: Engine) -> None:
    with transaction(engine) as s:
        a, b = f.party(s, "A", "songwriter"), f.party(s, "B", "publisher")
        with pytest.raises(ValidationError, match=r"total 99\.999999%"):
            WorkIn(
                title="W",
                shares=(
                    ShareIn(party_id=a.id, share=Decimal("33.333333")),
                    ShareIn(party_id=b.id, role="publisher", share=Decimal("66.666666")),
                ),
            )
        with pytest.raises(ValidationError, match="at least one writer"):
            WorkIn(title="W", shares=(ShareIn(party_id=b.id, role="publisher", share=100),))
        w = registry.add_work(
            s,
            WorkIn(
                title="W",
                iswc="T-034.524.680-1",
                shares=(
                    ShareIn(party_id=a.id, share=Decimal("33.333334")),
                    ShareIn(party_id=b.id, role="publisher", share=Decimal("66.666666")),
                ),
            ),
            "t",
        )
        wid = w.id
    with transaction(engine) as s:
        stored = s.get(Work, wid)
        assert stored is not None
        assert sum(sh.share for sh in stored.shares) == Decimal(100)
        assert [sh.share for sh in stored.shares] == [Decimal("33.333334"), Decimal("66.666666")]


def test_unknown_references_name_the_field(engine: Engine) -> None:
    with transaction(engine) as s:
        label = f.party(s, "L", "label", kind="organisation")
        bad = RecordingIn.model_validate(
            {
                "title": "R",
                "isrc": "GBATT2699999",
                "work_id": 42,
                "owners": [{"party_id": label.id, "share": 100}],
            }
        )
        with pytest.raises(registry.RegistryError, match="work_id: no work with id 42"):
            registry.add_recording(s, bad, "t")
        with pytest.raises(registry.RegistryError, match=r"artists\[0\].party_id"):
            registry.add_recording(
                s,
                RecordingIn.model_validate(
                    {
                        **bad.model_dump(),
                        "work_id": None,
                        "artists": [{"party_id": 77, "role": "main"}],
                    }
                ),
                "t",
            )


def test_refused_write_leaves_nothing(engine: Engine) -> None:
    with transaction(engine) as s:
        f.party(s, "L", "label", kind="organisation")
    with pytest.raises(registry.RegistryError), transaction(engine) as s:
        f.party(s, "Half-written", "artist")
        registry.record_consent(s, ConsentIn(party_id=99, use="train", decision="allowed"), "t")
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(AuditEntry)) == 1
        assert [p.name for p in registry.list_parties(s)] == ["L"]


def test_duplicate_isrc_is_refused(engine: Engine) -> None:
    with transaction(engine) as s:
        label = f.party(s, "L", "label", kind="organisation")
        rec = f.recording(s, "R", None, [label], [])
        again = RecordingIn(
            title="R2", isrc=rec.isrc, owners=({"party_id": label.id, "share": 100},)
        )
        with pytest.raises(registry.RegistryError, match=f"isrc: {rec.isrc} is already"):
            registry.add_recording(s, again, "t")
        assert s.scalar(select(func.count()).select_from(Recording)) == 1


def test_agreement_input_rules() -> None:
    base = {"licensor_id": 1, "licensee_id": 2, "uses": ["train"], "start_date": "2026-01-01"}
    with pytest.raises(ValidationError, match="worldwide"):
        AgreementIn.model_validate(base)
    with pytest.raises(ValidationError, match="only a worldwide agreement has exclusions"):
        AgreementIn.model_validate({**base, "territories": ["FR"], "excluded_territories": ["DE"]})
    with pytest.raises(ValidationError, match="ends before it starts"):
        AgreementIn.model_validate({**base, "worldwide": True, "end_date": "2025-01-01"})
    with pytest.raises(ValidationError, match="ai_revenue_share"):
        AgreementIn.model_validate({**base, "worldwide": True, "ai_revenue_share": "1.5"})
    ok = AgreementIn.model_validate({**base, "territories": ["fr", "DE", "FR"]})
    assert ok.territories == ("DE", "FR")


def test_migrations_upgrade_downgrade_and_match_models(engine: Engine) -> None:
    tables = {t.name for t in Base.metadata.sorted_tables}
    assert tables <= set(inspect(engine).get_table_names())
    downgrade(engine, "base")
    assert not tables & set(inspect(engine).get_table_names())
    upgrade(engine)
    assert tables <= set(inspect(engine).get_table_names())
    with transaction(engine) as s:
        f.party(s, "After migration", "artist")


def test_outer_rollback_undoes_a_released_savepoint(engine: Engine) -> None:
    class Stop(Exception):
        pass

    with pytest.raises(Stop), transaction(engine) as s:
        with s.begin_nested():
            f.party(s, "Kept only in the savepoint", "artist")
        raise Stop
    with transaction(engine) as s:
        assert list(registry.list_parties(s)) == []


def test_migrations_accept_a_socket_url_with_percent_escapes() -> None:
    from attune.store.db import make_engine
    from attune.store.migrate import alembic_config

    eng = make_engine("postgresql+psycopg://u@/db?host=%2Fvar%2Frun%2Fpostgresql")
    assert alembic_config(eng).get_main_option("sqlalchemy.url") == (
        "postgresql+psycopg://u@/db?host=%2Fvar%2Frun%2Fpostgresql"
    )
    eng.dispose()
