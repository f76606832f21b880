"""`attune identify ...`: index catalog audio and find it in other audio.

Each indexed file names its recording: the file's stem is the registry recording id (``42.flac``)
or its ISRC (``GBAYE0601498.mp3``, looked up in the registry chosen by --db or ATTUNE_DB). The
index lives in --index DIR, ATTUNE_INDEX or .attune/identify.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

AUDIO_SUFFIXES = {
    ".wav",
    ".flac",
    ".ogg",
    ".oga",
    ".mp3",
    ".m4a",
    ".aac",
    ".mp4",
    ".opus",
    ".aif",
    ".aiff",
    ".wma",
    ".webm",
}

app = typer.Typer(
    help="Find catalog recordings inside uploads and generated audio.", no_args_is_help=True
)
out = Console()
err = Console(stderr=True)

IndexOption = Annotated[
    Path | None,
    typer.Option("--index", help="index directory [default: ATTUNE_INDEX or .attune/identify]"),
]


def _fail(message: str) -> typer.Exit:
    """Print a one-line error; the caller raises the returned Exit."""
    err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _audio_files(paths: list[Path]) -> list[Path]:
    """The audio files named, directories searched recursively, in a stable order."""
    files: list[Path] = []
    for p in paths:
        if p.is_dir():
            files += sorted(f for f in p.rglob("*") if f.suffix.lower() in AUDIO_SUFFIXES)
        elif p.exists():
            files.append(p)
        else:
            raise _fail(f"{p}: no such file or directory")
    return files


def _recording_ids(files: list[Path], db: str | None) -> list[int]:
    """Each file's recording id from its stem: the id itself, or an ISRC found in the registry."""
    ids: list[int | None] = [int(f.stem) if f.stem.isdigit() else None for f in files]
    unresolved = [f for f, i in zip(files, ids, strict=True) if i is None]
    if unresolved:
        from attune.rights.registry import NotFound, RegistryError, find_recording
        from attune.store.db import is_initialised, make_engine, transaction

        engine = make_engine(db)
        if not is_initialised(engine):
            raise _fail(
                f"{unresolved[0]}: the file name is not a recording id, and there is no "
                "registry to look its ISRC up in (use --db or ATTUNE_DB)"
            )
        with transaction(engine) as session:
            for n, f in enumerate(files):
                if ids[n] is None:
                    try:
                        ids[n] = find_recording(session, f.stem).id
                    except (NotFound, RegistryError) as exc:
                        raise _fail(f"{f}: name it <recording id> or <ISRC> ({exc})") from exc
    return [i for i in ids if i is not None]


@app.command("index")
def index_command(
    paths: Annotated[list[Path], typer.Argument(help="audio files or directories of them")],
    index: IndexOption = None,
    db: Annotated[
        str | None,
        typer.Option("--db", envvar="ATTUNE_DB", help="registry to resolve ISRC file names"),
    ] = None,
    processes: Annotated[int | None, typer.Option(help="worker processes [default: cores]")] = None,
) -> None:
    """Fingerprint audio files on every core and add them to the index (replacing older ones)."""
    from attune.identify import (
        Fingerprinted,
        Index,
        IndexUnavailable,
        Job,
        JobFailure,
        LocalPool,
        index_jobs,
    )
    from attune.identify.index import index_dir

    files = _audio_files(paths)
    if not files:
        raise _fail("no audio files found")
    ids = _recording_ids(files, db)
    if len(set(ids)) != len(ids):
        raise _fail("two files name the same recording")
    jobs = [Job(i, str(f), f.name) for i, f in zip(ids, files, strict=True)]
    try:
        ix = Index.create(index_dir(index))
    except IndexUnavailable as exc:
        raise _fail(str(exc)) from exc
    started = time.perf_counter()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err, transient=True) as progress:
        task = progress.add_task("fingerprinting", total=len(jobs))

        def advance(result: Fingerprinted | JobFailure) -> None:
            progress.advance(task)

        report = index_jobs(ix, jobs, backend=LocalPool(processes), on_result=advance)
    elapsed = time.perf_counter() - started
    for failure in report.failed:
        err.print(f"[red]skipped:[/] {failure.error}", highlight=False, soft_wrap=True)
    out.print(
        f"Indexed {len(report.added)} recordings ({report.seconds / 3600:.2f} h of audio) "
        f"in {elapsed:.1f} s into {ix.path}; the index holds {len(ix)} recordings, "
        f"{ix.hours:.2f} h, {ix.nbytes / 1e6:.1f} MB.",
        soft_wrap=True,
    )
    if report.failed:
        raise typer.Exit(1)


@app.command("query")
def query_command(
    file: Annotated[Path, typer.Argument(help="audio file to look for catalog audio in")],
    index: IndexOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False,
) -> None:
    """List the indexed recordings found in FILE, where, and how changed (or "no match")."""
    from attune.audio import AudioError
    from attune.identify import Index, IndexUnavailable, identify_file
    from attune.identify.index import index_dir

    try:
        hits = identify_file(Index.open(index_dir(index)), file)
    except (AudioError, IndexUnavailable) as exc:
        raise _fail(str(exc)) from exc
    if as_json:
        typer.echo(json.dumps({"file": str(file), "hits": [h.as_dict() for h in hits]}, indent=2))
        return
    if not hits:
        out.print(f"{file}: no match", soft_wrap=True)
        return
    table = Table(
        "recording",
        "label",
        "query (s)",
        "reference (s)",
        "speed",
        "pitch (st)",
        "score",
        "confidence",
        title=str(file),
    )
    for h in hits:
        table.add_row(
            str(h.recording_id),
            h.label,
            f"{h.query_start:.2f}-{h.query_end:.2f}",
            f"{h.reference_start:.2f}-{h.reference_end:.2f}",
            f"{h.time_factor:.3f}",
            f"{h.pitch_shift:+.2f}",
            str(h.score),
            f"{h.confidence:.3f}",
        )
    out.print(table)


@app.command("remove")
def remove_command(
    recording_ids: Annotated[list[int], typer.Argument(help="recording ids to remove")],
    index: IndexOption = None,
) -> None:
    """Remove recordings from the index (their entries are dropped at the next compaction)."""
    from attune.identify import Index, IndexUnavailable
    from attune.identify.index import index_dir

    try:
        ix = Index.open(index_dir(index))
    except IndexUnavailable as exc:
        raise _fail(str(exc)) from exc
    removed = ix.remove(recording_ids)
    ix.compact()
    missing = sorted(set(recording_ids) - set(removed))
    out.print(
        f"Removed {len(removed)} recordings."
        + (f" Not in the index: {', '.join(map(str, missing))}." if missing else ""),
        soft_wrap=True,
    )
