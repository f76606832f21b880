"""The HTTP API over real HTTP (uvicorn in a thread): every refusal, and that it changes nothing."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx
import pytest
from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError

from attune.api import responses
from attune.api.keys import bootstrap_admin_key, create_key, revoke_key
from attune.api.server import serve
from attune.store.db import Base, transaction
from tests import factory as f

PROBLEM_KEYS = {"type", "title", "status", "detail", "code"}


@pytest.fixture
def api(engine: Engine) -> Iterator[httpx.Client]:
    """An HTTP client talking to the real app served by uvicorn on a free local port."""
    with serve(engine) as base_url, httpx.Client(base_url=base_url, timeout=30) as client:
        yield client


@dataclass(frozen=True)
class World:
    """Two labels with one artist, work, recording, agreement and opt-in each, and their keys."""

    ids: dict[str, int]
    keys: dict[str, str]

    def auth(self, who: str | None) -> dict[str, str]:
        """Headers presenting the named key (None: no key; any other text: that text)."""
        if who is None:
            return {}
        return {"X-API-Key": self.keys.get(who, who)}


@pytest.fixture
def world(engine: Engine) -> World:
    """Catalog written through the registry; keys issued for every role (one artist key revoked)."""
    with transaction(engine) as s:
        label = f.party(s, "Northbound Records", "label", kind="organisation")
        rival = f.party(s, "Southgate Music", "label", kind="organisation")
        platform = f.party(s, "Tonal AI", "platform", kind="organisation")
        artist = f.party(s, "Mara Vell", "artist", "songwriter")
        rival_artist = f.party(s, "Juno Kade", "artist", "songwriter")
        work = f.work(s, "Harbour Lights", artist, publisher=label)
        rival_work = f.work(s, "Glass Tides", rival_artist, publisher=rival)
        rec = f.recording(s, "Harbour Lights", work, [label], [artist])
        rival_rec = f.recording(s, "Glass Tides", rival_work, [rival], [rival_artist])
        agreement = f.agreement(s, label, platform)
        rival_agreement = f.agreement(s, rival, platform)
        grant = f.consent(s, artist)
        rival_grant = f.consent(s, rival_artist)
        issued = {
            "admin": create_key(s, "admin", None, "ops", "test"),
            "label": create_key(s, "rightsholder", label.id, None, "test"),
            "rival": create_key(s, "rightsholder", rival.id, None, "test"),
            "artist": create_key(s, "artist", artist.id, None, "test"),
            "rival_artist": create_key(s, "artist", rival_artist.id, None, "test"),
            "platform": create_key(s, "platform", platform.id, None, "test"),
            "revoked": create_key(s, "artist", artist.id, "lost phone", "test"),
        }
        revoke_key(s, issued["revoked"][0].id, "test")
        keys = {name: text for name, (_, text) in issued.items()}
        keys["wrong_secret"] = f"att_{issued['admin'][0].prefix}_not-the-secret"
        ids = {
            name: row.id
            for name, row in {
                "label": label,
                "rival": rival,
                "platform": platform,
                "artist": artist,
                "rival_artist": rival_artist,
                "work": work,
                "rival_work": rival_work,
                "rec": rec,
                "rival_rec": rival_rec,
                "agreement": agreement,
                "rival_agreement": rival_agreement,
                "grant": grant,
                "rival_grant": rival_grant,
            }.items()
        }
        ids["admin_key"] = issued["admin"][0].id
        return World(ids, keys)


def snapshot(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table (the audit log included), in primary-key order."""
    with engine.connect() as conn:
        return {
            t.name: [tuple(r) for r in conn.execute(select(t).order_by(*t.primary_key.columns))]
            for t in Base.metadata.sorted_tables
        }


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The response is RFC 7807 problem JSON with this status and machine-readable code."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert PROBLEM_KEYS <= set(body) <= PROBLEM_KEYS | {"field"}
    assert (body["status"], body["code"]) == (status, code)
    assert body["detail"]
    return body


# --- request bodies that are valid, so that a refusal can only come from authorisation ---


