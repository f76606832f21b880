"""`attune dataset ...`, `attune consent impact` and the dataset routes, end to end."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select, update

from attune import cli
from attune.api.app import create_app
from attune.api.keys import create_key
from attune.generate import dataset as ds
from attune.generate.models import Dataset
from attune.rights import registry
from attune.rights.models import Recording
from attune.store.audit import AuditEntry
from attune.store.db import make_engine, transaction
from tests.test_dataset import REVOKED, World, build_world


@pytest.fixture(autouse=True)
def key_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the signing key of each test in its own folder."""
    folder = tmp_path / "keys"
    monkeypatch.setenv("ATTUNE_SIGNING_KEY_DIR", str(folder))
    return folder


class Cli:
    """Runs `attune --db URL ...` in this process through the real entry point."""

    def __init__(self, url: str, capsys: pytest.CaptureFixture[str]) -> None:
        self.url = url
        self.capsys = capsys

    def __call__(self, *args: str, status: int = 0) -> tuple[str, str]:
        """Run a command; check its exit status; return its stdout and stderr."""
        self.capsys.readouterr()
        try:
            cli.main(["--db", self.url, *args])
            code = 0
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = self.capsys.readouterr()
        assert code == status, f"attune {' '.join(args)}: exit {code}\n{captured.err}"
        return captured.out, captured.err

    def json(self, *args: str) -> Any:
        """Run a command with --json and parse its output."""
        return json.loads(self(*args, "--json")[0])


