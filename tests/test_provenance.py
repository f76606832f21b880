"""AI-disclosure credits (JSON, ERN), C2PA content credentials, and their CLI and API."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import typer
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from typer.testing import CliRunner

from attune.api.app import create_app
from attune.api.keys import create_key
from attune.api.provenance import router
from attune.cli_provenance import provenance_app, watermark_app
from attune.provenance import c2pa, credits, load_credits, stamp_output, watermark_key
from attune.provenance.credits import (
    ContributorCredit,
    CreditsError,
    RecordingCredits,
    ReleaseCredits,
)
from attune.provenance.watermark import DEFAULT_KEY, WatermarkError, detect_file
from attune.rights.ddex import parse_ern_bytes
from attune.store.db import transaction
from tests import factory as f
from tests.test_watermark import synth_music

SR = 44100
DATASET = "3f" * 32
FIXTURE = Path(__file__).parent / "fixtures" / "ern43_small.xml"


def release() -> ReleaseCredits:
    """An AI single: a generated recording with human lyrics."""
    return ReleaseCredits(
        reference="R0",
        title="Night Drive (AI)",
        contains_ai="Partly",
        recordings=(
            RecordingCredits(
                reference="A1",
                title="Night Drive",
                isrc="GBXQ72600001",
                contains_ai="Partly",
                facets={"instrumentation": "All", "vocals": "All", "lyrics": "None"},
                contributors=(
                    ContributorCredit(
                        "PGen",
                        "Attune Reference Generator 1.0",
                        ("Composer",),
                        "All",
                        generative_ai=True,
                    ),
                    ContributorCredit("PMara", "Mara Quell", ("Lyricist",), "None"),
                ),
            ),
            RecordingCredits("A2", "Night Drive (Demo)", None, "Undeclared"),
        ),
    )


def without_facets(credit: ReleaseCredits) -> ReleaseCredits:
    """``credit`` as ERN carries it: facets have no place in ERN 4.3.2, so all are Undeclared."""
    recordings = tuple(
        RecordingCredits(r.reference, r.title, r.isrc, r.contains_ai, {}, r.contributors)
        for r in credit.recordings
    )
    return ReleaseCredits(credit.reference, credit.title, credit.contains_ai, recordings)


def tone_file(path: Path, seconds: float = 3.0) -> Path:
    """A short stereo test tone written to ``path`` (format from its suffix)."""
    t = np.arange(int(seconds * SR)) / SR
    x = (0.3 * np.sin(2 * np.pi * 440 * t) * (1 + 0.3 * np.sin(2 * np.pi * 3 * t))).astype(
        np.float32
    )
    sf.write(path, np.stack([x, x], axis=1), SR)
    return path


# ------------------------------------------------------------------------------------------
# Credits
# ------------------------------------------------------------------------------------------


def test_credits_round_trip_through_json_and_ern() -> None:
    original = release()
    assert credits.from_json(credits.to_json(original)) == original
    assert credits.from_ern(credits.to_ern_fragment(original)) == (without_facets(original),)


def test_undeclared_is_written_as_absence_and_read_back_as_undeclared() -> None:
    fragment = credits.to_ern_fragment(release())
    demo = fragment.split("<ResourceReference>A2</ResourceReference>")[1].split("</Sound")[0]
    assert "ContainsAI" not in demo
    assert credits.from_ern(fragment)[0].recordings[1].contains_ai == "Undeclared"
    assert credits.from_ern(fragment)[0].recordings[1].facets["vocals"] == "Undeclared"


def test_ern_fragment_is_read_by_the_registry_importer() -> None:
    fragment = credits.to_ern_fragment(release())
    message = (
        '<ern:NewReleaseMessage xmlns:ern="http://ddex.net/xml/ern/432">'
        "<MessageHeader><MessageId>M1</MessageId></MessageHeader>"
        f"{fragment}</ern:NewReleaseMessage>"
    )
    parsed = parse_ern_bytes(message.encode())
    assert [e.reason for e in parsed.errors] == ["missing ISRC"]  # A2, the demo, has none
    assert [r.contains_ai for r in parsed.recordings] == ["Partly"]
    back = credits.from_ern(message)
    assert back[0].recordings[0].contributors[0].ai_contribution == "All"
    assert back[0].recordings[0].contributors[0].generative_ai


def test_credits_are_read_back_from_a_real_ern_message_without_ai_fields() -> None:
    releases = credits.from_ern(FIXTURE.read_bytes())
    assert releases
    recordings = [r for rel in releases for r in rel.recordings]
    assert recordings and all(r.contains_ai in credits.CONTAINS_AI for r in recordings)


def test_overall_state_of_a_release() -> None:
    assert credits.overall(["All", "All"]) == "All"
    assert credits.overall(["All", "None"]) == "Partly"
    assert credits.overall(["None", "Undeclared"]) == "Undeclared"
    assert credits.overall([]) == "Undeclared"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"contains_ai": "Maybe"}, r"recordings\[0\].contains_ai: must be one of"),
        ({"facets": {"drums": "All"}}, "unknown facet 'drums'"),
        ({"contains_ai": "None"}, "None contradicts AI facets instrumentation, vocals"),
    ],
)
def test_bad_credits_json_names_the_field(change: dict[str, object], message: str) -> None:
    document = json.loads(credits.to_json(release()))
    document["release"]["recordings"][0].update(change)
    with pytest.raises(CreditsError, match=message):
        credits.from_json(json.dumps(document))


def test_ern_with_a_dtd_or_bad_values_is_refused() -> None:
    bomb = '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa">]><ReleaseList>&a;</ReleaseList>'
    with pytest.raises(CreditsError, match="refused"):
        credits.from_ern(bomb)
    bad = credits.to_ern_fragment(release()).replace(
        "<ContainsAI>Partly</ContainsAI>", "<ContainsAI>Some</ContainsAI>", 1
    )
    with pytest.raises(CreditsError, match="ContainsAI: must be All, Partly or None"):
        credits.from_ern(bad)


# ------------------------------------------------------------------------------------------
# C2PA
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def key_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A key directory of this module's own (the chain is created at first use)."""
    return tmp_path_factory.mktemp("keys") / "c2pa"


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_signed_file_validates_with_every_required_assertion(
    tmp_path: Path, key_dir: Path, suffix: str
) -> None:
    source = tone_file(tmp_path / f"out{suffix}")
    generation = c2pa.Generation(
        title="Night Drive",
        output_id=42,
        model="refgen-1",
        dataset_sha256=DATASET,
        credits=release(),
    )
    report = c2pa.sign_file(source, tmp_path / f"signed{suffix}", generation, key_dir=key_dir)
    assert report.ok and report.state == "Trusted" and report.problems == ()
    action = report.assertion("c2pa.actions.v2")["actions"][0]  # type: ignore[index]
    assert action["action"] == "c2pa.created"
    assert action["digitalSourceType"].endswith("/trainedAlgorithmicMedia")
    mining = report.assertion("cawg.training-mining")
    assert mining == {"entries": {e: {"use": "notAllowed"} for e in c2pa.TRAINING_ENTRIES}}
    [ingredient] = report.manifest["ingredients"]
    assert DATASET in ingredient["title"] and DATASET in ingredient["instance_id"]
    assert report.assertion("dev.attune.generation")["output_id"] == 42  # type: ignore[index]
    assert load_credits(tmp_path / f"signed{suffix}", key_dir=key_dir) == (release(),)


