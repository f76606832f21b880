"""`attune dataset ...` and `attune consent impact`: signed training sets, what revocations touch.

Mounted by the main CLI (which also adds ``consent_impact_cmd`` to `attune consent`); shares its
--db option, --json flag, one-line errors and transactions.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Group
from rich.text import Text

import attune.cli as base
from attune.generate.dataset import (
    Impact,
    build_dataset,
    consent_impact,
    dataset_snapshots,
    get_dataset,
    list_datasets,
    list_models,
    manifest_of,
    model_snapshot,
    signed_manifest,
    verify_dataset,
    verify_signed,
)
from attune.rights.identifiers import normalise_territory

dataset_app = typer.Typer(
    help="Build, inspect, verify and export signed dataset manifests.", no_args_is_help=True
)

JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ACTOR = "cli"


def _short(value: str | None) -> str:
    return "" if value is None else value[:16]


def _write(path: Path, document: dict[str, Any]) -> None:
    """Write JSON to a file, naming the file when that fails."""
    try:
        path.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
    except OSError as exc:
        base.fail(f"{path}: cannot write ({exc.strerror})")


@dataset_app.command("build")
def dataset_build(
    use: Annotated[str, typer.Option(help="The use the set is for: train, ...")] = "train",
    at: Annotated[
        str | None, typer.Option(help="Decide at this date or instant (default now).")
    ] = None,
    territory: Annotated[
        str | None, typer.Option(help="ISO 3166-1 alpha-2; omitted means everywhere.")
    ] = None,
    name: Annotated[str | None, typer.Option(help="A name for the dataset.")] = None,
    licensee: Annotated[
        str | None, typer.Option(help="Only agreements with this licensee (the AI platform).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Also write the signed manifest to this JSON file.")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Select what the consent engine allows for USE, sign the manifest and store it."""
    where = normalise_territory(territory) if territory else None
    when = base.parse_when(at, "--at") or datetime.now(UTC)
    with base.session() as s:
        licensee_id = base.party_ref(s, licensee).id if licensee else None
        dataset = build_dataset(
            s, use=use, at=when, territory=where, name=name, actor=ACTOR, licensee_id=licensee_id
        )
        snap = dataset_snapshots(s, [dataset])[0]
        by_code: dict[str, int] = manifest_of(dataset)["counts"]["excluded_by_code"]
        signed = signed_manifest(dataset)
    if out is not None:
        _write(out, signed)
    data = {**snap, "excluded_by_code": by_code}

    def render() -> str:
        ranked = sorted(by_code.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        top = ", ".join(f"{code} ×{n}" for code, n in ranked) or "none"
        place = f"in {where}" if where else "everywhere"
        return "\n".join(
            [
                f"Built dataset {snap['id']} {snap['name']!r}: {snap['included']} included, "
                f"{snap['excluded']} excluded for {use!r} {place} at {snap['at']}",
                f"  top exclusion reasons: {top}",
                f"  sha256 {snap['sha256']}",
                f"  signed with Ed25519 key {snap['public_key']}",
            ]
            + ([f"  signed manifest written to {out}"] if out else [])
        )

    base.emit(data, as_json, render)


@dataset_app.command("list")
def dataset_list(
    limit: Annotated[int, typer.Option(help="At most this many.")] = 1000,
    as_json: JsonOpt = False,
) -> None:
    """List datasets."""
    with base.session() as s:
        rows = dataset_snapshots(s, list_datasets(s, limit=limit))
    base.emit(
        rows,
        as_json,
        lambda: base.table(
            "Datasets",
            [{**r, "sha256": _short(r["sha256"])} for r in rows],
            ["id", "name", "use", "at", "territory", "included", "excluded", "sha256"],
        ),
    )


@dataset_app.command("show")
def dataset_show(
    dataset_id: Annotated[int, typer.Argument(help="Dataset id.")],
    excluded: Annotated[
        bool, typer.Option("--excluded", help="Also list the excluded recordings and why.")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Show a dataset: its header, the models trained on it, its included (and excluded) items."""
    with base.session() as s:
        dataset = get_dataset(s, dataset_id)
        snap = dataset_snapshots(s, [dataset])[0]
        manifest = manifest_of(dataset)
        models = [model_snapshot(m) for m in list_models(s, dataset_id)]
    data = {**snap, "models": models, "included_items": manifest["included"]}
    if excluded:
        data["excluded_items"] = manifest["excluded"]

    def render() -> Group:
        head = (
            f"Dataset {snap['id']} {snap['name']!r}: {snap['use']!r} "
            f"{snap['territory'] or 'everywhere'} at {snap['at']}; sha256 {snap['sha256']}"
        )
        if models:
            head += "\nModels trained on it: " + ", ".join(m["id"] for m in models)
        rows = [
            {
                **i,
                "content_sha256": _short(i["content_sha256"]),
                "score_sha256": _short(i["score_sha256"]),
            }
            for i in manifest["included"]
        ]
        columns = ["recording_id", "isrc", "title", "work_id", "iswc"]
        parts: list[Any] = [
            Text(head),
            base.table("Included", rows, [*columns, "content_sha256", "score_sha256"]),
        ]
        if excluded:
            why = [
                {**i, "reason": "; ".join(f"{r['code']}: {r['message']}" for r in i["reasons"])}
                for i in manifest["excluded"]
            ]
            parts.append(base.table("Excluded", why, ["recording_id", "isrc", "reason"]))
        else:
            parts.append(Text(f"{snap['excluded']} excluded (list them with --excluded)"))
        return Group(*parts)

    base.emit(data, as_json, render)


@dataset_app.command("verify")
def dataset_verify(
    dataset_id: Annotated[int | None, typer.Argument(help="Dataset id.")] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file", help="Check an exported signed manifest offline instead.", dir_okay=False
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Check a dataset's hash, signature, stored items and content hashes (exit 1 on a problem)."""
    if file is not None and dataset_id is None:
        try:
            document = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            base.fail(f"{file}:{exc.lineno}: not valid JSON ({exc.msg})")
        result = verify_signed(document if isinstance(document, dict) else {})
        subject = str(file)
    elif dataset_id is not None and file is None:
        with base.session() as s:
            result = verify_dataset(s, dataset_id)
        subject = f"dataset {dataset_id}"
    else:
        base.fail("give a dataset ID or --file FILE, not both")
    data = {"subject": subject, "ok": result.ok, "problems": list(result.problems)}
    if result.ok:
        base.emit(data, as_json, lambda: f"{subject} verifies: hash, signature and content match")
        return
    if as_json:
        base.emit(data, True)
    else:
        typer.echo(f"{subject} FAILED verification:", err=True)
        for problem in result.problems:
            typer.echo(f"  {problem}", err=True)
    raise typer.Exit(1)


@dataset_app.command("export")
def dataset_export(
    dataset_id: Annotated[int, typer.Argument(help="Dataset id.")],
    out: Annotated[Path, typer.Option(help="The JSON file to write.", dir_okay=False)],
) -> None:
    """Write the signed manifest (manifest, sha256, signature, public key): checkable offline."""
    with base.session() as s:
        signed = signed_manifest(get_dataset(s, dataset_id))
    _write(out, signed)
    base.out.print(
        f"Wrote the signed manifest of dataset {dataset_id} to {out} (sha256 {signed['sha256']})",
        highlight=False,
    )


def _render_impact(name: str, impact: Impact) -> str:
    """The impact as lines of text, one per dataset item, model and output."""
    when = impact.at.isoformat()
    if not impact.datasets:
        return (
            f"Nothing is affected for {name} (party {impact.party_id}) at {when}: no dataset "
            "holds an item they no longer allow."
        )
    lines = [f"Affected for {name} (party {impact.party_id}) at {when}:"]
    for d in impact.datasets:
        lines.append(f"  dataset {d.id} {d.name!r} (sha256 {_short(d.sha256)}…):")
        lines += [
            f"    recording {i.recording_id} ({i.isrc}): {r}" for i in d.items for r in i.reasons
        ]
    lines += [f"  model {m.id} (dataset {m.dataset_id}) is flagged" for m in impact.models]
    lines += [
        f"  output {o.id} (model {o.model}): recordings "
        + (", ".join(map(str, o.recording_ids)) or "-")
        + (f"; works {', '.join(map(str, o.work_ids))}" if o.work_ids else "")
        for o in impact.outputs
    ]
    return "\n".join(lines)


def consent_impact_cmd(
    party: Annotated[str, typer.Argument(help="Whose revocations (id, ISNI, IPI or name).")],
    at: Annotated[
        str | None, typer.Option(help="As of this date or instant (default now).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """List the datasets, models and outputs holding works a party no longer allows, and why."""
    when = base.parse_when(at, "--at") or datetime.now(UTC)
    with base.session() as s:
        who = base.party_ref(s, party)
        impact = consent_impact(s, who.id, at=when)
        name = who.name
    base.emit(impact.as_dict(), as_json, lambda: _render_impact(name, impact))
