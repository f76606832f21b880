"""`attune provenance ...` and `attune watermark ...`: credits, content credentials, watermark.

Mounted by the main CLI as ``app.add_typer(provenance_app, name="provenance")`` and
``app.add_typer(watermark_app, name="watermark")``.  Every command exits 1 with a one-line
error on bad input and offers --json.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

from attune.provenance import (
    ContentCredentialsError,
    CreditsError,
    Generation,
    ManifestReport,
    WatermarkError,
    detect_file,
    embed_file,
    from_json,
    load_credits,
    read_manifest,
    sign_file,
    to_ern_fragment,
    to_json,
    watermark_key,
)
from attune.provenance._audio_io import AudioFileError
from attune.provenance.c2pa import TrainingUse
from attune.provenance.credits import ContainsAI

__all__ = ["provenance_app", "watermark_app"]

out = Console()
err = Console(stderr=True)
provenance_app = typer.Typer(
    help="AI-disclosure credits (DDEX) and C2PA content credentials.", no_args_is_help=True
)
watermark_app = typer.Typer(help="Embed and detect the inaudible output-id watermark.",
                            no_args_is_help=True)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
FileArg = Annotated[Path, typer.Argument(help="Audio file (or ERN .xml / credits .json).")]
KeyDirOpt = Annotated[
    Path | None,
    typer.Option("--key-dir", help="Signing keys (default: $ATTUNE_C2PA_KEY_DIR, ~/.attune/c2pa)."),
]
_ERRORS = (ContentCredentialsError, CreditsError, WatermarkError, AudioFileError)


def _fail(message: str) -> NoReturn:
    """Print one error line and exit with status 1."""
    err.print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(1)


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, ensure_ascii=False))


def _report_data(report: ManifestReport) -> dict[str, Any]:
    """A manifest report as plain data."""
    return {
        "path": report.path,
        "ok": report.ok,
        "state": report.state,
        "problems": list(report.problems),
        "manifest": report.manifest,
    }


def _print_report(report: ManifestReport) -> None:
    """Human summary of a validated manifest: state, problems, actions and assertions."""
    colour = "green" if report.ok else "red"
    out.print(f"[{colour}]{report.state}[/{colour}] {report.path}", highlight=False)
    for problem in report.problems:
        out.print(f"  problem: {problem}", highlight=False)
    labels = [a.get("label", "?") for a in report.manifest.get("assertions", [])]
    out.print(f"  title: {report.manifest.get('title', '-')}", highlight=False)
    out.print(f"  assertions: {', '.join(labels) or '-'}", highlight=False)
    for action in (report.assertion("c2pa.actions.v2") or {}).get("actions", []):
        out.print(
            f"  action: {action.get('action')} ({action.get('digitalSourceType', '-')})",
            highlight=False,
        )
    for ingredient in report.manifest.get("ingredients", []):
        out.print(f"  ingredient: {ingredient.get('title')}", highlight=False)
    generation = report.assertion("dev.attune.generation") or {}
    if generation.get("output_id") is not None:
        out.print(f"  output id: {generation['output_id']}", highlight=False)


@provenance_app.command("credits")
def credits_command(
    file: FileArg,
    ern: Annotated[bool, typer.Option("--ern", help="Print an ERN 4.3.2 fragment.")] = False,
    as_json: JsonOpt = False,
    key_dir: KeyDirOpt = None,
) -> None:
    """Show the AI-disclosure credits of an ERN message, a credits JSON or a signed file."""
    try:
        releases = load_credits(file, key_dir=key_dir)
    except _ERRORS as exc:
        _fail(str(exc))
    if ern:
        typer.echo("\n".join(to_ern_fragment(r) for r in releases))
    elif as_json:
        _echo_json([json.loads(to_json(r)) for r in releases])
    else:
        for release in releases:
            table = Table(title=f"{release.title or release.reference}: "
                                f"ContainsAI {release.contains_ai}")
            for column in ("recording", "ContainsAI", "facets", "contributors"):
                table.add_column(column)
            for rec in release.recordings:
                facets = ", ".join(f"{k}={v}" for k, v in rec.facets.items() if v != "Undeclared")
                people = ", ".join(
                    f"{c.name or c.party_reference} ({'/'.join(c.roles)}: {c.ai_contribution})"
                    for c in rec.contributors
                )
                table.add_row(rec.title or rec.reference, rec.contains_ai, facets or "-", people)
            out.print(table)


@provenance_app.command("sign")
def sign_command(
    file: FileArg,
    output: Annotated[Path | None, typer.Option("--out", help="Signed copy (default: in place).")]
    = None,
    title: Annotated[str | None, typer.Option(help="Title (default: the file name).")] = None,
    output_id: Annotated[int | None, typer.Option("--output-id", help="Output id.")] = None,
    model: Annotated[str | None, typer.Option(help="Generator name and version.")] = None,
    dataset_sha256: Annotated[
        str | None, typer.Option("--dataset-sha256", help="SHA-256 of the dataset manifest.")
    ] = None,
    contains_ai: Annotated[str, typer.Option("--contains-ai", help="All, Partly or None.")] = "All",
    training: Annotated[
        str, typer.Option(help="cawg.training-mining use: allowed, notAllowed, constrained.")
    ] = "notAllowed",
    credits_file: Annotated[
        Path | None, typer.Option("--credits", help="Credits JSON to embed.")
    ] = None,
    key_dir: KeyDirOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Embed a signed C2PA manifest (created by a trained model) in a WAV or MP3 file."""
    if contains_ai not in ("All", "Partly", "None"):
        _fail(f"--contains-ai must be All, Partly or None, not {contains_ai!r}")
    if training not in ("allowed", "notAllowed", "constrained"):
        _fail(f"--training must be allowed, notAllowed or constrained, not {training!r}")
    try:
        credits = from_json(credits_file.read_bytes()) if credits_file else None
        generation = Generation(
            title=title or file.name,
            output_id=output_id,
            model=model,
            dataset_sha256=dataset_sha256,
            contains_ai=_contains_ai(contains_ai),
            training=_training(training),
            credits=credits,
        )
        report = sign_file(file, output or file, generation, key_dir=key_dir)
    except OSError as exc:
        _fail(f"{credits_file}: cannot read: {exc.strerror or exc}")
    except _ERRORS as exc:
        _fail(str(exc))
    if as_json:
        _echo_json(_report_data(report))
    else:
        _print_report(report)


