"""Catalog import from CSV, JSON and DDEX ERN: mappings, all-or-nothing, skip-invalid, safety."""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session

from attune.rights import registry
from attune.rights.catalog_import import (
    CatalogImportError,
    ImportReport,
    Reject,
    import_catalog,
    write_rejects,
)
from attune.rights.models import Recording, Work
from attune.rights.records import PartyIn
from attune.store import audit
from attune.store.audit import AuditEntry
from attune.store.db import Base, transaction
from tests import factory as f

FIXTURES = Path(__file__).parent / "fixtures"
ERN = FIXTURES / "ern432_contains_ai.xml"
ACTOR = "importer"


def table_counts(engine: Engine) -> dict[str, int]:
    """Rows in every table, the audit log included."""
    with transaction(engine) as s:
        return {
            t.name: int(s.scalar(select(func.count()).select_from(t)) or 0)
            for t in Base.metadata.sorted_tables
        }


def catalog_state(s: Session) -> dict[str, Any]:
    """Every registry entity as JSON data, party ids replaced by names, timestamps dropped."""
    names = {p.id: p.name for p in registry.list_parties(s)}
    isrcs = {r.id: r.isrc for r in registry.list_recordings(s)}
    titles = {w.id: w.title for w in registry.list_works(s)}

    def named(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{**r, "party_id": names[r["party_id"]]} for r in rows]

    parties = [
        {**snap, "id": None, "aliases": sorted(snap["aliases"])}  # alias order follows collation
        for snap in map(registry.party_snapshot, registry.list_parties(s))
    ]
    works = [
        {
            **registry.work_snapshot(w),
            "id": None,
            "shares": named(registry.work_snapshot(w)["shares"]),
        }
        for w in registry.list_works(s)
    ]
    recordings = []
    for r in registry.list_recordings(s):
        snap = registry.recording_snapshot(r)
        recordings.append(
            {
                **snap,
                "id": None,
                "work_id": titles.get(r.work_id or 0),
                "artists": named(snap["artists"]),
                "owners": named(snap["owners"]),
            }
        )
    agreements = []
    for a in registry.list_agreements(s):
        snap = registry.agreement_snapshot(a)
        agreements.append(
            {
                **snap,
                "id": None,
                "licensor_id": names[a.licensor_id],
                "licensee_id": names[a.licensee_id],
                "recording_ids": [isrcs[i] for i in snap["recording_ids"]],
            }
        )
    consents = []
    for c in registry.consent_history(s):
        snap = registry.consent_snapshot(c)
        consents.append(
            {
                **snap,
                "id": None,
                "recorded_at": None,
                "party_id": names[c.party_id],
                "recorded_by_id": names[c.recorded_by_id],
                "recording_id": isrcs.get(c.recording_id or 0),
            }
        )
    return {
        "parties": parties,
        "works": works,
        "recordings": recordings,
        "agreements": agreements,
        "consents": consents,
    }


