"""The `attune` command through its real entry point, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from attune import cli

ATTUNE = str(Path(sys.executable).with_name("attune"))


def run(db: str, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `attune --db DB ARGS...` and return the finished process."""
    env = {**os.environ, "COLUMNS": "200"}
    env.pop("ATTUNE_DB", None)
    proc = subprocess.run(
        [ATTUNE, "--db", db, *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    if ok and proc.returncode != 0:
        raise AssertionError(f"attune {' '.join(args)} failed: {proc.stderr}")
    return proc


def data(db: str, *args: str) -> Any:
    """Run a command with --json and parse its output."""
    return json.loads(run(db, *args, "--json").stdout)


def test_catalog_consent_decision_flow(db_url: str) -> None:
    label = data(
        db_url, "party", "add", "Northbound Records", "--kind", "organisation", "--role", "label"
    )
    data(db_url, "party", "add", "Tonal AI", "--kind", "organisation", "--role", "platform")
    artist = data(
        db_url,
        "party",
        "add",
        "Mara Vell",
        "--role",
        "artist",
        "--role",
        "songwriter",
        "--isni",
        "0000 0001 2146 438X",
        "--alias",
        "M. Vell",
    )
    assert artist["isni"] == "000000012146438X"
    work = data(
        db_url, "work", "add", "Harbour Lights", "--writer", "M. Vell", "--iswc", "T-034.524.680-1"
    )
    assert work["iswc"] == "T0345246801"
    assert work["shares"] == [{"party_id": artist["id"], "role": "writer", "share": "100"}]
    rec = data(
        db_url,
        "recording",
        "add",
        "Harbour Lights",
        "--isrc",
        "GB-ATT-26-00001",
        "--owner",
        "Northbound Records",
        "--artist",
        "Mara Vell",
        "--work",
        "T-034.524.680-1",
        "--duration",
        "201.5",
    )
    assert rec["isrc"] == "GBATT2600001" and rec["duration_ms"] == 201500
    agreement = data(
        db_url,
        "agreement",
        "add",
        "--licensor",
        str(label["id"]),
        "--licensee",
        "Tonal AI",
        "--use",
        "train",
        "--worldwide",
        "--exclude",
        "US",
        "--start",
        "2026-01-01",
        "--ai-share",
        "0.25",
    )
    assert agreement["excluded_territories"] == ["US"]

    refused = data(
        db_url,
        "decide",
        "train",
        "--recording",
        "GBATT2600001",
        "--at",
        "2026-06-01",
        "--territory",
        "FR",
    )
    assert refused["allowed"] is False
    assert [r["code"] for r in refused["reasons"]] == ["consent_missing"]

    grant = data(db_url, "consent", "grant", "Mara Vell", "--use", "train", "--from", "2026-01-01")
    allowed = data(
        db_url,
        "decide",
        "train",
        "--recording",
        "GBATT2600001",
        "--at",
        "2026-06-01",
        "--territory",
        "fr",
    )
    assert allowed["allowed"] is True
    assert {r["agreement_id"] for r in allowed["reasons"]} >= {agreement["id"]}
    assert grant["id"] in {r["consent_id"] for r in allowed["reasons"]}

    revocation = data(db_url, "consent", "revoke", str(grant["id"]), "--from", "2026-05-01")
    after = data(
        db_url,
        "decide",
        "train",
        "--recording",
        "GBATT2600001",
        "--at",
        "2026-06-01",
        "--territory",
        "FR",
    )
    assert after["allowed"] is False and after["reasons"][0]["consent_id"] == revocation["id"]
    history = data(db_url, "consent", "history", "--recording", "GBATT2600001")
    assert [(h["id"], h["decision"]) for h in history] == [
        (grant["id"], "allowed"),
        (revocation["id"], "not_allowed"),
    ]

    human = run(
        db_url,
        "decide",
        "train",
        "--recording",
        "GBATT2600001",
        "--at",
        "2026-06-01",
        "--territory",
        "FR",
    ).stdout
    assert "NOT ALLOWED" in human and f"consent record {revocation['id']}" in human
    assert len(data(db_url, "party", "list")) == 3
    assert data(db_url, "recording", "show", "GB-ATT-26-00001")["title"] == "Harbour Lights"
    verified = data(db_url, "audit", "verify")
    assert verified["ok"] is True and verified["entries"] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("party", "add", "X", "--isni", "0000000121464381"), "isni"),
        (("party", "add", "X", "--role", "wizard"), "roles"),
        (("work", "add", "W", "--writer", "Nobody"), "no party matches 'Nobody'"),
        (("work", "add", "W", "--writer", "1=60"), "not 100%"),
        (("work", "add", "W", "--writer", "1", "--iswc", "T-034.524.680-2"), "iswc"),
        (("recording", "add", "R", "--isrc", "XX123", "--owner", "1"), "isrc"),
        (
            (
                "agreement",
                "add",
                "--licensor",
                "1",
                "--licensee",
                "1",
                "--use",
                "train",
                "--start",
                "2026-13-01",
                "--worldwide",
            ),
            "--start",
        ),
        (
            (
                "agreement",
                "add",
                "--licensor",
                "1",
                "--licensee",
                "2",
                "--use",
                "train",
                "--start",
                "2026-01-01",
            ),
            "territories",
        ),
        (("consent", "grant", "1", "--use", "Train!"), "use"),
        (("consent", "grant", "1", "--use", "train", "--terms", "{bad"), "--terms"),
        (("consent", "revoke", "999"), "no consent record with id 999"),
        (("decide", "train", "--recording", "NOPE"), "no recording"),
        (("decide", "train", "--recording", "1", "--territory", "ZZ"), "territory"),
        (("party", "add"), "missing argument"),
        (("decide",), "missing argument"),
    ],
)
def test_bad_input_is_one_line_error_and_changes_nothing(
    sqlite_url: str, args: tuple[str, ...], message: str
) -> None:
    data(sqlite_url, "party", "add", "Solo", "--role", "artist")
    data(sqlite_url, "party", "add", "Other", "--role", "label")
    before = data(sqlite_url, "audit", "verify")["entries"]
    proc = run(sqlite_url, *args, ok=False)
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert message.lower() in lines[0].lower()
    assert "Traceback" not in proc.stderr
    assert data(sqlite_url, "audit", "verify")["entries"] == before


