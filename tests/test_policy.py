"""The consent engine: default deny, agreement coverage, consent resolution, named reasons."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import Engine

from attune.rights import registry
from attune.rights.policy import decide
from attune.rights.records import ConsentIn, DelegationIn
from attune.store.db import transaction
from tests import factory as f

DAY = date(2026, 6, 1)


@pytest.fixture
def world(engine: Engine) -> dict[str, int]:
    """A label-owned recording of one artist's own song, licensed worldwide for training."""
    with transaction(engine) as s:
        label = f.party(s, "Northbound Records", "label", kind="organisation")
        platform = f.party(s, "Tonal AI", "platform", kind="organisation")
        artist = f.party(s, "Mara Vell", "artist", "songwriter")
        w = f.work(s, "Harbour Lights", artist)
        rec = f.recording(s, "Harbour Lights", w, [label], [artist])
        agr = f.agreement(s, label, platform, uses=("train", "sample"), excluded=("US",))
        grant = f.consent(s, artist)
        return {
            "label": label.id,
            "platform": platform.id,
            "artist": artist.id,
            "work": w.id,
            "rec": rec.id,
            "agreement": agr.id,
            "grant": grant.id,
        }


def test_allowed_names_agreement_and_consent(engine: Engine, world: dict[str, int]) -> None:
    with transaction(engine) as s:
        d = decide(s, "train", world["rec"], DAY, "FR")
    assert d.allowed
    assert {(r.code, r.agreement_id, r.consent_id) for r in d.reasons} == {
        ("agreement_covers", world["agreement"], None),
        ("consent_allowed", None, world["grant"]),
    }


def test_default_deny_without_agreement_or_consent(engine: Engine) -> None:
    with transaction(engine) as s:
        label = f.party(s, "L", "label", kind="organisation")
        artist = f.party(s, "A", "artist")
        rec = f.recording(s, "R", f.work(s, "W", artist), [label], [artist])
        d = decide(s, "train", rec, DAY, "FR")
    assert not d.allowed
    assert [r.code for r in d.reasons] == ["no_agreement", "consent_missing"]
    assert d.reasons[0].party_id == label.id
    assert "licensed nothing" in d.reasons[0].message


@pytest.mark.parametrize(
    ("use", "territory", "day", "gap"),
    [
        ("voice_likeness", "FR", DAY, "does not license 'voice_likeness'"),
        ("train", "US", DAY, "excludes US"),
        ("train", "FR", date(2025, 12, 31), "starts 2026-01-01"),
    ],
)
def test_agreement_gap_is_explained(
    engine: Engine, world: dict[str, int], use: str, territory: str, day: date, gap: str
) -> None:
    with transaction(engine) as s:
        if use != "train":
            f.consent(s, registry.get_party(s, world["artist"]), use=use)
        d = decide(s, use, world["rec"], day, territory)
    assert not d.allowed
    first = d.reasons[0]
    assert first.code == "no_agreement" and first.party_id == world["label"]
    assert f"agreement {world['agreement']} {gap}" in first.message


def test_expired_and_listed_agreements(engine: Engine, world: dict[str, int]) -> None:
    with transaction(engine) as s:
        label = registry.get_party(s, world["label"])
        platform = registry.get_party(s, world["platform"])
        artist = registry.get_party(s, world["artist"])
        f.consent(s, artist, use="remix_stems")
        other = f.recording(s, "B-side", f.work(s, "B", artist), [label], [artist])
        listed = f.agreement(
            s,
            label,
            platform,
            uses=("remix_stems",),
            territories=("DE", "FR"),
            end=date(2026, 12, 31),
            covers_all=False,
            recording_ids=(world["rec"],),
        )
        assert decide(s, "remix_stems", world["rec"], DAY, "DE").allowed
        assert not decide(s, "remix_stems", world["rec"], DAY, "IT").allowed
        late = decide(s, "remix_stems", world["rec"], date(2027, 1, 1), "DE")
        assert f"agreement {listed.id} ended 2026-12-31" in late.reasons[0].message
        unlisted = decide(s, "remix_stems", other.id, DAY, "DE")
        assert "does not list this recording" in unlisted.reasons[0].message


def test_every_master_owner_needs_an_agreement(engine: Engine, world: dict[str, int]) -> None:
    with transaction(engine) as s:
        label = registry.get_party(s, world["label"])
        artist = registry.get_party(s, world["artist"])
        co_owner = f.party(s, "Indie Co", "label", kind="organisation")
        rec = f.recording(
            s, "Co-owned", registry.find_work(s, world["work"]), [label, co_owner], [artist]
        )
        d = decide(s, "train", rec, DAY, "FR")
    assert not d.allowed
    assert [(r.code, r.party_id) for r in d.reasons] == [("no_agreement", co_owner.id)]


def test_every_artist_and_writer_must_opt_in(engine: Engine, world: dict[str, int]) -> None:
    with transaction(engine) as s:
        label = registry.get_party(s, world["label"])
        artist = registry.get_party(s, world["artist"])
        guest = f.party(s, "Guest", "artist")
        lyricist = f.party(s, "Lyricist", "songwriter")
        w = f.work(s, "Duet", artist, lyricist)
        rec = f.recording(s, "Duet", w, [label], [artist], featured=[guest])
        d = decide(s, "train", rec, DAY, "FR")
        assert [(r.code, r.party_id) for r in d.reasons] == [
            ("consent_missing", guest.id),
            ("consent_missing", lyricist.id),
        ]
        f.consent(s, guest)
        refusal = f.consent(s, lyricist, "not_allowed")
        d = decide(s, "train", rec, DAY, "FR")
        assert [(r.code, r.consent_id) for r in d.reasons] == [("consent_refused", refusal.id)]