EXPECTED_FULL = {
    "parties": [
        {"id": None, "kind": "person", "name": "Mara Quell", "isni": "0000000412839532",
         "ipi": None, "roles": ["artist", "songwriter"], "aliases": ["MQ", "Mara Q."]},
        {"id": None, "kind": "person", "name": "Jonah Pike", "isni": None, "ipi": "98765432174",
         "roles": ["producer", "songwriter"], "aliases": []},
        {"id": None, "kind": "organisation", "name": "Lowtide Records",
         "isni": "000000012146438X", "ipi": None, "roles": ["label"], "aliases": []},
        {"id": None, "kind": "organisation", "name": "North Pier Publishing", "isni": None,
         "ipi": "24681357963", "roles": ["publisher"], "aliases": []},
        {"id": None, "kind": "organisation", "name": "Tonal AI", "isni": None, "ipi": None,
         "roles": ["platform"], "aliases": []},
    ],
    "works": [
        {"id": None, "title": "Harbour Lights", "iswc": "T2468135794", "source": None,
         "shares": [
             {"party_id": "Mara Quell", "role": "writer", "share": "40"},
             {"party_id": "Jonah Pike", "role": "writer", "share": "35.5"},
             {"party_id": "North Pier Publishing", "role": "publisher", "share": "24.5"},
         ]},
        {"id": None, "title": "Paper Satellites", "iswc": None, "source": None,
         "shares": [{"party_id": "Jonah Pike", "role": "writer", "share": "100"}]},
    ],
    "recordings": [
        {"id": None, "title": "Harbour Lights", "isrc": "GBXQ72600001", "duration_ms": 205000,
         "work_id": "Harbour Lights",
         "content_hash": "aa74f6fd03bf68be7e0f4bd06cae61a72ab8025b50d00888f3e1068f22067463",
         "contains_ai": "None",
         "artists": [{"party_id": "Mara Quell", "role": "main"},
                     {"party_id": "Jonah Pike", "role": "featured"}],
         "owners": [{"party_id": "Lowtide Records", "share": "100"}]},
        {"id": None, "title": "Paper Satellites", "isrc": "GBXQ72600002", "duration_ms": 242000,
         "work_id": "Paper Satellites", "content_hash": None, "contains_ai": "Partly",
         "artists": [{"party_id": "Mara Quell", "role": "main"}],
         "owners": [{"party_id": "Lowtide Records", "share": "60"},
                    {"party_id": "Mara Quell", "share": "40"}]},
    ],
    "agreements": [
        {"id": None, "reference": "LT-TONAL-2026", "licensor_id": "Lowtide Records",
         "licensee_id": "Tonal AI", "uses": ["sample", "train"], "worldwide": True,
         "territories": [], "excluded_territories": ["US"], "start_date": "2026-01-01",
         "end_date": "2028-12-31", "ai_revenue_share": "0.25", "minimum_guarantee": "1000.5",
         "currency": "EUR", "model_versions": ["tonal-2"], "covers_all": True,
         "recording_ids": [], "work_ids": []},
        {"id": None, "reference": "MQ-TONAL-2026", "licensor_id": "Mara Quell",
         "licensee_id": "Tonal AI", "uses": ["train"], "worldwide": False,
         "territories": ["DE", "FR"], "excluded_territories": [], "start_date": "2026-02-01",
         "end_date": None, "ai_revenue_share": "0", "minimum_guarantee": "0",
         "currency": "EUR", "model_versions": [], "covers_all": False,
         "recording_ids": ["GBXQ72600002"], "work_ids": []},
    ],
    "consents": [
        {"id": None, "party_id": "Mara Quell", "use": "train", "decision": "allowed",
         "scope": "all", "recording_id": None, "work_id": None, "terms": None,
         "effective_from": "2026-01-01T00:00:00+00:00", "effective_until": None,
         "worldwide": True, "territories": [], "recorded_by_id": "Mara Quell",
         "evidence": None, "supersedes_id": None, "recorded_at": None},
        {"id": None, "party_id": "Jonah Pike", "use": "train", "decision": "constrained",
         "scope": "all", "recording_id": None, "work_id": None,
         "terms": {"attribution": "required"}, "effective_from": "2026-01-01T00:00:00+00:00",
         "effective_until": "2027-01-01T00:00:00+00:00", "worldwide": False,
         "territories": ["DE", "FR"], "recorded_by_id": "Jonah Pike", "evidence": None,
         "supersedes_id": None, "recorded_at": None},
        {"id": None, "party_id": "Mara Quell", "use": "voice_likeness",
         "decision": "not_allowed", "scope": "recording", "recording_id": "GBXQ72600001",
         "work_id": None, "terms": None, "effective_from": "2026-01-01T00:00:00+00:00",
         "effective_until": None, "worldwide": True, "territories": [],
         "recorded_by_id": "Mara Quell", "evidence": "email of 2025-12-01",
         "supersedes_id": None, "recorded_at": None},
    ],
}  # fmt: skip