def _contains_ai(value: str) -> ContainsAI:
    """A checked ContainsAI value (typer gives a str)."""
    states: dict[str, ContainsAI] = {"All": "All", "Partly": "Partly", "None": "None"}
    return states[value]


def _training(value: str) -> TrainingUse:
    """A checked training-mining use (typer gives a str)."""
    uses: dict[str, TrainingUse] = {
        "allowed": "allowed", "notAllowed": "notAllowed", "constrained": "constrained"
    }
    return uses[value]


@provenance_app.command("read")
def read_command(file: FileArg, key_dir: KeyDirOpt = None, as_json: JsonOpt = False) -> None:
    """Validate and print the C2PA manifest of an audio file (exit 1 if it does not validate)."""
    try:
        report = read_manifest(file, key_dir=key_dir)
    except _ERRORS as exc:
        _fail(str(exc))
    if as_json:
        _echo_json(_report_data(report))
    else:
        _print_report(report)
    if not report.ok:
        raise typer.Exit(1)


@provenance_app.command("verify")
def verify_command(file: FileArg, key_dir: KeyDirOpt = None, as_json: JsonOpt = False) -> None:
    """Say whether a file's content credentials validate; exit 1 with the reason if not."""
    try:
        report = read_manifest(file, key_dir=key_dir)
    except _ERRORS as exc:
        _fail(str(exc))
    if as_json:
        _echo_json({"path": report.path, "ok": report.ok, "state": report.state,
                    "problems": list(report.problems)})
    elif report.ok:
        out.print(f"[green]ok[/green]: {file}: {report.state}", highlight=False)
    else:
        reasons = "; ".join(report.problems) or report.state
        err.print(f"[red]invalid[/red]: {file}: {reasons}", highlight=False)
    if not report.ok:
        raise typer.Exit(1)


@watermark_app.command("embed")
def embed_command(
    file: FileArg,
    output_id: Annotated[int, typer.Option("--id", help="Output id to carry (0 .. 2^32-1).")],
    output: Annotated[Path | None, typer.Option("--out", help="Marked copy (default: in place).")]
    = None,
    as_json: JsonOpt = False,
) -> None:
    """Mark an audio file with a 32-bit output id at >= 30 dB SNR."""
    target = output or file
    try:
        marked = embed_file(file, target, output_id, key=watermark_key())
    except _ERRORS as exc:
        _fail(str(exc))
    data = {"path": str(target), "output_id": output_id, "snr_db": round(marked.snr_db, 2)}
    if as_json:
        _echo_json(data)
    else:
        out.print(f"Marked {target} with id {output_id} (SNR {marked.snr_db:.1f} dB)",
                  highlight=False)


@watermark_app.command("detect")
def detect_command(
    file: FileArg,
    no_search: Annotated[
        bool, typer.Option("--no-search", help="Skip the speed/tempo/pitch search.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Read the output id from an audio file (or excerpt); says so when there is none."""
    try:
        found = detect_file(file, key=watermark_key(), search=not no_search)
    except _ERRORS as exc:
        _fail(str(exc))
    data = {
        "path": str(file),
        "output_id": found.output_id,
        "axis": found.axis,
        "scale": found.scale,
        "score": round(found.score, 2),
    }
    if as_json:
        _echo_json(data)
    elif found.output_id is None:
        out.print(f"No watermark found in {file}", highlight=False)
    else:
        warp = "" if found.scale == 1.0 else f" ({found.axis} x{found.scale:.4f})"
        out.print(f"Output id {found.output_id} in {file}{warp}", highlight=False)