def party_body(w: World) -> dict[str, Any]:
    return {"name": "Intruder", "roles": ["artist"]}


def work_body(w: World, writer: str = "rival_artist", publisher: str = "rival") -> dict[str, Any]:
    return {
        "title": "Glass Tides (Reprise)",
        "shares": [
            {"party_id": w.ids[writer], "role": "writer", "share": "50"},
            {"party_id": w.ids[publisher], "role": "publisher", "share": "50"},
        ],
    }


def recording_body(w: World, owner: str = "rival", artist: str = "rival_artist") -> dict[str, Any]:
    return {
        "title": "Glass Tides (Live)",
        "isrc": "GB-ATT-26-99999",
        "artists": [{"party_id": w.ids[artist], "role": "main"}],
        "owners": [{"party_id": w.ids[owner], "share": "100"}],
    }


def agreement_body(
    w: World,
    licensor: str = "rival",
    recordings: tuple[str, ...] = (),
    works: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    return {
        "licensor_id": w.ids[licensor],
        "licensee_id": w.ids["platform"],
        "uses": ["train"],
        "worldwide": True,
        "start_date": "2026-01-01",
        "recording_ids": [w.ids[r] for r in recordings],
        "work_ids": [w.ids[x] for x in works],
        **extra,
    }


def consent_body(w: World, party: str = "rival_artist", **extra: Any) -> dict[str, Any]:
    return {
        "party_id": w.ids[party],
        "use": "train",
        "decision": "not_allowed",
        "effective_from": "2026-02-01T00:00:00Z",
        **extra,
    }


def consent_as_label(w: World) -> dict[str, Any]:
    return consent_body(w, "artist", recorded_by_id=w.ids["label"])


def delegation_body(w: World, principal: str = "rival_artist") -> dict[str, Any]:
    return {"principal_id": w.ids[principal], "delegate_id": w.ids["label"], "use": "train"}


def key_body(w: World) -> dict[str, Any]:
    return {"role": "admin", "label": "escalated"}


Body = Callable[[World], dict[str, Any]]
UNAUTHENTICATED = ("missing_key", "invalid_key")


@dataclass(frozen=True)
class Refusal:
    """``request`` ("METHOD /path", ids in {braces}) sent with ``key`` is refused with ``code``."""

    name: str
    key: str | None
    request: str
    code: str
    body: Body | None = None

    @property
    def status(self) -> int:
        """401 for no usable key, 403 for a key that may not do this."""
        return 401 if self.code in UNAUTHENTICATED else 403


def _refusals() -> list[Refusal]:
    r = Refusal
    own_consent = partial(consent_body, party="artist")
    delegate_own = partial(delegation_body, principal="artist")
    decision = "GET /v1/decisions/train?recording={rec}"
    out = [
        # 401: no key, a bad key, a revoked key.
        r("no key on a write", None, "POST /v1/parties", "missing_key", party_body),
        r("no key on a read", None, "GET /v1/recordings", "missing_key"),
        r("no key on a decision", None, decision, "missing_key"),
        r("no key on audit", None, "GET /v1/audit/verify", "missing_key"),
        r("malformed key", "not-a-key", "POST /v1/parties", "invalid_key", party_body),
        r("wrong secret, real prefix", "wrong_secret", "POST /v1/keys", "invalid_key", key_body),
        r("revoked key", "revoked", "POST /v1/consents", "invalid_key", own_consent),
        # 403: an artist acts only for itself.
        r(
            "artist records consent for another party",
            "artist",
            "POST /v1/consents",
            "party_forbidden",
            consent_body,
        ),
        r(
            "artist records its consent as another party",
            "artist",
            "POST /v1/consents",
            "party_forbidden",
            consent_as_label,
        ),
        r(
            "artist revokes another's consent",
            "artist",
            "POST /v1/consents/{rival_grant}/revoke",
            "party_forbidden",
        ),
        r(
            "artist reads another's consent history",
            "artist",
            "GET /v1/consents?party_id={rival_artist}",
            "party_forbidden",
        ),
        r(
            "artist delegates another's consent",
            "artist",
            "POST /v1/delegations",
            "party_forbidden",
            delegation_body,
        ),
        r("artist registers a party", "artist", "POST /v1/parties", "role_forbidden", party_body),
        r("artist reads a recording", "artist", "GET /v1/recordings/{rec}", "role_forbidden"),
        r("artist asks for a decision", "artist", decision, "role_forbidden"),
        # 403: a rightsholder manages only the catalog and agreements it owns.
        r(
            "rightsholder creates a recording it does not own",
            "label",
            "POST /v1/recordings",
            "party_forbidden",
            recording_body,
        ),
        r(
            "rightsholder creates a work it neither writes nor publishes",
            "label",
            "POST /v1/works",
            "party_forbidden",
            work_body,
        ),
        r(
            "rightsholder licenses as another licensor",
            "label",
            "POST /v1/agreements",
            "party_forbidden",
            agreement_body,
        ),
        r(
            "rightsholder licenses another's recording",
            "label",
            "POST /v1/agreements",
            "party_forbidden",
            partial(agreement_body, licensor="label", covers_all=False, recordings=["rival_rec"]),
        ),
        r(
            "rightsholder licenses another's work",
            "label",
            "POST /v1/agreements",
            "party_forbidden",
            partial(agreement_body, licensor="label", covers_all=False, works=["rival_work"]),
        ),
        r(
            "rightsholder shows another's recording",
            "label",
            "GET /v1/recordings/{rival_rec}",
            "party_forbidden",
        ),
        r(
            "rightsholder shows another's work",
            "label",
            "GET /v1/works/{rival_work}",
            "party_forbidden",
        ),
        r(
            "rightsholder shows another's agreement",
            "label",
            "GET /v1/agreements/{rival_agreement}",
            "party_forbidden",
        ),
        r(
            "rightsholder records consent without a delegation",
            "label",
            "POST /v1/consents",
            "party_forbidden",
            own_consent,
        ),
        r(
            "rightsholder revokes consent without a delegation",
            "label",
            "POST /v1/consents/{grant}/revoke",
            "party_forbidden",
        ),
        r(
            "rightsholder reads the history of an artist it holds no recording of",
            "label",
            "GET /v1/consents?party_id={artist}",
            "party_forbidden",
        ),
        r(
            "rightsholder grants itself a delegation",
            "label",
            "POST /v1/delegations",
            "role_forbidden",
            delegate_own,
        ),
        r("rightsholder asks for a decision", "label", decision, "role_forbidden"),
        # 403: a platform reads decisions, as its own licensee only, and writes nothing.
        r(
            "platform asks as another licensee",
            "platform",
            decision + "&licensee_id={label}",
            "party_forbidden",
        ),
        r(
            "platform reads consent history",
            "platform",
            "GET /v1/consents?party_id={artist}",
            "role_forbidden",
        ),
        r("platform reads agreements", "platform", "GET /v1/agreements", "role_forbidden"),
        r("non-admin runs audit verify", "label", "GET /v1/audit/verify", "role_forbidden"),
    ]
    platform_writes: list[tuple[str, Body | None]] = [
        ("POST /v1/parties", party_body),
        ("POST /v1/works", partial(work_body, writer="artist", publisher="platform")),
        ("POST /v1/recordings", partial(recording_body, owner="platform")),
        ("POST /v1/agreements", partial(agreement_body, licensor="label")),
        ("POST /v1/consents", partial(consent_body, party="platform")),
        ("POST /v1/consents/{grant}/revoke", None),
        ("POST /v1/delegations", delegate_own),
    ]
    out += [
        r(f"platform writes: {request}", "platform", request, "role_forbidden", body)
        for request, body in platform_writes
    ]
    key_management: list[tuple[str, Body | None]] = [
        ("POST /v1/keys", key_body),
        ("GET /v1/keys", None),
        ("POST /v1/keys/{admin_key}/revoke", None),
    ]
    out += [
        r(f"{who} manages keys: {request}", who, request, "role_forbidden", body)
        for who in ("artist", "label", "platform")
        for request, body in key_management
    ]
    return out


def test_every_refusal_is_a_problem_and_changes_nothing(
    engine: Engine, api: httpx.Client, world: World, subtests: pytest.Subtests
) -> None:
    for case in _refusals():
        with subtests.test(case.name):
            before = snapshot(engine)
            method, path = case.request.split(" ", 1)
            body = case.body(world) if case.body is not None else None
            response = api.request(
                method, path.format(**world.ids), json=body, headers=world.auth(case.key)
            )
            assert_problem(response, case.status, case.code)
            if case.status == 401:
                assert response.headers["www-authenticate"].startswith("Bearer")
            assert snapshot(engine) == before


def test_bearer_header_is_accepted_like_x_api_key(api: httpx.Client, world: World) -> None:
    headers = {"Authorization": f"Bearer {world.keys['label']}"}
    response = api.get(f"/v1/recordings/{world.ids['rec']}", headers=headers)
    assert response.status_code == 200
    assert response.json()["id"] == world.ids["rec"]


def test_key_revoked_over_http_is_refused_from_then_on(api: httpx.Client, world: World) -> None:
    listed = api.get("/v1/keys", headers=world.auth("admin")).json()
    platform_key = next(k for k in listed if k["role"] == "platform")
    assert "key" not in platform_key and "key_hash" not in platform_key
    decision = f"/v1/decisions/train?recording={world.ids['rec']}"
    assert api.get(decision, headers=world.auth("platform")).status_code == 200
    revoked = api.post(f"/v1/keys/{platform_key['id']}/revoke", headers=world.auth("admin"))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    assert_problem(api.get(decision, headers=world.auth("platform")), 401, "invalid_key")
    again = api.post(f"/v1/keys/{platform_key['id']}/revoke", headers=world.auth("admin"))
    assert assert_problem(again, 422, "rejected")["field"] == "key_id"


def test_rightsholder_lists_only_its_own_catalog(api: httpx.Client, world: World) -> None:
    label = world.auth("label")
    ids = world.ids
    assert [r["id"] for r in api.get("/v1/recordings", headers=label).json()] == [ids["rec"]]
    assert [w["id"] for w in api.get("/v1/works", headers=label).json()] == [ids["work"]]
    agreements = api.get("/v1/agreements", headers=label).json()
    assert [a["id"] for a in agreements] == [ids["agreement"]]
    everything = api.get("/v1/recordings", headers=world.auth("platform")).json()
    assert [r["id"] for r in everything] == [ids["rec"], ids["rival_rec"]]
    by_isrc = api.get(f"/v1/recordings/{everything[1]['isrc']}", headers=world.auth("platform"))
    assert by_isrc.json()["id"] == ids["rival_rec"]


def test_platform_decides_only_under_its_own_agreements(
    engine: Engine, api: httpx.Client, world: World
) -> None:
    with transaction(engine) as s:
        other = f.party(s, "Mimic Labs", "platform", kind="organisation")
        _, other_key = create_key(s, "platform", other.id, None, "test")
    url = f"/v1/decisions/train?recording={world.ids['rec']}&at=2026-06-01&territory=FR"
    mine = api.get(url, headers=world.auth("platform")).json()
    theirs = api.get(url, headers={"X-API-Key": other_key}).json()
    assert mine["allowed"] is True
    assert theirs["allowed"] is False
    assert theirs["reasons"][0]["code"] == "no_agreement"


def test_rights_flow_over_http(engine: Engine, api: httpx.Client) -> None:
    admin_key = bootstrap_admin_key(engine)
    assert admin_key is not None and bootstrap_admin_key(engine) is None
    admin = {"X-API-Key": admin_key}

    def post(path: str, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        response = api.post(path, json=body, headers=headers)
        assert response.status_code == 201, response.text
        result: dict[str, Any] = response.json()
        return result

    def issue(role: str, party_id: int) -> dict[str, str]:
        issued = post("/v1/keys", {"role": role, "party_id": party_id}, admin)
        assert issued["key"].startswith(f"att_{issued['prefix']}_")
        return {"X-API-Key": issued["key"]}

    # The admin registers the label and issues its key; the label registers everyone else.
    label_id = post("/v1/parties", {"name": "Northbound", "kind": "organisation"}, admin)["id"]
    label = issue("rightsholder", label_id)
    artist_id = post("/v1/parties", {"name": "Mara Vell", "roles": ["artist"]}, label)["id"]
    platform_id = post("/v1/parties", {"name": "Tonal AI", "kind": "organisation"}, label)["id"]
    artist, platform = issue("artist", artist_id), issue("platform", platform_id)
    shares = [
        {"party_id": artist_id, "role": "writer", "share": 60},
        {"party_id": label_id, "role": "publisher", "share": 40},
    ]
    work = post("/v1/works", {"title": "Harbour Lights", "shares": shares}, label)
    rec = post(
        "/v1/recordings",
        {
            "title": "Harbour Lights",
            "isrc": "GB-ATT-26-00042",
            "work_id": work["id"],
            "artists": [{"party_id": artist_id}],
            "owners": [{"party_id": label_id, "share": 100}],
        },
        label,
    )
    agreement = post(
        "/v1/agreements",
        {
            "licensor_id": label_id,
            "licensee_id": platform_id,
            "uses": ["train", "sample"],
            "worldwide": True,
            "excluded_territories": ["US"],
            "start_date": "2026-01-01",
        },
        label,
    )
    shown = api.get(f"/v1/agreements/{agreement['id']}", headers=platform)
    assert_problem(shown, 403, "role_forbidden")

    # The artist opts in; the platform is allowed, and told which agreement and record allow it.
    grant = post(
        "/v1/consents",
        {
            "party_id": artist_id,
            "use": "train",
            "decision": "allowed",
            "effective_from": "2026-01-01T00:00:00Z",
        },
        artist,
    )
    assert grant["recorded_by_id"] == artist_id
    decision_url = f"/v1/decisions/train?recording={rec['isrc']}&at=2026-06-01&territory=FR"
    decision = api.get(decision_url, headers=platform).json()
    assert decision["allowed"] is True
    assert decision["recording_id"] == rec["id"]
    assert {(r["code"], r["agreement_id"], r["consent_id"]) for r in decision["reasons"]} == {
        ("agreement_covers", agreement["id"], None),
        ("consent_allowed", None, grant["id"]),
    }
    us = api.get(decision_url.replace("FR", "US"), headers=platform).json()
    assert us["allowed"] is False and us["reasons"][0]["code"] == "no_agreement"

    # The artist revokes; the same question is now refused, naming the revocation record.
    revocation = post(
        f"/v1/consents/{grant['id']}/revoke",
        {"effective_from": "2026-05-01T00:00:00Z", "evidence": "email of 2026-04-30"},
        artist,
    )
    assert (revocation["decision"], revocation["supersedes_id"]) == ("not_allowed", grant["id"])
    refused = api.get(decision_url, headers=platform).json()
    assert refused["allowed"] is False
    assert [(r["code"], r["consent_id"]) for r in refused["reasons"]] == [
        ("consent_refused", revocation["id"])
    ]
    before = api.get(decision_url.replace("2026-06-01", "2026-04-01"), headers=platform).json()
    assert before["allowed"] is True

    # The artist lets the label manage 'sample' consent; the label then records it for the artist.
    delegation = post(
        "/v1/delegations",
        {"principal_id": artist_id, "delegate_id": label_id, "use": "sample"},
        artist,
    )
    assert delegation["granted"] is True
    on_behalf = post(
        "/v1/consents",
        {"party_id": artist_id, "use": "sample", "decision": "allowed"},
        label,
    )
    assert on_behalf["recorded_by_id"] == label_id
    history = api.get(f"/v1/consents?party_id={artist_id}", headers=artist).json()
    assert [c["id"] for c in history] == [grant["id"], revocation["id"], on_behalf["id"]]
    by_recording = api.get(f"/v1/consents?recording={rec['isrc']}&use=train", headers=label)
    assert [c["id"] for c in by_recording.json()] == [grant["id"], revocation["id"]]

    # Every write is in the audit chain, and the tables match it.
    report = api.get("/v1/audit/verify", headers=admin).json()
    assert report["ok"] is True, report
    assert report["chain_problem"] is None and report["state_problem"] is None
    # 4 keys + 3 parties, work, recording, agreement, 3 consents, delegation
    assert report["entries_checked"] == 4 + 3 + 1 + 1 + 1 + 3 + 1
    assert report["rows_checked"] == 3 + 1 + 1 + 1 + 3 + 1


INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("/v1/recordings", {"owners": [{"party_id": 1, "share": "90"}]}, "owners"),
    ("/v1/recordings", {"isrc": "GB-ATT-26"}, "isrc"),
    ("/v1/recordings", {"owners": [{"party_id": 1, "share": "120"}]}, "owners[0].share"),
    ("/v1/recordings", {"title": " "}, "title"),
    ("/v1/recordings", {"mood": "sad"}, "mood"),
    ("/v1/works", {"title": "W", "shares": []}, "shares"),
    ("/v1/agreements", {"territories": ["ZZ"]}, "territories"),
    ("/v1/agreements", {"end_date": "2025-01-01"}, "end_date"),
    ("/v1/consents", {"decision": "maybe"}, "decision"),
    ("/v1/consents", {"scope": "recording"}, "recording_id"),
    ("/v1/parties", {"name": "X", "isni": "0000 0001 2345 6788"}, "isni"),
]


def test_invalid_input_is_422_naming_the_field_and_stores_nothing(
    engine: Engine, api: httpx.Client, world: World, subtests: pytest.Subtests
) -> None:
    admin = world.auth("admin")
    valid: dict[str, dict[str, Any]] = {
        "/v1/recordings": recording_body(world, "label", "artist"),
        "/v1/works": work_body(world, "artist", "label"),
        "/v1/agreements": agreement_body(world, "label", worldwide=False, territories=["FR"]),
        "/v1/consents": consent_body(world, "artist"),
        "/v1/parties": party_body(world),
    }
    decision = f"/v1/decisions/train?recording={world.ids['rec']}"
    requests: list[tuple[str, Callable[[], httpx.Response], str]] = [
        (f"{path} {change}", partial(api.post, path, json={**valid[path], **change}), field)
        for path, change, field in INVALID
    ]
    requests += [
        ("unparseable instant", partial(api.get, f"{decision}&at=June"), "at"),
        ("unknown territory", partial(api.get, f"{decision}&territory=ZZ"), "territory"),
        ("malformed use", partial(api.get, decision.replace("train", "Train")), "use"),
        ("body not JSON", partial(api.post, "/v1/parties", content=b"{name"), "body"),
    ]
    api.headers.update({**admin, "Content-Type": "application/json"})
    for name, send, field in requests:
        with subtests.test(name):
            before = snapshot(engine)
            problem = assert_problem(send(), 422, "validation_error")
            assert problem["field"] == field
            assert problem["detail"].startswith(f"{field}: ")
            assert snapshot(engine) == before


def test_registry_rejection_is_422_naming_the_field_and_stores_nothing(
    engine: Engine, api: httpx.Client, world: World
) -> None:
    before = snapshot(engine)
    isrc = api.get(f"/v1/recordings/{world.ids['rec']}", headers=world.auth("label")).json()["isrc"]
    valid = recording_body(world, "label", "artist")
    cases = [
        ({"work_id": 9999}, "work_id"),
        ({"isrc": isrc}, "isrc"),
        ({"artists": [{"party_id": 9999}]}, "artists[0].party_id"),
    ]
    for change, field in cases:
        response = api.post("/v1/recordings", json={**valid, **change}, headers=world.auth("label"))
        assert assert_problem(response, 422, "rejected")["field"] == field
    assert snapshot(engine) == before


def test_unknown_records_are_404_problems(api: httpx.Client, world: World) -> None:
    admin = world.auth("admin")
    for path in (
        "/v1/recordings/GBXXX9900001",
        "/v1/works/9999",
        "/v1/agreements/9999",
        "/v1/parties/nobody-at-all",
        "/v1/decisions/train?recording=9999",
        "/v1/no-such-route",
    ):
        assert_problem(api.get(path, headers=admin), 404, "not_found")
    assert_problem(api.post("/v1/consents/9999/revoke", headers=admin), 404, "not_found")


def test_health_needs_no_key(api: httpx.Client) -> None:
    response = api.get("/v1/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_openapi_lists_every_route_and_docs_are_served(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    routes = {(m.upper(), p) for p, ops in spec["paths"].items() for m in ops}
    assert routes >= {
        ("POST", "/v1/imports"),
        ("POST", "/v1/consents"),
        ("GET", "/v1/consents"),
        ("POST", "/v1/consents/{consent_id}/revoke"),
        ("POST", "/v1/delegations"),
        ("POST", "/v1/parties"),
        ("GET", "/v1/parties"),
        ("GET", "/v1/parties/{ref}"),
        ("POST", "/v1/works"),
        ("GET", "/v1/works"),
        ("GET", "/v1/works/{ref}"),
        ("POST", "/v1/recordings"),
        ("GET", "/v1/recordings"),
        ("GET", "/v1/recordings/{ref}"),
        ("POST", "/v1/agreements"),
        ("GET", "/v1/agreements"),
        ("GET", "/v1/agreements/{agreement_id}"),
        ("GET", "/v1/decisions/{use}"),
        ("POST", "/v1/decisions/{use}/batch"),
        ("POST", "/v1/keys"),
        ("GET", "/v1/keys"),
        ("POST", "/v1/keys/{key_id}/revoke"),
        ("GET", "/v1/audit/verify"),
        ("GET", "/v1/health"),
    }
    assert set(spec["components"]["securitySchemes"]) == {"APIKeyHeader", "HTTPBearer"}
    assert "Problem" in spec["components"]["schemas"]
    docs = api.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    assert "cdn" not in docs.text.lower()
    for asset in ("/static/swagger/swagger-ui-bundle.js", "/static/swagger/swagger-ui.css"):
        assert asset in docs.text
        served = api.get(asset)
        assert served.status_code == 200 and len(served.content) > 10_000


def test_error_after_a_write_is_a_409_problem_and_rolls_the_write_back(
    engine: Engine, api: httpx.Client, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    def conflict(*_: object) -> None:
        raise IntegrityError("INSERT ...", {}, Exception("duplicate key"))

    # The party and its audit entry are flushed before the response is built, and then it fails.
    monkeypatch.setattr(responses, "party", conflict)
    before = snapshot(engine)
    response = api.post("/v1/parties", json=party_body(world), headers=world.auth("label"))
    assert_problem(response, 409, "conflict")
    assert snapshot(engine) == before


def test_batch_decisions_split_allowed_from_excluded_with_reasons(
    api: httpx.Client, world: World
) -> None:
    ids = [world.ids["rec"], world.ids["rival_rec"]]
    body = {"recording_ids": ids, "at": "2026-06-01", "territory": "FR"}
    platform = world.auth("platform")
    trained = api.post("/v1/decisions/train/batch", json=body, headers=platform)
    assert trained.status_code == 200, trained.text
    assert (trained.json()["allowed"], trained.json()["excluded"]) == (ids, {})
    sampled = api.post("/v1/decisions/sample/batch", json=body, headers=platform).json()
    assert sampled["allowed"] == []
    assert set(sampled["excluded"]) == {str(i) for i in ids}
    assert {r["code"] for r in sampled["excluded"].values()} == {"no_agreement"}
    refused = api.post("/v1/decisions/train/batch", json=body, headers=world.auth("artist"))
    assert_problem(refused, 403, "role_forbidden")