def write_json(path: Path, doc: dict[str, Any]) -> Path:
    path.write_text(json.dumps(doc), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, str]]) -> Path:
    columns = list(dict.fromkeys(k for row in rows for k in row))
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.DictWriter(out, columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def run_import(engine: Engine, path: Path, **options: Any) -> ImportReport:
    with transaction(engine) as s:
        return import_catalog(s, path, actor=ACTOR, **options)


def import_error(engine: Engine, path: Path, **options: Any) -> CatalogImportError:
    with pytest.raises(CatalogImportError) as caught, transaction(engine) as s:
        import_catalog(s, path, actor=ACTOR, **options)
    return caught.value


SMALL = {
    "parties": [
        {"key": "ada", "name": "Ada Reyes", "roles": ["artist", "songwriter"]},
        {"key": "label", "name": "Beacon Label", "kind": "organisation", "roles": ["label"]},
    ],
    "works": [{"key": "w", "title": "Tidal", "writers": [{"party": "ada", "share": "100"}]}],
    "recordings": [
        {"title": "Tidal", "isrc": "GBATT2690001", "work": "w", "main_artists": ["ada"],
         "owners": [{"party": "label", "share": "100"}]},
    ],
}  # fmt: skip


# --- CSV and JSON ---


@pytest.mark.parametrize("name", ["catalog_full.csv", "catalog_full.json"])
def test_full_catalog_round_trips_from_csv_and_json(engine: Engine, name: str) -> None:
    report = run_import(engine, FIXTURES / name)
    assert report.fmt == name.rsplit(".", 1)[1]
    assert dict(report.counts) == {
        "party": 5,
        "work": 2,
        "recording": 2,
        "agreement": 2,
        "consent": 3,
    }
    assert report.rejects == ()
    with transaction(engine) as s:
        assert catalog_state(s) == EXPECTED_FULL
        assert registry.verify_state(s)[1] is None
        assert audit.verify_chain(s)[1] is None


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_one_bad_row_leaves_database_exactly_as_before(
    engine: Engine, tmp_path: Path, skip_invalid: bool
) -> None:
    with transaction(engine) as s:
        f.party(s, "Existing Artist", "artist")
    before = table_counts(engine)
    doc = json.loads(json.dumps(SMALL))
    doc["recordings"].append(
        {"title": "Broken", "isrc": "NOT-AN-ISRC", "owners": [{"party": "label", "share": 100}]}
    )
    path = write_json(tmp_path / "catalog.json", doc)

    error = import_error(engine, path)
    assert table_counts(engine) == before
    assert error.problems == (Reject("/recordings/1", "isrc", error.problems[0].reason),)
    assert "invalid ISRC: 'NOT-AN-ISRC'" in error.problems[0].reason
    assert str(error) == f"{path}: import refused, nothing stored: /recordings/1: isrc: " + (
        error.problems[0].reason
    )

    if skip_invalid:  # the same file imports its valid rows when asked to
        report = run_import(engine, path, skip_invalid=True)
        assert report.counts["recording"] == 1
        assert [r.line_or_element for r in report.rejects] == ["/recordings/1"]


def test_refused_import_stores_nothing_even_when_the_caller_commits(
    engine: Engine, tmp_path: Path
) -> None:
    doc = json.loads(json.dumps(SMALL))
    doc["works"][0]["writers"][0]["share"] = "90"
    path = write_json(tmp_path / "catalog.json", doc)
    before = table_counts(engine)
    with transaction(engine) as s:  # the import is the first write of this transaction
        with pytest.raises(CatalogImportError):
            import_catalog(s, path, actor=ACTOR)
        f.party(s, "Committed Anyway")
    after = table_counts(engine)
    assert after["parties"] == before["parties"] + 1
    assert after["works"] == before["works"] == 0
    assert after["audit_log"] == before["audit_log"] + 1


def test_all_problems_are_reported_together(engine: Engine, tmp_path: Path) -> None:
    path = write_csv(
        tmp_path / "catalog.csv",
        [
            {"record": "party", "key": "ada", "name": "Ada Reyes", "isni": "0000000000000000"},
            {"record": "party", "key": "lab", "name": "Beacon", "kind": "organisation"},
            {"record": "work", "key": "w", "title": "Tidal", "writers": "lab:60|ghost:40"},
            {"record": "recording", "title": "Tidal", "isrc": "GBATT2690001",
             "owners": "lab:100", "main_artists": "ada"},
            {"record": "recording", "title": "Dup", "isrc": "GB-ATT-26-90001", "owners": "lab:50"},
            {"record": "song", "title": "?"},
        ],
    )  # fmt: skip
    error = import_error(engine, path)
    assert [(p.line_or_element, p.field) for p in error.problems] == [
        ("line 2", "isni"),
        ("line 4", "writers[1]"),
        ("line 5", "main_artists[0]"),
        ("line 6", "owners"),
        ("line 7", "record"),
    ]
    lines = str(error).splitlines()
    assert lines[0].endswith("line 2: isni: " + error.problems[0].reason + " (and 4 more problems)")
    assert lines[1:] == [f"  {p.line_or_element}: {p.field}: {p.reason}" for p in error.problems]
    reasons = {(p.line_or_element, p.field): p.reason for p in error.problems}
    assert "must be one of party, work" in reasons[("line 7", "record")]
    assert "invalid ISNI" in reasons[("line 2", "isni")]
    assert "no party key 'ghost' in this file" in reasons[("line 4", "writers[1]")]
    assert "party key 'ada' was rejected (line 2)" in reasons[("line 5", "main_artists[0]")]
    assert reasons[("line 6", "owners")] == "master owner shares total 50%, not 100%"
    assert table_counts(engine)["parties"] == 0


def test_skip_invalid_imports_the_rest_and_reports_line_field_reason(
    engine: Engine, tmp_path: Path
) -> None:
    with transaction(engine) as s:
        label = registry.add_party(
            s, PartyIn(name="Stored Label", kind="organisation", isni="0000000477312440"), ACTOR
        )
        f.recording(s, "Already here", None, [label], [])
        stored_isrc = registry.list_recordings(s)[0].isrc
    path = write_csv(
        tmp_path / "catalog.csv",
        [
            {"record": "party", "key": "ada", "name": "Ada Reyes", "roles": "artist|songwriter"},
            {"record": "work", "key": "w", "title": "Tidal", "writers": "ada:100"},
            {"record": "work", "key": "w2", "title": "Ebb", "writers": "ada:99.5"},
            {"record": "recording", "title": "Tidal", "isrc": "GBATT2690001", "work": "w",
             "main_artists": "ada", "owners": "0000 0004 7731 2440:100"},
            {"record": "recording", "title": "Tidal again", "isrc": "GBATT2690001",
             "owners": "Stored Label:100"},
            {"record": "recording", "title": "Clash", "isrc": stored_isrc,
             "owners": "Stored Label:100"},
            {"record": "recording", "title": "Who", "isrc": "GBATT2690002", "owners": "nobody:100"},
            {"record": "consent", "party": "ada", "use": "train", "decision": "allowed"},
        ],
    )  # fmt: skip
    audit_before = table_counts(engine)["audit_log"]
    report = run_import(engine, path, skip_invalid=True)
    assert dict(report.counts) == {
        "party": 1,
        "work": 1,
        "recording": 1,
        "agreement": 0,
        "consent": 1,
    }
    rejects = {(r.line_or_element, r.field): r.reason for r in report.rejects}
    assert rejects == {
        ("line 4", "writers/publishers"): "writer and publisher shares total 99.5%, not 100%",
        ("line 6", "isrc"): "GBATT2690001 is already registered",
        ("line 7", "isrc"): f"{stored_isrc} is already registered",
        ("line 8", "owners[0]"): "no party key 'nobody' in this file, and no party matches "
        "'nobody' (id, ISNI, IPI, name or alias)",
    }
    # 4 entities, each audited, plus the import entry
    assert table_counts(engine)["audit_log"] == audit_before + 5
    with transaction(engine) as s:
        rec = registry.find_recording(s, "GBATT2690001")
        assert [o.party_id for o in rec.owners] == [label.id]  # found by ISNI

    out = tmp_path / "rejects.csv"
    write_rejects(report, out)
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["line_or_element", "field", "reason"]
    assert ["line 6", "isrc", "GBATT2690001 is already registered"] in rows
    assert len(rows) == 5


def test_import_appends_one_audit_entry_with_the_file_hash(engine: Engine) -> None:
    path = FIXTURES / "catalog_full.json"
    report = run_import(engine, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert report.sha256 == digest
    with transaction(engine) as s:
        entries = s.scalars(select(AuditEntry).where(AuditEntry.entity == "import")).all()
        assert len(entries) == 1
        entry = entries[0]
        assert (entry.action, entry.actor, entry.entity_id) == (
            "catalog.import",
            ACTOR,
            digest[:16],
        )
        assert json.loads(entry.payload) == {
            "file": "catalog_full.json",
            "sha256": digest,
            "format": "json",
            "counts": {"party": 5, "work": 2, "recording": 2, "agreement": 2, "consent": 3},
            "rejects": 0,
            "skip_invalid": False,
        }
        last = s.scalar(select(func.max(AuditEntry.seq)))
        assert entry.seq == last  # written after the rows it summarises


def test_party_references_fall_back_to_stored_parties(engine: Engine, tmp_path: Path) -> None:
    with transaction(engine) as s:
        ada = registry.add_party(
            s, PartyIn(name="Ada Reyes", aliases=("Ada R",), ipi="13579246863"), ACTOR
        )
        label = f.party(s, "Beacon Label", "label", kind="organisation")
    doc = {
        "works": [{"key": "w", "title": "Tidal", "writers": [{"party": "Ada R", "share": 100}]}],
        "recordings": [
            {"title": "Tidal", "isrc": "GBATT2690001", "work": "w", "main_artists": ["13579246863"],
             "owners": [{"party": "beacon label", "share": "100"}]},
        ],
        "consents": [
            {"party": "Ada Reyes", "use": "train", "decision": "allowed",
             "recording": "GBATT2690001"},
        ],
    }  # fmt: skip
    report = run_import(engine, write_json(tmp_path / "c.json", doc))
    assert report.counts["party"] == 0
    with transaction(engine) as s:
        rec = registry.find_recording(s, "GBATT2690001")
        assert [a.party_id for a in rec.artists] == [ada.id]
        assert [o.party_id for o in rec.owners] == [label.id]
        work = s.get(Work, rec.work_id)
        assert work is not None and [sh.party_id for sh in work.shares] == [ada.id]
        [consent] = registry.consent_history(s, party_id=ada.id)
        assert (consent.scope, consent.recording_id) == ("recording", rec.id)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('{"parties": [}', "line 1: not valid JSON"),
        ('{"parties": [], "parties": []}', "duplicate key 'parties'"),
        ('{"recordings": [{"duration_ms": NaN}]}', "NaN is not a number"),
        ('{"songs": []}', "unknown sections 'songs'"),
        ('{"parties": {}}', "/parties: must be an array"),
        ("[]", "the document must be an object"),
    ],
)
def test_malformed_json_is_refused_with_its_location(
    engine: Engine, tmp_path: Path, content: str, problem: str
) -> None:
    path = tmp_path / "catalog.json"
    path.write_text(content, encoding="utf-8")
    assert problem in str(import_error(engine, path))


