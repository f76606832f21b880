"""The prompt gate: naming an artist for style, or remixing a recording, needs that consent."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine

from attune.generate.gate import check_prompt, named_parties
from attune.rights import registry
from attune.rights.records import PartyIn
from attune.store.db import transaction
from tests import factory

AT = datetime(2026, 6, 1, tzinfo=UTC)


def test_names_and_aliases_are_found_as_whole_words_ignoring_case_and_accents(
    engine: Engine,
) -> None:
    with transaction(engine) as s:
        zoe = registry.add_party(
            s, PartyIn(name="Zoë Marchetti", kind="person", roles=("artist",),
                       aliases=("Low Lantern",)), "test")
        factory.party(s, "Ann", "artist")  # too short a name to match inside words
        label = factory.party(s, "Harbourlight", "label", kind="organisation")
        found = named_parties(s, "a song like zoe marchetti meets LOW   lantern, played by Anne")
        assert found == {zoe.id: "Zoë Marchetti"}
        assert named_parties(s, "something lowlanterns would like") == {}
        # Labels are not style references: naming one asks for nothing.
        assert label.id not in named_parties(s, "in the Harbourlight house style")


def test_style_prompt_needs_the_named_partys_style_consent(engine: Engine) -> None:
    with transaction(engine) as s:
        yes = factory.party(s, "Idris Vellacott", "artist")
        no = factory.party(s, "Noor Ashgrove", "songwriter")
        silent = factory.party(s, "Tobias Thornquist", "artist")
        picky = factory.party(s, "Esme Halvorsen", "artist")
        factory.consent(s, yes, "allowed", use="style_reference")
        granted = factory.consent(s, no, "allowed", use="style_reference")
        revoked = registry.revoke_consent(s, granted.id, "test",
                                          effective_from=datetime(2026, 3, 1, tzinfo=UTC))
        factory.consent(s, picky, "constrained", use="style_reference",
                        terms={"no_name_in_prompts": True})

        ok = check_prompt(s, "a ballad in the style of Idris Vellacott", at=AT)
        assert ok.allowed and ok.named_parties == (yes.id,)
        assert ok.reasons[0].code == "style_consent_allowed"

        refused = check_prompt(s, "Noor Ashgrove meets Tobias Thornquist", at=AT)
        assert not refused.allowed
        codes = {r.party_id: r for r in refused.reasons}
        assert codes[no.id].code == "style_consent_refused"
        assert codes[no.id].consent_id == revoked.id
        assert f"consent record {revoked.id}" in refused.refusal()
        assert codes[silent.id].code == "style_consent_missing"
        assert "'Tobias Thornquist'" in refused.refusal()

        named = check_prompt(s, "like Esme Halvorsen", at=AT)
        assert not named.allowed
        assert named.reasons[0].code == "style_name_forbidden"
        assert "forbids using their name" in named.refusal()

        # Before the revocation the same prompt naming only Noor was fine.
        assert check_prompt(s, "Noor Ashgrove", at=datetime(2026, 2, 1, tzinfo=UTC)).allowed


def test_a_prompt_naming_nobody_passes_with_no_reasons(engine: Engine) -> None:
    with transaction(engine) as s:
        factory.party(s, "Wren Carrow", "artist")
        decision = check_prompt(s, "a chorale in the style of Bach, 8 bars", at=AT)
        assert decision.allowed and decision.reasons == () and decision.refusal() == ""


def test_remix_needs_the_engines_remix_stems_decision(engine: Engine) -> None:
    with transaction(engine) as s:
        label = factory.party(s, "Northwick Sound", "label", kind="organisation")
        platform = factory.party(s, "Chordwell AI", "platform", kind="organisation")
        writer = factory.party(s, "Lior Gallimore", "songwriter")
        artist = factory.party(s, "Calla Dunmore", "artist")
        w = factory.work(s, "Harbour Song", writer)
        rec = factory.recording(s, "Harbour Song", w, [label], [artist])
        factory.agreement(s, label, platform, uses=("remix_stems",))
        factory.consent(s, writer, "allowed", use="remix_stems")

        refused = check_prompt(s, f"a remix of {rec.isrc}", at=AT, licensee_id=platform.id)
        assert not refused.allowed and refused.remixed_recordings == (rec.id,)
        assert any(r.code == "remix_consent_missing" and r.party_id == artist.id
                   for r in refused.reasons)
        assert "'Calla Dunmore'" in refused.refusal() and "remix_stems" in refused.refusal()

        factory.consent(s, artist, "allowed", use="remix_stems")
        allowed = check_prompt(s, "make it dance", remix_of=rec.id, at=AT,
                               licensee_id=platform.id)
        assert allowed.allowed and allowed.reasons[0].code == "remix_allowed"
        # Another licensee has no agreement: the engine refuses for the master owner.
        other = factory.party(s, "Sonarium Labs", "platform", kind="organisation")
        assert not check_prompt(s, "x", remix_of=rec.isrc, at=AT, licensee_id=other.id).allowed


def test_unknown_recording_is_an_error_not_a_pass(engine: Engine) -> None:
    with transaction(engine) as s, pytest.raises(LookupError, match="GB-XXX-26-00001"):
        check_prompt(s, "a remix of GB-XXX-26-00001", at=AT)