def test_revocation_is_a_new_record_and_wins_from_its_date(
    engine: Engine, world: dict[str, int]
) -> None:
    with transaction(engine) as s:
        revoked = registry.revoke_consent(
            s, world["grant"], "test", effective_from=datetime(2026, 5, 1, tzinfo=UTC)
        )
        assert revoked.supersedes_id == world["grant"]
        assert registry.get_consent(s, world["grant"]).decision == "allowed"
        assert decide(s, "train", world["rec"], date(2026, 4, 30), "FR").allowed
        d = decide(s, "train", world["rec"], date(2026, 5, 2), "FR")
    assert not d.allowed
    assert d.reasons[0].code == "consent_refused" and d.reasons[0].consent_id == revoked.id


def test_same_instant_refusal_wins_over_grant(engine: Engine, world: dict[str, int]) -> None:
    with transaction(engine) as s:
        artist = registry.get_party(s, world["artist"])
        refusal = f.consent(s, artist, "not_allowed", since=datetime(2026, 3, 1))
        f.consent(s, artist, "allowed", since=datetime(2026, 3, 1))
        d = decide(s, "train", world["rec"], DAY, "FR")
    assert not d.allowed and d.reasons[0].consent_id == refusal.id


def test_latest_record_wins_regardless_of_scope(engine: Engine, world: dict[str, int]) -> None:
    with transaction(engine) as s:
        artist = registry.get_party(s, world["artist"])
        only_this = f.consent(
            s,
            artist,
            "not_allowed",
            since=datetime(2026, 2, 1),
            scope="recording",
            recording_id=world["rec"],
        )
        assert decide(s, "train", world["rec"], DAY, "FR").reasons[0].consent_id == only_this.id
        again = f.consent(s, artist, "allowed", since=datetime(2026, 4, 1))
        d = decide(s, "train", world["rec"], DAY, "FR")
    assert d.allowed and again.id in {r.consent_id for r in d.reasons}


def test_consent_limited_in_time_and_territory(engine: Engine, world: dict[str, int]) -> None:
    with transaction(engine) as s:
        artist = registry.get_party(s, world["artist"])
        f.consent(
            s,
            artist,
            "not_allowed",
            since=datetime(2026, 2, 1),
            effective_until=datetime(2026, 3, 1),
            territories=("FR",),
        )
        assert not decide(s, "train", world["rec"], date(2026, 2, 15), "FR").allowed
        assert decide(s, "train", world["rec"], date(2026, 2, 15), "DE").allowed
        assert decide(s, "train", world["rec"], date(2026, 3, 2), "FR").allowed


def test_no_territory_means_everywhere(engine: Engine, world: dict[str, int]) -> None:
    with transaction(engine) as s:
        d = decide(s, "train", world["rec"], DAY, None)
        assert not d.allowed and "does not cover every territory" in d.reasons[0].message
        label = registry.get_party(s, world["label"])
        f.agreement(s, label, registry.get_party(s, world["platform"]))
        assert decide(s, "train", world["rec"], DAY, None).allowed
        f.consent(
            s,
            registry.get_party(s, world["artist"]),
            "not_allowed",
            since=datetime(2026, 2, 1),
            territories=("JP",),
        )
        assert not decide(s, "train", world["rec"], DAY, None).allowed


def test_constrained_consent_allows_and_carries_terms(
    engine: Engine, world: dict[str, int]
) -> None:
    with transaction(engine) as s:
        c = f.consent(
            s,
            registry.get_party(s, world["artist"]),
            "constrained",
            since=datetime(2026, 2, 1),
            terms={"no_vocals": True},
        )
        d = decide(s, "train", world["rec"], DAY, "FR")
    assert d.allowed and d.terms == ({"consent_id": c.id, "no_vocals": True},)


def test_pinned_agreement_needs_its_model_version(engine: Engine, world: dict[str, int]) -> None:
    with transaction(engine) as s:
        label = registry.get_party(s, world["label"])
        artist = registry.get_party(s, world["artist"])
        f.consent(s, artist, use="style_reference")
        pinned = f.agreement(
            s,
            label,
            registry.get_party(s, world["platform"]),
            uses=("style_reference",),
            model_versions=("tonal-2.1",),
        )
        unpinned = decide(s, "style_reference", world["rec"], DAY, "FR")
        assert f"agreement {pinned.id} is pinned to model versions tonal-2.1" in (
            unpinned.reasons[0].message
        )
        assert decide(
            s, "style_reference", world["rec"], DAY, "FR", model_version="tonal-2.1"
        ).allowed
        assert not decide(
            s, "style_reference", world["rec"], DAY, "FR", model_version="tonal-3"
        ).allowed


def test_delegate_records_consent_only_with_delegation(
    engine: Engine, world: dict[str, int]
) -> None:
    with transaction(engine) as s:
        data = ConsentIn(
            party_id=world["artist"],
            use="sample",
            decision="allowed",
            recorded_by_id=world["label"],
        )
        with pytest.raises(registry.RegistryError, match="no delegation"):
            registry.record_consent(s, data, "test")
    with transaction(engine) as s:
        registry.add_delegation(
            s,
            DelegationIn(
                principal_id=world["artist"],
                delegate_id=world["label"],
                use="sample",
                effective_from=datetime(2026, 1, 1),
            ),
            "test",
        )
        c = registry.record_consent(s, data, "test")
        assert c.recorded_by_id == world["label"]
        registry.add_delegation(
            s,
            DelegationIn(
                principal_id=world["artist"],
                delegate_id=world["label"],
                use="sample",
                granted=False,
            ),
            "test",
        )
        with pytest.raises(registry.RegistryError, match="no delegation"):
            registry.record_consent(s, data, "test")
