"""The demo world: real corpus works, partial licences and consent, audited, deterministic."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path
from random import Random

import pytest
from music21.common import getCorpusFilePath
from rich.console import Console
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from attune.demo import AS_OF, build_world, corpus_scores, render_summary, summarise
from attune.rights import registry
from attune.rights.identifiers import normalise_ipi_name, normalise_isni, normalise_iswc
from attune.rights.models import (
    USES,
    Agreement,
    Consent,
    Delegation,
    Party,
    PartyRole,
    Recording,
    Work,
)
from attune.rights.records import PartyIn
from attune.store import audit
from attune.store.db import make_engine, session_factory, transaction
from attune.store.migrate import upgrade

WORKS = 60
CORPUS = Path(getCorpusFilePath())


def _with_role(s: Session, role: str) -> list[Party]:
    return list(
        s.scalars(
            select(Party).where(
                Party.id.in_(select(PartyRole.party_id).where(PartyRole.role == role))
            )
        )
    )


def _fresh_sqlite(path: Path) -> Engine:
    engine = make_engine(f"sqlite:///{path}")
    upgrade(engine)
    return engine


def test_world_is_realistic_audited_and_partly_usable(engine: Engine) -> None:
    steps: list[tuple[int, int, str]] = []
    world = build_world(engine, works=WORKS, progress=lambda *step: steps.append(step))
    assert world.works == WORKS and world.recordings >= WORKS
    assert {what for _, _, what in steps} >= {"Registering works", "Recording consent"}
    assert all(0 <= done <= total for done, total, _ in steps)

    with session_factory(engine)() as s:
        people = [p for p in s.scalars(select(Party)) if p.kind == "person"]
        assert len(people) >= 50 and world.artists >= 40
        assert all({r.role for r in p.roles} & {"artist", "songwriter"} for p in people)
        assert any(p.aliases for p in people)
        for role, count in [("label", 4), ("publisher", 3), ("distributor", 2), ("platform", 2)]:
            assert len(_with_role(s, role)) == count, role
        isnis = [p.isni for p in s.scalars(select(Party)) if p.isni]
        ipis = [p.ipi for p in s.scalars(select(Party)) if p.ipi]
        assert len(isnis) >= 3 and len(ipis) >= 3
        assert [normalise_isni(i) for i in isnis] == isnis
        assert [normalise_ipi_name(i) for i in ipis] == ipis

        works = list(s.scalars(select(Work)))
        assert len(works) == WORKS
        for w in works:
            assert w.iswc is not None and normalise_iswc(w.iswc) == w.iswc
            assert sum((sh.share for sh in w.shares), Decimal(0)) == 100
            assert w.source is not None and w.source.startswith("music21:"), w.source
            path, _, number = w.source.removeprefix("music21:").partition("#")
            assert not path.startswith("essenFolksong"), "Essen is non-commercial"
            score = CORPUS / path
            assert score.is_file(), w.source
            if number:
                text = score.read_text(encoding="utf-8", errors="replace")
                assert re.search(rf"^X:\s*0*{number}\s*$", text, re.MULTILINE), w.source
        bach = [w for w in works if w.source and w.source.startswith("music21:bach/")]
        assert bach and all(
            f"(BWV {w.source.split('bwv')[1].removesuffix('.mxl')})" in w.title
            for w in bach
            if w.source
        )

        recordings = list(s.scalars(select(Recording)))
        assert any(any(a.role == "featured" for a in r.artists) for r in recordings)
        assert any(len(r.owners) > 1 for r in recordings)
        assert all(r.duration_ms and r.duration_ms > 60_000 for r in recordings)

        agreements = list(s.scalars(select(Agreement)))
        assert any(a.end_date is not None and a.end_date < AS_OF.date() for a in agreements)
        assert any(t.excluded for a in agreements for t in a.territories)
        assert any(not a.worldwide for a in agreements)
        assert any(a.model_versions for a in agreements)
        assert any(not a.covers_all and a.items for a in agreements)
        licensors = {a.licensor_id for a in agreements}
        assert any(d.id not in licensors for d in _with_role(s, "distributor"))

        consents = list(s.scalars(select(Consent)))
        assert {c.decision for c in consents} == {"allowed", "not_allowed", "constrained"}
        assert any(c.scope == "recording" and c.decision == "not_allowed" for c in consents)
        assert any(not c.worldwide for c in consents)
        by_id = {c.id: c for c in consents}
        revocations = [c for c in consents if c.supersedes_id is not None]
        assert len(revocations) == world.revocations > 0
        for r in revocations:
            prior = by_id[r.supersedes_id]  # type: ignore[index]
            assert r.decision == "not_allowed" and prior.decision != "not_allowed"
            assert (prior.party_id, prior.use) == (r.party_id, r.use) and r.id > prior.id
        delegated = [c for c in consents if c.recorded_by_id != c.party_id]
        assert delegated
        delegations = {(d.principal_id, d.delegate_id) for d in s.scalars(select(Delegation))}
        assert all((c.party_id, c.recorded_by_id) in delegations for c in delegated)

        entries, problem = audit.verify_chain(s)
        assert problem is None
        assert entries == s.scalar(select(func.count()).select_from(audit.AuditEntry))
        checked, drift = registry.verify_state(s)
        assert drift is None and checked == entries

    summaries = summarise(engine, AS_OF, "FR")
    assert [u.use for u in summaries] == list(USES)
    for u in summaries:
        assert u.recordings == world.recordings
        assert 0 < u.usable < u.recordings, u
        assert u.top_reasons and sum(r.count for r in u.top_reasons) <= u.excluded
        assert all(r.count > 0 and r.label.startswith(r.code) for r in u.top_reasons)
    named = [r for u in summaries for r in u.top_reasons if r.party_id is not None]
    assert named and all(f"(party {r.party_id})" in r.label for r in named)
    codes = {r.code for u in summaries for r in u.top_reasons}
    assert "no_agreement" in codes and codes & {"consent_refused", "consent_missing"}

    console = Console(record=True, width=200)
    console.print(render_summary(summaries))
    console.print(world)
    printed = console.export_text()
    assert all(use in printed for use in USES) and named[0].label in printed
    assert f"{world.works} works" in printed


def test_same_seed_builds_the_same_world(tmp_path: Path) -> None:
    def build(name: str) -> tuple[object, ...]:
        engine = _fresh_sqlite(tmp_path / name)
        world = build_world(engine, seed=11, works=40)
        with session_factory(engine)() as s:
            works = [registry.work_snapshot(w) for w in s.scalars(select(Work).order_by(Work.id))]
            recs = [registry.recording_snapshot(r) for r in registry.list_recordings(s)]
        summary = summarise(engine, AS_OF, None)
        engine.dispose()
        return world.recordings, world.consents, works, recs, summary

    assert build("a.db") == build("b.db")
    assert corpus_scores(40, Random(11)) != corpus_scores(40, Random(12))


def test_refuses_a_registry_that_already_holds_data(tmp_path: Path) -> None:
    engine = _fresh_sqlite(tmp_path / "busy.db")
    with transaction(engine) as s:
        registry.add_party(s, PartyIn(name="Someone"), "test")
    with pytest.raises(registry.RegistryError, match="database: already holds 1 parties"):
        build_world(engine, works=10)