def test_key_directory_is_created_once_with_a_private_key(key_dir: Path) -> None:
    first = c2pa.ensure_identity(key_dir)
    assert c2pa.ensure_identity(key_dir) == first
    assert stat.S_IMODE((key_dir / "signer.key").stat().st_mode) == 0o600
    assert first.chain_pem.count(b"BEGIN CERTIFICATE") == 2


@pytest.mark.parametrize("suffix", [".wav", ".mp3"])
def test_tampered_audio_fails_validation_with_a_clear_message(
    tmp_path: Path, key_dir: Path, suffix: str
) -> None:
    signed = tmp_path / f"signed{suffix}"
    c2pa.sign_file(
        tone_file(tmp_path / f"a{suffix}"), signed, c2pa.Generation("t"), key_dir=key_dir
    )
    data = bytearray(signed.read_bytes())
    data[len(data) // 3] ^= 0x5A
    signed.write_bytes(bytes(data))
    report = c2pa.read_manifest(signed, key_dir=key_dir)
    assert not report.ok and report.state == "Invalid"
    assert "the audio was changed after signing" in " ".join(report.problems)


def test_foreign_signer_is_untrusted_and_unsigned_file_is_refused(
    tmp_path: Path, key_dir: Path
) -> None:
    signed = tmp_path / "signed.wav"
    c2pa.sign_file(tone_file(tmp_path / "a.wav"), signed, c2pa.Generation("t"), key_dir=key_dir)
    other = c2pa.read_manifest(signed, key_dir=tmp_path / "other-keys")
    assert other.state == "Valid" and other.ok
    assert any("does not trust" in p for p in other.problems)
    with pytest.raises(c2pa.ContentCredentialsError, match="has no C2PA manifest"):
        c2pa.read_manifest(tmp_path / "a.wav", key_dir=key_dir)
    with pytest.raises(c2pa.ContentCredentialsError, match="dataset_sha256"):
        c2pa.sign_file(
            tmp_path / "a.wav",
            tmp_path / "b.wav",
            c2pa.Generation("t", dataset_sha256="xyz"),
            key_dir=key_dir,
        )


def test_stamped_output_carries_mark_and_valid_credentials(tmp_path: Path, key_dir: Path) -> None:
    song = tmp_path / "song.wav"
    sf.write(song, synth_music(12.0, seed=23), SR)
    generation = c2pa.Generation("Night Drive", output_id=2026, dataset_sha256=DATASET)
    marked, report = stamp_output(song, tmp_path / "out.wav", generation, key_dir=key_dir)
    assert marked.snr_db >= 30.0 and report.state == "Trusted"
    assert detect_file(tmp_path / "out.wav", key=watermark_key()).output_id == 2026
    assert detect_file(tmp_path / "out.wav").output_id is None  # not under the public key


def test_watermark_key_is_a_secret_of_the_installation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ATTUNE_WATERMARK_KEY", raising=False)
    first = watermark_key(tmp_path / "a")
    assert first == watermark_key(tmp_path / "a") != watermark_key(tmp_path / "b")
    assert first != DEFAULT_KEY and len(first) == 64
    assert (tmp_path / "a" / "watermark.key").stat().st_mode & 0o777 == 0o600
    monkeypatch.setenv("ATTUNE_WATERMARK_KEY", "shared-secret-of-two-sites")
    assert watermark_key(tmp_path / "a") == b"shared-secret-of-two-sites"
    monkeypatch.setenv("ATTUNE_WATERMARK_KEY", DEFAULT_KEY.decode())
    with pytest.raises(WatermarkError, match="public default key"):
        watermark_key(tmp_path / "a")


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------


@pytest.fixture
def cli() -> typer.Typer:
    """The two sub-apps mounted as the main CLI mounts them."""
    app = typer.Typer()
    app.add_typer(provenance_app, name="provenance")
    app.add_typer(watermark_app, name="watermark")
    return app


def test_cli_signs_reads_verifies_and_shows_credits(
    cli: typer.Typer, tmp_path: Path, key_dir: Path
) -> None:
    runner = CliRunner()
    audio = tone_file(tmp_path / "out.wav")
    credits_json = tmp_path / "credits.json"
    credits_json.write_text(credits.to_json(release()))
    keys = ["--key-dir", str(key_dir)]
    signed = runner.invoke(
        cli,
        [
            "provenance",
            "sign",
            str(audio),
            "--output-id",
            "7",
            "--dataset-sha256",
            DATASET,
            "--credits",
            str(credits_json),
            "--json",
            *keys,
        ],
    )
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.output)["state"] == "Trusted"
    read = runner.invoke(cli, ["provenance", "read", str(audio), *keys])
    assert read.exit_code == 0 and "c2pa.created" in read.output
    shown = runner.invoke(cli, ["provenance", "credits", str(audio), "--ern", *keys])
    assert shown.exit_code == 0 and "<ContainsAI>Partly</ContainsAI>" in shown.output
    ern = tmp_path / "credits.xml"
    ern.write_text(shown.output)
    again = runner.invoke(cli, ["provenance", "credits", str(ern), "--json"])
    assert json.loads(again.output)[0] == json.loads(credits.to_json(without_facets(release())))
    data = bytearray(audio.read_bytes())
    data[len(data) // 2] ^= 1
    audio.write_bytes(bytes(data))
    broken = runner.invoke(cli, ["provenance", "verify", str(audio), *keys])
    assert broken.exit_code == 1 and "changed after signing" in broken.output


def test_cli_embeds_and_detects_the_watermark(cli: typer.Typer, tmp_path: Path) -> None:
    runner = CliRunner()
    song = tmp_path / "song.wav"
    sf.write(song, synth_music(12.0, seed=21), SR)
    marked = tmp_path / "marked.wav"
    done = runner.invoke(
        cli, ["watermark", "embed", str(song), "--id", "5150", "--out", str(marked), "--json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads(done.output)["snr_db"] >= 30.0
    found = runner.invoke(cli, ["watermark", "detect", str(marked), "--json"])
    assert json.loads(found.output)["output_id"] == 5150
    plain = runner.invoke(cli, ["watermark", "detect", str(song)])
    assert plain.exit_code == 0 and "No watermark found" in plain.output
    missing = runner.invoke(cli, ["watermark", "detect", str(tmp_path / "nope.wav")])
    assert missing.exit_code == 1


# ------------------------------------------------------------------------------------------
# API
# ------------------------------------------------------------------------------------------


@pytest.fixture
def api(
    engine: Engine, key_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, dict[str, str]]]:
    """The app with the provenance router mounted, and headers of a platform key."""
    monkeypatch.setenv("ATTUNE_C2PA_KEY_DIR", str(key_dir))
    with transaction(engine) as s:
        platform = f.party(s, "Tonal AI", "platform", kind="organisation")
        _, secret = create_key(s, "platform", platform.id, "test", "test")
    app = create_app(engine)
    app.include_router(router)
    with TestClient(app) as client:
        yield client, {"X-API-Key": secret}


def test_api_signs_verifies_and_converts_credits(
    api: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, auth = api
    audio = tone_file(tmp_path / "out.wav").read_bytes()
    signed = client.post(
        "/v1/provenance/sign",
        headers=auth,
        files={"file": ("out.wav", audio, "audio/wav")},
        data={"output_id": "9", "dataset_sha256": DATASET},
    )
    assert signed.status_code == 200, signed.text
    body = signed.content
    verified = client.post(
        "/v1/provenance/verify", headers=auth, files={"file": ("x.wav", body, "audio/wav")}
    )
    assert verified.json()["state"] == "Trusted"
    read = client.post(
        "/v1/provenance/read", headers=auth, files={"file": ("x.wav", body, "audio/wav")}
    )
    assert read.json()["manifest"]["ingredients"][0]["instance_id"].endswith(DATASET)
    tampered = bytearray(body)
    tampered[len(tampered) // 2] ^= 1
    bad = client.post(
        "/v1/provenance/verify",
        headers=auth,
        files={"file": ("x.wav", bytes(tampered), "audio/wav")},
    )
    assert bad.json()["ok"] is False and bad.json()["problems"]
    converted = client.post(
        "/v1/provenance/credits",
        headers=auth,
        files={"file": ("c.json", credits.to_json(release()), "text/json")},
    )
    assert "<ContainsAI>Partly</ContainsAI>" in converted.json()[0]["ern"]
    assert (
        client.post(
            "/v1/provenance/verify", files={"file": ("x.wav", body, "audio/wav")}
        ).status_code
        == 401
    )


def test_api_embeds_and_detects_the_watermark(
    api: tuple[TestClient, dict[str, str]], tmp_path: Path
) -> None:
    client, auth = api
    song = tmp_path / "song.wav"
    sf.write(song, synth_music(12.0, seed=22), SR)
    marked = client.post(
        "/v1/watermark/embed",
        headers=auth,
        data={"output_id": "77"},
        files={"file": ("song.wav", song.read_bytes(), "audio/wav")},
    )
    assert marked.status_code == 200, marked.text
    assert float(marked.headers["X-Watermark-SNR-dB"]) >= 30.0
    found = client.post(
        "/v1/watermark/detect", headers=auth, files={"file": ("m.wav", marked.content, "audio/wav")}
    )
    assert found.json()["output_id"] == 77
    refused = client.post(
        "/v1/watermark/detect", headers=auth, files={"file": ("notes.txt", b"hello", "text/plain")}
    )
    assert refused.status_code == 422