def test_cli_build_list_show_verify_export_and_impact(
    sqlite_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    engine = make_engine(sqlite_url)
    w = build_world(engine)
    attune = Cli(sqlite_url, capsys)
    signed_path = tmp_path / "signed.json"

    built = attune.json("dataset", "build", "--at", "2026-06-01", "--out", str(signed_path))
    assert (built["included"], built["excluded"]) == (2, 4)
    assert built["excluded_by_code"] == {"consent_refused": 2, "no_agreement": 1, "no_work": 1}
    assert ds.verify_signed(json.loads(signed_path.read_text())).ok
    text, _ = attune("dataset", "build", "--at", "2026-06-01", "--name", "second")
    assert "2 included, 4 excluded" in text and "consent_refused ×2" in text

    listed = attune.json("dataset", "list")
    assert [(d["id"], d["name"]) for d in listed] == [(built["id"], built["name"]), (2, "second")]
    shown = attune.json("dataset", "show", str(built["id"]), "--excluded")
    assert sorted(i["recording_id"] for i in shown["included_items"]) == [w.r_in, w.r_same_set]
    assert len(shown["excluded_items"]) == 4
    assert "excluded_items" not in attune.json("dataset", "show", str(built["id"]))
    text, _ = attune("dataset", "show", str(built["id"]), "--excluded")
    assert "Included" in text and "consent_refused" in text

    text, _ = attune("dataset", "verify", str(built["id"]))
    assert "verifies" in text
    exported = tmp_path / "export.json"
    attune("dataset", "export", str(built["id"]), "--out", str(exported))
    assert attune.json("dataset", "verify", "--file", str(exported))["ok"] is True
    document = json.loads(exported.read_text())
    document["manifest"]["included"].pop()
    exported.write_text(json.dumps(document))
    _, err = attune("dataset", "verify", "--file", str(exported), status=1)
    assert "signature:" in err

    with transaction(engine) as s:
        s.execute(update(Recording).where(Recording.id == w.r_in).values(content_hash="ef" * 32))
    _, err = attune("dataset", "verify", str(built["id"]), status=1)
    lines = err.strip().splitlines()
    assert lines[0] == f"dataset {built['id']} FAILED verification:"
    assert len(lines) == 2 and f"item recording {w.r_in} (" in lines[1]
    assert "content hash is now efefefefefefefef" in lines[1]

    assert attune.json("consent", "impact", "Mara Vell", "--at", "2026-08-01")["datasets"] == []
    attune("consent", "revoke", str(w.grant), "--from", REVOKED.isoformat())
    impact = attune.json("consent", "impact", "Mara Vell", "--at", "2026-08-01")
    assert [d["id"] for d in impact["datasets"]] == [built["id"], 2]
    assert {i["recording_id"] for i in impact["datasets"][0]["items"]} == {w.r_in, w.r_same_set}
    text, _ = attune("consent", "impact", str(w.singer), "--at", "2026-08-01")
    assert f"dataset {built['id']}" in text and "refused" in text
    quiet = attune.json("consent", "impact", "Tom Reyes", "--at", "2026-08-01")
    assert (quiet["datasets"], quiet["models"], quiet["outputs"]) == ([], [], [])

    _, err = attune("dataset", "show", "99", status=1)
    assert err.strip() == "error: no dataset with id 99"
    _, err = attune("dataset", "build", "--territory", "XX", status=1)
    assert len(err.strip().splitlines()) == 1 and "territory" in err
    _, err = attune("consent", "impact", "Nobody At All", status=1)
    assert err.startswith("error: no party matches 'Nobody At All'")
    _, err = attune("dataset", "verify", status=1)
    assert "give a dataset ID or --file FILE" in err
    assert len(attune.json("dataset", "list")) == 2
    engine.dispose()


@pytest.fixture
def world_keys(engine: Engine) -> tuple[World, dict[str, str]]:
    """The test world and API keys for each audience."""
    w = build_world(engine)
    with transaction(engine) as s:
        other = registry.find_party(s, "Quiet Label").id
        keys = {
            "admin": create_key(s, "admin", None, "a", "test")[1],
            "platform": create_key(s, "platform", w.platform, "p", "test")[1],
            "stranger": create_key(s, "platform", other, "p2", "test")[1],
            "singer": create_key(s, "artist", w.singer, "s", "test")[1],
            "refuser": create_key(s, "artist", w.refuser, "r", "test")[1],
        }
    return w, keys


def _counts(engine: Engine) -> tuple[int, int]:
    with transaction(engine) as s:
        datasets = s.scalar(select(func.count()).select_from(Dataset))
        entries = s.scalar(select(func.count()).select_from(AuditEntry))
    return datasets or 0, entries or 0


def test_api_builds_verifies_and_reports_impact(
    engine: Engine, world_keys: tuple[World, dict[str, str]]
) -> None:
    w, keys = world_keys
    client = TestClient(create_app(engine))

    def h(who: str) -> dict[str, str]:
        return {"X-API-Key": keys[who]}

    before = _counts(engine)
    refused = client.post("/v1/datasets", json={"at": "2026-06-01"}, headers=h("singer"))
    assert refused.status_code == 403 and refused.json()["code"] == "role_forbidden"
    other = client.post("/v1/datasets", json={"licensee_id": w.unlicensed}, headers=h("platform"))
    assert other.status_code == 403 and other.json()["code"] == "party_forbidden"
    assert _counts(engine) == before

    made = client.post("/v1/datasets", json={"at": "2026-06-01"}, headers=h("platform"))
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["included"], body["excluded"], body["licensee_id"]) == (2, 4, w.platform)
    elsewhere = client.post("/v1/datasets", json={"at": "2026-06-01"}, headers=h("stranger"))
    assert elsewhere.status_code == 201 and elsewhere.json()["included"] == 0
    bad = client.post("/v1/datasets", json={"territory": "XX"}, headers=h("platform"))
    assert bad.status_code == 422 and bad.json()["field"] == "territory"

    mine = client.get("/v1/datasets", headers=h("platform")).json()
    assert [d["id"] for d in mine] == [body["id"]]
    assert len(client.get("/v1/datasets", headers=h("admin")).json()) == 2
    detail = client.get(f"/v1/datasets/{body['id']}", headers=h("platform"))
    assert detail.status_code == 200
    assert detail.json()["manifest"]["counts"]["included"] == 2
    assert client.get(f"/v1/datasets/{body['id']}", headers=h("stranger")).status_code == 403
    assert client.get("/v1/datasets/999", headers=h("admin")).status_code == 404
    check = client.get(f"/v1/datasets/{body['id']}/verify", headers=h("platform")).json()
    assert check == {"dataset_id": body["id"], "ok": True, "problems": []}

    with transaction(engine) as s:
        ds.register_model(
            s,
            model_id="markov-api",
            dataset_id=body["id"],
            kind="attune-markov/1",
            params={},
            artifact_sha256="1" * 64,
            artifact_path="/m",
            actor="test",
        )
        registry.revoke_consent(s, w.grant, "test", effective_from=REVOKED)
    url = f"/v1/parties/{w.singer}/impact?at=2026-08-01"
    impact = client.get(url, headers=h("singer"))
    assert impact.status_code == 200, impact.text
    found = impact.json()
    assert [d["id"] for d in found["datasets"]] == [body["id"]]
    assert [m["id"] for m in found["models"]] == ["markov-api"]
    reason = found["datasets"][0]["items"][0]["reasons"][0]
    assert reason["code"] == "consent_refused" and reason["party_id"] == w.singer
    assert client.get(url, headers=h("admin")).json() == found
    assert client.get(url, headers=h("refuser")).status_code == 403
    assert client.get(url, headers=h("platform")).status_code == 403
    own = client.get(f"/v1/parties/{w.refuser}/impact?at=2026-08-01", headers=h("refuser"))
    assert own.status_code == 200 and own.json()["datasets"] == []

    with transaction(engine) as s:
        s.execute(update(Dataset).where(Dataset.id == body["id"]).values(signature="00" * 64))
    broken = client.get(f"/v1/datasets/{body['id']}/verify", headers=h("admin")).json()
    assert broken["ok"] is False and broken["problems"][0].startswith("signature:")
