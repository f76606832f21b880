"""The royalty routes: platforms register outputs; rightsholders read only their own finance."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from attune.api import royalties
from attune.api.app import create_app
from attune.api.keys import create_key
from attune.royalties.ingest import ingest
from attune.royalties.run import data_dir
from attune.store.db import transaction
from tests.test_royalties_world import build_world, usage_rows, write_csv


@pytest.fixture
def client(engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    """The app with the royalty router mounted (once), as the lead mounts it."""
    monkeypatch.setenv("ATTUNE_DATA", str(tmp_path / "data"))
    app = create_app(engine)
    if not any(getattr(r, "path", "") == "/v1/ledger/balance" for r in app.routes):
        app.include_router(royalties.router)
    return TestClient(app)


def test_finance_reads_are_scoped_to_the_key_party(
    engine: Engine, client: TestClient, tmp_path: Path
) -> None:
    world = build_world(engine)
    with transaction(engine) as s:
        ingest(s, data_dir(engine), write_csv(tmp_path / "u.csv", usage_rows(world)), "test")
        keys = {
            "admin": create_key(s, "admin", None, "a", "test")[1],
            "label_a": create_key(s, "rightsholder", world.ids["label_a"], "l", "test")[1],
            "platform": create_key(s, "platform", world.ids["platform"], "p", "test")[1],
        }

    def h(who: str) -> dict[str, str]:
        return {"X-API-Key": keys[who]}

    assert client.post("/v1/royalties/runs?period=2026-10", headers=h("label_a")).status_code == 403
    run = client.post("/v1/royalties/runs?period=2026-10", headers=h("admin"))
    assert run.status_code == 200 and run.json()["posted"] is True
    own = client.get(f"/v1/royalties/statements/{world.ids['label_a']}?period=2026-10",
                     headers=h("label_a"))  # fmt: skip
    assert own.status_code == 200 and own.text.startswith("period,kind")
    other = client.get(f"/v1/royalties/statements/{world.ids['label_b']}?period=2026-10",
                       headers=h("label_a"))  # fmt: skip
    assert other.status_code == 403 and other.json()["code"] == "party_forbidden"
    page = client.get(f"/v1/royalties/statements/{world.ids['label_b']}?period=2026-10"
                      "&format=html", headers=h("admin"))  # fmt: skip
    assert page.status_code == 200 and "<svg" in page.text
    balance = client.get("/v1/ledger/balance", headers=h("label_a")).json()
    assert {b["party_id"] for b in balance} == {world.ids["label_a"]}
    assert client.get("/v1/ledger/balance", headers=h("platform")).status_code == 403
    body = {"id": "gen-api", "model": "tonal-2", "platform_id": world.ids["platform"],
            "attributions": [{"recording_id": world.ids["rec1"], "share": "1"}]}  # fmt: skip
    made = client.post("/v1/outputs", json=body, headers=h("platform"))
    assert made.status_code == 201 and made.json()["attributions"][0]["share"] == "1"
    stranger = {**body, "id": "gen-x", "platform_id": world.ids["label_b"]}
    assert client.post("/v1/outputs", json=stranger, headers=h("platform")).status_code == 403
    bad = {**body, "id": "gen-y", "attributions": [{"recording_id": 1, "share": "0.5"}]}
    problem = client.post("/v1/outputs", json=bad, headers=h("platform"))
    assert problem.status_code == 422 and "not exactly 1" in problem.json()["detail"]
