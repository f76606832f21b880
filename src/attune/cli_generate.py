"""`attune model train|list|show` and `attune generate`: governed generation from the command line.

Training reads only a verified dataset manifest; generation runs the prompt gate, the output
checks and provenance stamping, and prints why whenever it refuses.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

import attune.cli as base

model_app = typer.Typer(help="Train and list generators (trained only on signed datasets).",
                        no_args_is_help=True)
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
AtOpt = Annotated[str | None, typer.Option(help="Decide consent at this date (default now).")]
TerritoryOpt = Annotated[str | None, typer.Option(help="Territory of the release (ISO code).")]
IndexOpt = Annotated[Path | None, typer.Option(
    help="Catalog audio index to check the render against (default ATTUNE_INDEX if it exists).")]
ACTOR = "cli"


def _refused(exc: Any) -> None:
    """Print every reason of a refusal and exit 3 (refused, as distinct from an error)."""
    base.err.print(f"[red]refused:[/] {exc.stage}", highlight=False)
    for reason in exc.reasons:
        base.err.print(f"  - {reason}", highlight=False, markup=False)
    sys.exit(3)


@model_app.command("train")
def model_train(
    dataset: Annotated[int, typer.Argument(help="Dataset id (see `attune dataset list`).")],
    order: Annotated[int, typer.Option(help="Longest Markov context in notes (3-4).")] = 4,
    as_json: JsonOpt = False,
) -> None:
    """Train the reference generator on a dataset whose signature and hashes verify."""
    from attune.generate.pipeline import GenerationRefused, train_model, work_dir

    if not 1 <= order <= 8:
        base.fail(f"--order: {order} is outside 1-8")
    try:
        with base.session() as s, base.err.status("Training on the dataset's scores"):
            model, record = train_model(s, work_dir(base.STATE.engine()), dataset, actor=ACTOR,
                                        order=order)
            data = {"id": record.id, "dataset_id": record.dataset_id, "kind": record.kind,
                    "works": len(model.works),
                    "harmoniser": model.harmoniser is not None,
                    "artifact_sha256": record.artifact_sha256, "path": record.artifact_path}
    except GenerationRefused as exc:
        _refused(exc)
    base.emit(data, as_json, lambda: f"Trained model [bold]{data['id']}[/] on {data['works']} "
              f"works of dataset {dataset} (harmoniser: {'yes' if data['harmoniser'] else 'no'})")


def _flag(s: Any, dataset_id: int, when: datetime) -> str:
    from attune.generate.dataset import stale_items

    stale = stale_items(s, dataset_id, at=when)
    return f"flagged: {len(stale)} item(s) since refused" if stale else "ok"


@model_app.command("list")
def model_list(as_json: JsonOpt = False) -> None:
    """Registered models, their datasets, and whether a revocation has since flagged them."""
    from sqlalchemy import select

    from attune.generate.models import Model

    when = datetime.now(UTC)
    with base.session() as s:
        rows: list[dict[str, Any]] = [{"id": m.id, "dataset_id": m.dataset_id, "kind": m.kind,
                 "created_at": m.created_at.isoformat(), "status": _flag(s, m.dataset_id, when)}
                for m in s.scalars(select(Model).order_by(Model.created_at, Model.id))]

    def table() -> Table:
        t = Table("id", "dataset", "kind", "created", "status")
        for r in rows:
            t.add_row(r["id"], str(r["dataset_id"]), r["kind"], r["created_at"][:19], r["status"])
        return t

    base.emit(rows, as_json, table)


def generate(
    prompt: Annotated[str, typer.Argument(help="What to make: 'a chorale in G major, 8 bars'.")],
    model: Annotated[str, typer.Option(help="Model id (see `attune model list`).")],
    platform: Annotated[str, typer.Option(help="The party running the model (the licensee).")],
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same piece.")] = 1,
    at: AtOpt = None,
    territory: TerritoryOpt = None,
    index: IndexOpt = None,
    allow_flagged: Annotated[bool, typer.Option(
        help="Generate even if a revocation flagged the model.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Generate one output behind the prompt gate and plagiarism checks, stamped and credited."""
    from attune.generate.pipeline import (
        GenerationRefused,
        generate_output,
        record_refusal,
        work_dir,
    )
    from attune.identify.index import index_dir

    when = base.parse_when(at, "--at")
    audio_index = index if index is not None else index_dir()
    engine = base.STATE.engine()
    try:
        with base.session() as s, base.err.status("Generating"):
            platform_id = base.party_ref(s, platform).id
            done = generate_output(
                s, work_dir(engine), model_id=model, prompt=prompt, seed=seed,
                platform_id=platform_id, actor=ACTOR, at=when,
                territory=territory.upper() if territory else None,
                audio_index=audio_index if audio_index.exists() else None,
                allow_flagged=allow_flagged)
            data: dict[str, Any] = {
                "output_id": done.output_id, "model": model, "seed": seed,
                "description": done.piece.describe(), "wav": str(done.wav),
                "midi": str(done.midi), "credits": str(done.credits),
                "checks": list(done.checks.reasons()),
                "gate": [r.message for r in done.gate.reasons],
                "work_shares": {str(w): str(v) for w, v in done.piece.work_shares.items()},
                "recording_shares": {str(r): str(v)
                                     for r, v in done.piece.recording_shares.items()},
            }
    except GenerationRefused as exc:
        with base.session() as s:
            record_refusal(s, ACTOR, model, prompt, seed, exc)
        _refused(exc)

    def render() -> Table:
        t = Table("work", "share", title=f"Credits of {data['output_id']}", title_justify="left")
        top = sorted(data["work_shares"].items(), key=lambda kv: -float(kv[1]))
        for work, share in top[:10]:
            t.add_row(work, share)
        if len(top) > 10:
            t.add_row(f"... {len(top) - 10} more", "")
        return t

    if not as_json:
        base.out.print(f"[bold]{data['output_id']}[/]: {data['description']}", highlight=False)
        base.out.print(f"{data['wav']} (watermarked, content credentials signed)",
                       highlight=False, soft_wrap=True)
    base.emit(data, as_json, render)
