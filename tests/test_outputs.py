"""The AI-output registry: validated records, audited writes, JSON import, CLI, on SQLite and PG."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, func, select
from typer.testing import CliRunner

from attune.rights.models import Recording
from attune.rights.outputs import (
    AttributionIn,
    Output,
    OutputImportError,
    OutputIn,
    add_output,
    import_outputs,
    output_snapshot,
)
from attune.rights.registry import RegistryError
from attune.store.audit import AuditEntry, verify_chain
from attune.store.db import transaction
from tests import factory as f
from tests.test_royalties_world import mounted_app


def _catalog(engine: Engine) -> dict[str, int]:
    with transaction(engine) as s:
        label = f.party(s, "Northbound Records", "label", kind="organisation")
        platform = f.party(s, "Tonal AI", "platform", kind="organisation")
        writer = f.party(s, "Mara Vell", "songwriter")
        work = f.work(s, "Harbour Lights", writer)
        rec = f.recording(s, "Harbour Lights", work, [label], [writer])
        return {"platform": platform.id, "work": work.id, "rec": rec.id}


def test_attribution_shares_must_sum_to_exactly_one() -> None:
    ok = OutputIn(id="gen-1", model="m", platform_id=1, attributions=(
        AttributionIn(recording_id=1, share=Decimal("0.333334")),
        AttributionIn(work_id=1, share=Decimal("0.666666"))))  # fmt: skip
    assert sum(a.share for a in ok.attributions) == 1
    with pytest.raises(ValidationError, match=r"sum to 0\.999999, not exactly 1"):
        OutputIn(
            id="gen-1",
            model="m",
            platform_id=1,
            attributions=(AttributionIn(recording_id=1, share=Decimal("0.999999")),),
        )
    with pytest.raises(ValidationError, match=r"decimal places"):
        AttributionIn(recording_id=1, share=Decimal("0.1234567"))
    with pytest.raises(ValidationError, match="exactly one of recording_id and work_id"):
        AttributionIn(recording_id=1, work_id=1, share=Decimal(1))
    with pytest.raises(ValidationError, match="shaped like an ISRC"):
        OutputIn(
            id="GB-ATT-26-00001",
            model="m",
            platform_id=1,
            attributions=(AttributionIn(recording_id=1, share=Decimal(1)),),
        )
    with pytest.raises(ValidationError, match="listed twice"):
        OutputIn(id="gen-2", model="m", platform_id=1, attributions=(
            AttributionIn(recording_id=1, share=Decimal("0.5")),
            AttributionIn(recording_id=1, share=Decimal("0.5"))))  # fmt: skip


def test_add_output_checks_references_and_audits(engine: Engine) -> None:
    ids = _catalog(engine)
    data = OutputIn(
        id="gen-1",
        model="tonal-2",
        platform_id=ids["platform"],
        prompt="a ballad",
        attributions=(
            AttributionIn(recording_id=ids["rec"], share=Decimal("0.7")),
            AttributionIn(work_id=ids["work"], share=Decimal("0.3")),
        ),
    )
    with transaction(engine) as s:
        snap = output_snapshot(add_output(s, data, "test"))
    assert snap["attributions"][0]["share"] == "0.7"
    with pytest.raises(RegistryError, match="already registered"), transaction(engine) as s:
        add_output(s, data, "test")
    bad = data.model_copy(update={"id": "gen-2", "attributions": (
        AttributionIn(recording_id=9999, share=Decimal(1)),)})  # fmt: skip
    with (
        pytest.raises(RegistryError, match=r"attributions\[0\].recording_id"),
        transaction(engine) as s,
    ):
        add_output(s, bad, "test")
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(Output)) == 1
        actions = s.scalars(select(AuditEntry.action).where(AuditEntry.entity == "output")).all()
        assert actions == ["output.add"]
        assert verify_chain(s)[1] is None  # fmt: skip


def test_json_import_is_all_or_nothing_and_skips_identical_records(
    engine: Engine, tmp_path: Path
) -> None:
    ids = _catalog(engine)
    with transaction(engine) as s:
        rec = s.get(Recording, ids["rec"])
        assert rec is not None
        isrc = rec.isrc
    records = [
        {"id": "gen-1", "model": "tonal-2", "platform_id": ids["platform"],
         "attributions": [{"isrc": isrc, "share": "1"}]},
        {"id": "gen-2", "model": "tonal-2", "platform_id": ids["platform"], "prompt": "p",
         "attributions": [{"work_id": ids["work"], "share": "0.5"},
                          {"recording_id": ids["rec"], "share": "0.5"}]},
    ]  # fmt: skip
    good = tmp_path / "outputs.json"
    good.write_text(json.dumps({"outputs": records}))
    with transaction(engine) as s:
        assert import_outputs(s, good, "test").added == ("gen-1", "gen-2")
    with transaction(engine) as s:
        again = import_outputs(s, good, "test")
    assert again.added == () and again.skipped == ("gen-1", "gen-2")
    broken = [
        *records,
        {
            "id": "gen-3",
            "model": "m",
            "platform_id": ids["platform"],
            "attributions": [{"recording_id": ids["rec"], "share": "0.9"}],
        },
    ]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([*broken, {**records[0], "model": "other"}]))
    with pytest.raises(OutputImportError) as exc, transaction(engine) as s:
        import_outputs(s, bad, "test")
    assert "outputs[2]" in exc.value.problems[0] and "not exactly 1" in exc.value.problems[0]
    assert any("outputs[3].id" in p for p in exc.value.problems)
    with transaction(engine) as s:
        assert s.scalar(select(func.count()).select_from(Output)) == 2


def test_cli_output_add_and_import(engine: Engine, db_url: str, tmp_path: Path) -> None:
    ids = _catalog(engine)
    runner = CliRunner()
    app = mounted_app()
    res = runner.invoke(app, ["--db", db_url, "output", "add", "gen-9", "--model", "tonal-2",
                              "--platform", "Tonal AI", "--recording", f"{ids['rec']}=0.25",
                              "--work", f"{ids['work']}=0.75", "--prompt", "sea shanty",
                              "--json"])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["attributions"][1] == {
        "recording_id": None,
        "work_id": ids["work"],
        "share": "0.75",
    }
    path = tmp_path / "o.json"
    path.write_text(
        json.dumps(
            [
                {
                    "id": "gen-10",
                    "model": "m",
                    "platform_id": ids["platform"],
                    "attributions": [{"recording_id": ids["rec"], "share": 1}],
                }
            ]
        )
    )
    res = runner.invoke(app, ["--db", db_url, "output", "import", str(path), "--json"])
    assert res.exit_code == 0 and json.loads(res.stdout)["added"] == ["gen-10"]
    res = runner.invoke(app, ["--db", db_url, "output", "show", "gen-10", "--json"])
    assert json.loads(res.stdout)["platform_id"] == ids["platform"]
