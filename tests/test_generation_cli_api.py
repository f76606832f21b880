"""`attune model ...`, `attune generate` and the generation routes, end to end with real audio."""

from __future__ import annotations

import shutil
from datetime import datetime
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select

from attune.api.app import create_app
from attune.api.keys import create_key
from attune.generate.checks import check_audio
from attune.generate.render import render_wav, to_midi
from attune.identify import Index, Job, fingerprint_job
from attune.melody.scores import load_score
from attune.rights.models import Party
from attune.rights.outputs import Output
from attune.store.audit import AuditEntry
from attune.store.db import make_engine, transaction
from tests import factory
from tests.test_dataset_cli_api import Cli
from tests.test_generation import CHORALES, TUNES, _world

pytestmark = pytest.mark.skipif(shutil.which("fluidsynth") is None, reason="needs fluidsynth")


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATTUNE_SIGNING_KEY_DIR", str(tmp_path / "keys"))
    monkeypatch.setenv("ATTUNE_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ATTUNE_INDEX", str(tmp_path / "no-index"))


def _actions(engine: Engine, action: str) -> int:
    with transaction(engine) as s:
        return s.scalar(select(func.count()).select_from(AuditEntry)
                        .where(AuditEntry.action == action)) or 0


def test_cli_trains_lists_generates_and_refuses_with_reasons(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(sqlite_url)
    ids = _world(engine, CHORALES[:2] + TUNES)
    attune = Cli(sqlite_url, capsys)
    built = attune.json("dataset", "build", "--at", "2026-06-01", "--licensee", "Chordwell AI")
    trained = attune.json("model", "train", str(built["id"]), "--order", "3")
    assert trained["works"] == 5 and trained["harmoniser"] is True
    listed = attune.json("model", "list")
    assert [(m["id"], m["status"]) for m in listed] == [(trained["id"], "ok")]

    made = attune.json("generate", "a lively reel in D, 8 bars", "--model", trained["id"],
                       "--platform", "Chordwell AI", "--seed", "4", "--at", "2026-06-01")
    assert made["output_id"] == "gen-1" and Path(made["wav"]).exists()
    assert "tune in D major" in made["description"]
    assert sum(map(float, made["work_shares"].values())) == pytest.approx(1.0)
    shown = attune.json("output", "show", "gen-1")
    assert shown["model"] == trained["id"] and shown["prompt"] == "a lively reel in D, 8 bars"
    text, _ = attune("generate", "a chorale in G, 4 bars", "--model", trained["id"],
                     "--platform", "Chordwell AI", "--seed", "2", "--at", "2026-06-01")
    assert "gen-2" in text and "four-part chorale" in text

    _, errors = attune("generate", "a reel like Teodor Santerre", "--model", trained["id"],
                       "--platform", "Chordwell AI", "--at", "2026-06-01", status=3)
    assert "refused: prompt refused" in errors and "'Teodor Santerre'" in errors
    assert _actions(engine, "generation.refuse") == 1
    _, errors = attune("generate", "x", "--model", "nope", "--platform", "Chordwell AI", status=3)
    assert "no model 'nope'" in errors

    # A revocation flags the model in the listing and stops generation, naming the record.
    with transaction(engine) as s:
        writer = s.get(Party, ids["writer0"])
        assert writer is not None
        factory.consent(s, writer, "not_allowed", since=datetime(2026, 5, 1))
    listed = attune.json("model", "list")
    assert listed[0]["status"] == "flagged: 1 item(s) since refused"
    _, errors = attune("generate", "a reel", "--model", trained["id"], "--platform",
                       "Chordwell AI", status=3)
    assert "is flagged" in errors and f"recording {ids['rec0']}" in errors
    _, errors = attune("model", "train", "999", status=1)
    assert "999" in errors


def test_api_trains_and_generates_for_the_keys_own_platform(engine: Engine) -> None:
    ids = _world(engine, TUNES)
    with transaction(engine) as s:
        platform_key = create_key(s, "platform", ids["platform"], None, "test")[1]
        other = factory.party(s, "Sonarium Labs", "platform", kind="organisation")
        other_key = create_key(s, "platform", other.id, None, "test")[1]
        artist = s.scalars(select(Party).where(Party.name == "Singer Number0")).one()
        artist_key = create_key(s, "artist", artist.id, None, "test")[1]
    client = TestClient(create_app(engine))
    headers = {"X-API-Key": platform_key}
    built = client.post("/v1/datasets", headers=headers,
                        json={"use": "train", "at": "2026-06-01"})
    assert built.status_code == 201, built.text
    refused = client.post("/v1/models", headers={"X-API-Key": artist_key},
                          json={"dataset_id": built.json()["id"]})
    assert refused.status_code == 403
    trained = client.post("/v1/models", headers=headers,
                          json={"dataset_id": built.json()["id"], "order": 3})
    assert trained.status_code == 201, trained.text
    model_id = trained.json()["id"]
    assert client.get("/v1/models", headers=headers).json()[0]["flagged"] is False

    # A model of three tunes sometimes lands close to one of them; the checks then block the
    # output with evidence, and the next seed is tried (as a client would).
    for seed in range(1, 9):
        made = client.post("/v1/generations", headers=headers,
                           json={"model_id": model_id, "prompt": "a slow air in E minor",
                                 "seed": seed, "at": "2026-06-01"})
        if made.status_code != 422:
            break
        assert "output blocked: melody copies work" in made.json()["detail"]
    assert made.status_code == 201, made.text
    blocked = seed - 1
    body = made.json()
    assert body["output_id"] == "gen-1" and "E minor" in body["description"]
    with transaction(engine) as s:
        out = s.get(Output, "gen-1")
        assert out is not None and out.platform_id == ids["platform"]

    wrong = client.post("/v1/generations", headers={"X-API-Key": other_key},
                        json={"model_id": model_id, "prompt": "x", "platform_id": ids["platform"]})
    assert wrong.status_code == 403
    gate = client.post("/v1/generations", headers=headers,
                       json={"model_id": model_id, "prompt": "like Teodor Santerre",
                             "at": "2026-06-01"})
    assert gate.status_code == 422 and gate.json()["code"] == "generation_refused"
    assert "'Teodor Santerre'" in gate.json()["detail"]
    assert _actions(engine, "generation.refuse") == 1 + blocked
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(Output)) == 1