def _command_paths(group: typer.Typer, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for cmd in group.registered_commands:
        assert cmd.callback is not None
        paths.append((*prefix, cmd.name or cmd.callback.__name__.replace("_", "-")))
    for sub in group.registered_groups:
        assert sub.typer_instance is not None and sub.name
        paths += _command_paths(sub.typer_instance, (*prefix, sub.name))
    return paths


def test_every_command_has_help() -> None:
    paths = _command_paths(cli.app)
    assert ("consent", "grant") in paths and ("audit", "verify") in paths and len(paths) > 30
    runner = CliRunner()
    for path in paths:
        result = runner.invoke(cli.app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage:" in result.output and "--help" in result.output
    proc = subprocess.run(
        [ATTUNE, "--help"], capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0 and "consent" in proc.stdout


def test_audit_verify_catches_a_direct_edit(tmp_path: Path) -> None:
    db = str(tmp_path / "a.db")
    data(db, "party", "add", "Mara Vell", "--role", "artist")
    data(db, "party", "add", "Northbound", "--role", "label", "--kind", "organisation")
    data(db, "consent", "grant", "Mara Vell", "--use", "train")
    assert data(db, "audit", "verify")["ok"] is True

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE consents SET decision = 'not_allowed' WHERE id = 1")
    proc = run(db, "audit", "verify", "--json", ok=False)
    assert proc.returncode == 2
    assert json.loads(proc.stdout)["problem"] == (
        "consent 1 differs from its last audited state (edited)"
    )

    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE consents SET decision = 'allowed' WHERE id = 1")
        conn.execute("UPDATE audit_log SET actor = 'someone else' WHERE seq = 2")
    proc = run(db, "audit", "verify", ok=False)
    assert proc.returncode == 2
    assert "entry 2" in proc.stdout and "edited" in proc.stdout