def test_json_rows_must_be_objects_with_known_fields(engine: Engine, tmp_path: Path) -> None:
    doc = {"parties": ["Ada", {"name": "Bo", "colour": "blue", "key": 7}]}
    error = import_error(engine, write_json(tmp_path / "c.json", doc))
    assert [(p.line_or_element, p.field, p.reason) for p in error.problems] == [
        ("/parties/0", "", "must be an object"),
        ("/parties/1", "colour", "not a field of a party row"),
        ("/parties/1", "key", "must be a non-empty text, got 7"),
    ]


@pytest.mark.parametrize(
    ("header", "problem"),
    [
        ("key,name\n", "line 1: the header has no 'record' column"),
        ("record,name,colour\n", "line 1: unknown columns 'colour'"),
        ("record,name,name\n", "line 1: a column appears twice"),
    ],
)
def test_bad_csv_header_is_refused(
    engine: Engine, tmp_path: Path, header: str, problem: str
) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text(header + "party,Ada\n", encoding="utf-8")
    assert problem in str(import_error(engine, path))


def test_csv_row_problems_name_the_starting_line(engine: Engine, tmp_path: Path) -> None:
    path = tmp_path / "catalog.csv"
    path.write_text(
        "record,key,name,aliases,terms\n"
        'party,ada,Ada,"Ada R|\nAdy"\n'  # a quoted cell spanning two lines
        "party,ada,Ada again\n"
        "\n"
        "party,bo,Bo,,{oops\n"
        "party,cy,Cy,,,extra\n",
        encoding="utf-8",
    )
    error = import_error(engine, path)
    assert [(p.line_or_element, p.field) for p in error.problems] == [
        ("line 4", "key"),
        ("line 6", "terms"),
        ("line 7", ""),
    ]
    assert "'ada' is already used (line 2)" in error.problems[0].reason