def test_audio_check_finds_catalog_audio_in_a_render(tmp_path: Path) -> None:
    tune = load_score(f"music21:{TUNES[0]}", cache_dir=tmp_path / "scores")
    catalog = render_wav(to_midi([tune.notes], tempo_bpm=120), tmp_path / "catalog.wav")
    other = load_score(f"music21:{CHORALES[0]}", cache_dir=tmp_path / "scores")
    fresh = render_wav(to_midi([other.notes], tempo_bpm=90), tmp_path / "fresh.wav")
    assert check_audio(catalog, tmp_path / "missing") == ((), False)
    index = Index.create(tmp_path / "index")
    found = fingerprint_job(Job(recording_id=42, path=str(catalog), label="catalog"))
    index.add([found])  # type: ignore[list-item]
    findings, checked = check_audio(catalog, tmp_path / "index")
    assert checked and findings and findings[0].recording_id == 42
    assert findings[0].confidence >= 0.9
    assert check_audio(fresh, tmp_path / "index") == ((), True)


def test_demo_trains_generates_and_shows_provenance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    attune = Cli(url, capsys)
    text, _ = attune("demo", "--no-serve", "--works", "60", "--at", "2026-06-01")
    flat = " ".join(text.split())
    assert "Governed generation — dataset 1:" in flat
    assert "gen-1" in flat and "four-part chorale" in flat
    assert "C2PA manifest Trusted" in flat or "C2PA manifest Valid" in flat
    assert "watermark decodes output id 1" in flat
    assert "Prompt gate: 'a tune in the style of" in flat and "refused" in flat
    engine = make_engine(url)
    with transaction(engine) as s:
        outputs = s.scalars(select(Output)).all()
        assert 1 <= len(outputs) <= 3
        for out in outputs:
            assert sum(a.share for a in out.attributions) == 1
    assert _actions(engine, "generation.release") == len(outputs)
