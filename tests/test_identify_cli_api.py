"""`attune identify` commands and the upload route, on audio files written by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from attune.api import problems
from attune.api.identify import router
from attune.api.keys import create_key
from attune.cli_identify import app as identify_app
from attune.identify import landmarks as fp
from attune.store.db import make_engine, transaction
from tests.test_identify import song

SR = fp.SR


@pytest.fixture(scope="module")
def indexed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A folder of catalog files named by recording id, indexed with the CLI; (folder, index)."""
    root = tmp_path_factory.mktemp("cli")
    music = root / "music"
    music.mkdir()
    for rid, seed in ((11, 1), (12, 2), (13, 3)):
        sf.write(music / f"{rid}.flac", song(seed, seconds=30), SR)
    result = CliRunner().invoke(identify_app, ["index", str(music), "--index", str(root / "ix"),
                                               "--processes", "2"])
    assert result.exit_code == 0, result.output
    assert "Indexed 3 recordings" in result.output
    return music, root / "ix"


def test_query_lists_the_hit_as_json_and_as_a_table(indexed: tuple[Path, Path],
                                                    tmp_path: Path) -> None:
    _, ix = indexed
    query = tmp_path / "upload.wav"
    sf.write(query, song(2, seconds=30)[7 * SR : 17 * SR], SR)
    result = CliRunner().invoke(identify_app, ["query", str(query), "--index", str(ix), "--json"])
    assert result.exit_code == 0, result.output
    hits = json.loads(result.output)["hits"]
    assert [h["recording_id"] for h in hits] == [12]
    assert hits[0]["reference_start"] - hits[0]["query_start"] == pytest.approx(7.0, abs=0.1)
    table = CliRunner().invoke(identify_app, ["query", str(query), "--index", str(ix)])
    assert table.exit_code == 0 and "12.flac" in table.output


def test_query_says_no_match_and_fails_clearly_on_bad_input(indexed: tuple[Path, Path],
                                                            tmp_path: Path) -> None:
    _, ix = indexed
    other = tmp_path / "other.wav"
    sf.write(other, song(40, seconds=12), SR)
    result = CliRunner().invoke(identify_app, ["query", str(other), "--index", str(ix)])
    assert result.exit_code == 0 and "no match" in result.output
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF")
    result = CliRunner().invoke(identify_app, ["query", str(broken), "--index", str(ix)])
    assert result.exit_code == 1 and "broken.wav" in result.output
    result = CliRunner().invoke(identify_app, ["query", str(other), "--index", str(tmp_path)])
    assert result.exit_code == 1 and "no fingerprint index" in result.output


def test_index_refuses_files_not_named_by_a_recording(tmp_path: Path) -> None:
    path = tmp_path / "my song.wav"
    sf.write(path, np.zeros(SR, dtype=np.float32), SR)
    result = CliRunner().invoke(identify_app, ["index", str(path), "--index",
                                               str(tmp_path / "ix"), "--db",
                                               f"sqlite:///{tmp_path / 'none.db'}"])
    assert result.exit_code == 1 and "my song.wav" in result.output


def test_remove_drops_a_recording(tmp_path: Path) -> None:
    music = tmp_path / "m"
    music.mkdir()
    sf.write(music / "5.wav", song(5, seconds=20), SR)
    runner = CliRunner()
    assert runner.invoke(identify_app, ["index", str(music), "--index", str(tmp_path / "ix"),
                                        "--processes", "1"]).exit_code == 0
    result = runner.invoke(identify_app, ["remove", "5", "6", "--index", str(tmp_path / "ix")])
    assert result.exit_code == 0 and "Removed 1" in result.output and "6" in result.output
    result = runner.invoke(identify_app, ["query", str(music / "5.wav"), "--index",
                                          str(tmp_path / "ix")])
    assert "no match" in result.output


def test_upload_route_returns_hits_and_needs_a_key(indexed: tuple[Path, Path], sqlite_url: str,
                                                   tmp_path: Path) -> None:
    music, ix = indexed
    api = FastAPI()
    api.state.engine = make_engine(sqlite_url)
    api.state.identify_index = str(ix)
    problems.install(api)
    api.include_router(router)
    with transaction(api.state.engine) as s:
        _, key = create_key(s, "admin", None, None, actor="test")
    client = TestClient(api)
    payload = (music / "13.flac").read_bytes()
    refused = client.post("/v1/identify", files={"file": ("13.flac", payload)})
    assert refused.status_code == 401
    found = client.post("/v1/identify", files={"file": ("13.flac", payload)},
                        headers={"X-API-Key": key})
    assert found.status_code == 200, found.text
    body = found.json()
    assert body["matched"] and body["hits"][0]["recording_id"] == 13
    bad = client.post("/v1/identify", files={"file": ("x.mp3", b"not audio at all")},
                      headers={"X-API-Key": key})
    assert bad.status_code == 422 and bad.json()["code"] == "bad_audio"
    assert "x.mp3" in bad.json()["detail"]