def test_format_is_detected_from_content_and_unknown_formats_are_refused(
    engine: Engine, tmp_path: Path
) -> None:
    path = write_json(tmp_path / "catalog.txt", SMALL)
    assert run_import(engine, path).fmt == "json"
    other = tmp_path / "notes.txt"
    other.write_text("hello", encoding="utf-8")
    assert "cannot tell the format" in str(import_error(engine, other))
    assert "unknown format 'xlsx'" in str(import_error(engine, path, fmt="xlsx"))
    assert "only ERN imports take an owner" in str(import_error(engine, path, owner_ref="x"))
    assert "cannot read the file" in str(import_error(engine, tmp_path / "missing.json"))


# --- DDEX ERN ---


def test_ern_import_maps_parties_artists_writers_owner_and_contains_ai(engine: Engine) -> None:
    with transaction(engine) as s:
        iris = registry.add_party(
            s, PartyIn(name="Iris Vale (stored)", isni="0000 0005 0183 5226"), ACTOR
        )
    report = run_import(engine, ERN, owner_ref="PGlasshouse")
    assert report.fmt == "ern"
    assert dict(report.counts) == {
        "party": 3,  # Kofi, Lena, Glasshouse; Iris is matched by ISNI
        "work": 2,
        "recording": 3,
        "agreement": 0,
        "consent": 0,
    }
    with transaction(engine) as s:
        parties = {p.name: p for p in registry.list_parties(s)}
        assert set(parties) == {
            "Iris Vale (stored)",
            "Kofi Brand",
            "Lena Ortiz",
            "Glasshouse Records",
        }
        assert parties["Iris Vale (stored)"].id == iris.id
        assert registry.party_snapshot(parties["Kofi Brand"])["roles"] == ["artist", "songwriter"]
        assert parties["Kofi Brand"].ipi == "13579246863"
        glasshouse = parties["Glasshouse Records"]
        assert (glasshouse.kind, glasshouse.isni) == ("organisation", "0000000477312440")

        cold = registry.find_recording(s, "GBGLH2600001")
        assert (cold.title, cold.duration_ms, cold.contains_ai) == ("Cold Open", 192000, "Partly")
        assert [(a.party_id, a.role) for a in cold.artists] == [
            (iris.id, "main"),
            (parties["Kofi Brand"].id, "featured"),
        ]
        assert [(o.party_id, str(o.share)) for o in cold.owners] == [(glasshouse.id, "100")]
        work = s.get(Work, cold.work_id)
        assert work is not None and work.title == "Cold Open"
        assert work.source == "DDEX ERN ATT-ERN-0001 resource A1"
        assert [(sh.party_id, sh.role, str(sh.share)) for sh in work.shares] == [
            (iris.id, "writer", "33.333334"),
            (parties["Kofi Brand"].id, "writer", "33.333333"),
            (parties["Lena Ortiz"].id, "writer", "33.333333"),
        ]

        static = registry.find_recording(s, "GBGLH2600002")
        assert (static.contains_ai, static.work_id) == ("All", None)  # no writer credited
        night = registry.find_recording(s, "GBGLH2600003")
        assert night.contains_ai == "Undeclared"  # no ContainsAI element
        assert [o.party_id for o in night.owners] == [glasshouse.id]  # no P-line: owner_ref
        assert registry.verify_state(s)[1] is None


