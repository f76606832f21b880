"""Consent export: TDM·AI declarations and CAWG training-mining entries follow the consent gate."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from sqlalchemy import Engine

from attune.rights import registry
from attune.rights.consent_export import (
    cawg_training_mining,
    iter_tdmai_declarations,
    tdmai_declaration,
)
from attune.store.db import transaction
from tests import factory as f

DAY = date(2026, 6, 1)
INFERENCE = ("style_reference", "voice_likeness", "remix_stems", "sample")
HASH = "ab" * 32


@pytest.fixture
def world(engine: Engine) -> dict[str, int]:
    """A label-owned recording of one artist's song, licensed worldwide for every AI use."""
    with transaction(engine) as s:
        label = f.party(s, "Northbound Records", "label", kind="organisation")
        platform = f.party(s, "Tonal AI", "platform", kind="organisation")
        artist = f.party(s, "Mara Vell", "artist", "songwriter")
        rec = f.recording(
            s, "Harbour Lights", f.work(s, "Harbour Lights", artist), [label], [artist]
        )
        rec.content_hash = HASH
        f.agreement(s, label, platform, uses=("train", *INFERENCE, "data_mining"))
        grant = f.consent(s, artist, use="train")
        return {"rec": rec.id, "artist": artist.id, "grant": grant.id}


def flags(declaration: dict[str, object]) -> dict[str, object]:
    return {k: declaration[k] for k in ("all", "train-ai", "train-genai", "ai-use")}


def uses(assertion: dict[str, dict[str, dict[str, str]]]) -> dict[str, str]:
    return {k: v["use"] for k, v in assertion["entries"].items()}


def test_flags_follow_decide_and_flip_after_revocation(
    engine: Engine, world: dict[str, int]
) -> None:
    with transaction(engine) as s:
        before = tdmai_declaration(s, world["rec"], DAY)
        cawg_before = cawg_training_mining(s, world["rec"], DAY)
    assert (before["version"], before["intent"]) == ("1.0", "activate")
    assert flags(before) == {
        "all": "false",
        "train-ai": "true",
        "train-genai": "true",
        "ai-use": "false",
    }
    train = before["x-attune"]["uses"]["train"]
    assert train["allowed"] is True
    assert world["grant"] in {r["consent_id"] for r in train["reasons"]}
    assert uses(cawg_before) == {
        "cawg.ai_generative_training": "allowed",
        "cawg.ai_training": "allowed",
        "cawg.ai_inference": "notAllowed",
        "cawg.data_mining": "notAllowed",
        "attune.train": "allowed",
        "attune.style_reference": "notAllowed",
        "attune.voice_likeness": "notAllowed",
        "attune.remix_stems": "notAllowed",
        "attune.sample": "notAllowed",
    }

    with transaction(engine) as s:
        revocation = registry.revoke_consent(
            s, world["grant"], "test", effective_from=datetime(2026, 5, 1)
        )
    with transaction(engine) as s:
        after = tdmai_declaration(s, registry.find_recording(s, world["rec"]), DAY)
        cawg_after = cawg_training_mining(s, world["rec"], DAY)
        earlier = tdmai_declaration(s, world["rec"], date(2026, 4, 1))
    assert flags(after) == {
        "all": "false",
        "train-ai": "false",
        "train-genai": "false",
        "ai-use": "false",
    }
    refusal = after["x-attune"]["uses"]["train"]["reasons"]
    assert [(r["code"], r["consent_id"]) for r in refusal] == [("consent_refused", revocation.id)]
    assert set(uses(cawg_after).values()) == {"notAllowed"}
    assert earlier["train-ai"] == "true"  # the export is as of a date


def test_every_use_allowed_makes_all_true(engine: Engine, world: dict[str, int]) -> None:
    with transaction(engine) as s:
        artist = registry.get_party(s, world["artist"])
        for use in (*INFERENCE[:3], "data_mining"):
            f.consent(s, artist, use=use)
        assert tdmai_declaration(s, world["rec"], DAY)["ai-use"] == "false"  # sample missing
        f.consent(s, artist, use="sample")
        declaration = tdmai_declaration(s, world["rec"], DAY)
        assert set(uses(cawg_training_mining(s, world["rec"], DAY)).values()) == {"allowed"}
    assert flags(declaration) == {
        "all": "true",
        "train-ai": "true",
        "train-genai": "true",
        "ai-use": "true",
    }


def test_constrained_consent_is_constrained_in_cawg_and_false_in_tdmai(engine: Engine) -> None:
    with transaction(engine) as s:
        label = f.party(s, "L", "label", kind="organisation")
        platform = f.party(s, "P", "platform", kind="organisation")
        artist = f.party(s, "A", "artist", "songwriter")
        rec = f.recording(s, "R", f.work(s, "W", artist), [label], [artist])
        f.agreement(s, label, platform)
        grant = f.consent(s, artist, "constrained", terms={"attribution": "required"})
        declaration = tdmai_declaration(s, rec, DAY)
        assertion = cawg_training_mining(s, rec, DAY)
    assert declaration["train-ai"] == "false"
    assert declaration["x-attune"]["uses"]["train"]["terms"] == [
        {"consent_id": grant.id, "attribution": "required"}
    ]
    entry = assertion["entries"]["cawg.ai_generative_training"]
    assert entry == {
        "use": "constrained",
        "constraint_info": f'[{{"attribution":"required","consent_id":{grant.id}}}]',
    }


def test_default_deny_without_agreement_or_consent(engine: Engine) -> None:
    with transaction(engine) as s:
        label = f.party(s, "L", "label", kind="organisation")
        rec = f.recording(s, "R", None, [label], [])
        declaration = tdmai_declaration(s, rec.isrc, DAY)
        assertion = cawg_training_mining(s, rec.isrc, DAY)
    assert set(flags(declaration).values()) == {"false"}
    assert set(uses(assertion).values()) == {"notAllowed"}
    codes = [r["code"] for r in declaration["x-attune"]["uses"]["train"]["reasons"]]
    assert codes == ["no_agreement", "no_artist", "no_work"]


def test_declaration_names_the_recording_without_an_iscc(
    engine: Engine, world: dict[str, int]
) -> None:
    with transaction(engine) as s:
        rec = registry.find_recording(s, world["rec"])
        declaration = tdmai_declaration(s, rec, DAY)
    extra = declaration["x-attune"]
    assert "iscc" not in declaration
    assert (extra["recording_id"], extra["isrc"], extra["content_hash"]) == (rec.id, rec.isrc, HASH)
    assert extra["iscc"] is None and "does not compute an ISCC" in extra["note"]
    assert extra["at"] == "2026-06-01T00:00:00+00:00"
    assert set(extra["uses"]) == {"train", *INFERENCE, "data_mining"}


def test_catalog_export_yields_one_declaration_per_recording(
    engine: Engine, world: dict[str, int]
) -> None:
    with transaction(engine) as s:
        label = f.party(s, "Other Label", "label", kind="organisation")
        others = [f.recording(s, f"Track {i}", None, [label], []) for i in range(4)]
        declarations = list(iter_tdmai_declarations(s, DAY, batch=2))
    assert [d["x-attune"]["recording_id"] for d in declarations] == [
        world["rec"],
        *(r.id for r in others),
    ]
    assert [d["train-ai"] for d in declarations] == ["true", "false", "false", "false", "false"]
    assert {d["x-attune"]["at"] for d in declarations} == {"2026-06-01T00:00:00+00:00"}
