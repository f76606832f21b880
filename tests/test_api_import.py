"""Catalog import over HTTP: admin only, all or nothing, problems named."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine, func, select

from attune.api.keys import create_key
from attune.api.server import serve
from attune.rights.models import Party, Recording
from attune.store.db import transaction
from tests import factory as f

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def keys(engine: Engine) -> dict[str, str]:
    with transaction(engine) as s:
        label = f.party(s, "Existing Label", "label", kind="organisation")
        _, admin = create_key(s, "admin", None, None, actor="test")
        _, holder = create_key(s, "rightsholder", label.id, None, actor="test")
    return {"admin": admin, "rightsholder": holder}


@pytest.fixture
def api(engine: Engine) -> Iterator[httpx.Client]:
    with serve(engine) as base_url, httpx.Client(base_url=base_url, timeout=60) as client:
        yield client


def counts(engine: Engine) -> tuple[int, int]:
    with transaction(engine) as s:
        return (s.scalar(select(func.count()).select_from(Party)) or 0,
                s.scalar(select(func.count()).select_from(Recording)) or 0)


def test_admin_imports_a_catalog_file(
    engine: Engine, api: httpx.Client, keys: dict[str, str]
) -> None:
    data = (FIXTURES / "catalog_full.csv").read_bytes()
    r = api.post("/v1/imports", headers={"X-API-Key": keys["admin"]},
                 files={"file": ("catalog_full.csv", data, "text/csv")})
    assert r.status_code == 201, r.text
    report = r.json()
    assert report["format"] == "csv" and report["counts"]["recording"] >= 2
    assert counts(engine)[1] == report["counts"]["recording"]


def test_refused_import_stores_nothing_and_names_the_line(
    engine: Engine, api: httpx.Client, keys: dict[str, str]
) -> None:
    bad = "record,key,name,kind\nparty,a,Ann,person\nparty,b,,person\n"
    before = counts(engine)
    r = api.post("/v1/imports", headers={"X-API-Key": keys["admin"]},
                 files={"file": ("bad.csv", bad.encode(), "text/csv")})
    assert r.status_code == 422
    body = r.json()
    assert body["code"] == "import_refused" and "line 3" in body["detail"]
    assert counts(engine) == before


def test_import_needs_an_admin_key(
    engine: Engine, api: httpx.Client, keys: dict[str, str]
) -> None:
    data = (FIXTURES / "catalog_full.json").read_bytes()
    before = counts(engine)
    for headers, status in [({}, 401), ({"X-API-Key": keys["rightsholder"]}, 403)]:
        r = api.post("/v1/imports", headers=headers,
                     files={"file": ("catalog_full.json", data, "application/json")})
        assert r.status_code == status
    assert counts(engine) == before