def test_ern_without_a_usable_owner_is_refused_or_skipped(engine: Engine) -> None:
    before = table_counts(engine)
    error = import_error(engine, ERN)
    assert error.problems == (
        Reject("line 85", "PLine", "no P-line names the master owner, and no owner_ref was given"),
    )
    assert table_counts(engine) == before

    report = run_import(engine, ERN, skip_invalid=True)
    assert report.counts["recording"] == 2
    assert [r.line_or_element for r in report.rejects] == ["line 85"]
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(Recording)) == 2
        assert "Lena Ortiz" in {p.name for p in registry.list_parties(s)}  # credited on A1


def test_ern_owner_ref_may_name_a_stored_party(engine: Engine) -> None:
    with transaction(engine) as s:
        label = f.party(s, "Stored Label", "label", kind="organisation")
    assert "not a PartyReference" in str(import_error(engine, ERN, owner_ref="Nobody"))
    run_import(engine, ERN, owner_ref="Stored Label")
    with transaction(engine) as s:
        night = registry.find_recording(s, "GBGLH2600003")
        assert [o.party_id for o in night.owners] == [label.id]


def test_ern_row_errors_name_line_and_element(engine: Engine, tmp_path: Path) -> None:
    text = ERN.read_text(encoding="utf-8").replace("GBGLH2600002", "GB-BAD")
    text = text.replace("<FullName>Lena Ortiz</FullName>", "<FullName></FullName>")
    path = tmp_path / "release.xml"
    path.write_text(text, encoding="utf-8")
    report = run_import(engine, path, skip_invalid=True, owner_ref="PGlasshouse")
    assert report.counts["recording"] == 0
    assert [(r.line_or_element, r.field) for r in report.rejects] == [
        ("line 36", "PartyList party PLena.name"),
        (
            "line 69",
            "/NewReleaseMessage/ResourceList/SoundRecording[2]/SoundRecordingEdition/ResourceId/ISRC",
        ),
        ("line 85", "PartyList party PLena.name"),
    ]
    assert report.rejects[1].reason == "malformed ISRC 'GB-BAD'"


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
  <!ENTITY lol "lol">
  <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
]>
<ern:NewReleaseMessage xmlns:ern="http://ddex.net/xml/ern/43">
  <MessageHeader><MessageId>&lol3;</MessageId></MessageHeader>
</ern:NewReleaseMessage>
"""
XXE = """<?xml version="1.0"?>
<!DOCTYPE r [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<ern:NewReleaseMessage xmlns:ern="http://ddex.net/xml/ern/43">
  <MessageHeader><MessageId>&xxe;</MessageId></MessageHeader>
</ern:NewReleaseMessage>
"""


@pytest.mark.parametrize("payload", [XXE, BILLION_LAUGHS], ids=["xxe", "billion-laughs"])
def test_unsafe_ern_is_refused_and_nothing_is_stored(
    engine: Engine, tmp_path: Path, payload: str
) -> None:
    with transaction(engine) as s:
        f.party(s, "Existing")
    before = table_counts(engine)
    path = tmp_path / "release.xml"
    path.write_text(payload, encoding="utf-8")
    for skip_invalid in (False, True):
        error = import_error(engine, path, skip_invalid=skip_invalid, owner_ref="Existing")
        assert "refused" in str(error) and "entit" in str(error)
        assert error.problems[0].line_or_element.startswith("line ")
    assert table_counts(engine) == before
