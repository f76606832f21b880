"""Batch indexing behind a small job interface: local processes now, a cluster backend later.

A :class:`Job` names a file and the recording it holds. :func:`fingerprint_job` turns one job into
a :class:`~attune.identify.index.Fingerprinted` (or a :class:`JobFailure`: errors are values, so
one bad file never stops a batch). A backend is anything with ``map(fn, jobs)`` yielding results as
they finish; :class:`LocalPool` runs them on every core. A Ray or huey backend needs only that
method, because jobs and results are plain picklable tuples and the index is written here alone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from typing import NamedTuple, Protocol, TypeVar

from attune.audio import AudioError
from attune.identify import landmarks as fp
from attune.identify.index import Fingerprinted, Index

R = TypeVar("R")
SEGMENT_ENTRIES = 50_000_000  # triplets per written segment (600 MB): about 140 h of audio


class Job(NamedTuple):
    """Fingerprint the file at ``path`` as recording ``recording_id`` labelled ``label``."""

    recording_id: int
    path: str
    label: str


class JobFailure(NamedTuple):
    """A job that could not be done and why (the AudioError message names the file)."""

    job: Job
    error: str


class Backend(Protocol):
    """Runs a picklable function over jobs, yielding results in any order as they finish."""

    def map(self, fn: Callable[[Job], R], jobs: Iterable[Job]) -> Iterator[R]:
        """Apply ``fn`` to every job."""
        ...


class Serial:
    """Runs jobs one after another in this process (for tests and debugging)."""

    def map(self, fn: Callable[[Job], R], jobs: Iterable[Job]) -> Iterator[R]:
        """Apply ``fn`` to every job in order."""
        return map(fn, jobs)


class LocalPool:
    """Runs jobs in worker processes, one per core by default."""

    def __init__(self, processes: int | None = None) -> None:
        self.processes = processes or os.cpu_count() or 1

    def map(self, fn: Callable[[Job], R], jobs: Iterable[Job]) -> Iterator[R]:
        """Apply ``fn`` to every job across the pool, yielding results in job order."""
        with ProcessPoolExecutor(self.processes) as pool:
            yield from pool.map(fn, jobs, chunksize=1)


def fingerprint_job(job: Job) -> Fingerprinted | JobFailure:
    """Fingerprint one job's file (in a worker); a decode error becomes a JobFailure."""
    try:
        p, duration = fp.peaks_file(job.path)
    except AudioError as exc:
        return JobFailure(job, str(exc))
    tri = fp.triplets(p)
    keys = fp.hash_keys(tri)
    return Fingerprinted(job.recording_id, job.label, duration, keys, fp.pack_values(tri, keys),
                         fp.pack_peaks(p))


class IndexReport(NamedTuple):
    """What a batch did: recording ids added, failed jobs, and seconds of audio indexed."""

    added: list[int]
    failed: list[JobFailure]
    seconds: float


def index_jobs(
    index: Index,
    jobs: Iterable[Job],
    *,
    backend: Backend | None = None,
    on_result: Callable[[Fingerprinted | JobFailure], None] | None = None,
) -> IndexReport:
    """Fingerprint jobs on ``backend`` (default: every core) and store them in ``index``.

    Results are written in segments of about SEGMENT_ENTRIES triplets; segments are merged at the
    end. ``on_result`` is called as each job finishes (for progress bars).
    """
    runner = backend if backend is not None else LocalPool()
    added: list[int] = []
    failed: list[JobFailure] = []
    seconds = 0.0
    pending: list[Fingerprinted] = []
    n_pending = 0
    for result in runner.map(fingerprint_job, jobs):
        if on_result is not None:
            on_result(result)
        if isinstance(result, JobFailure):
            failed.append(result)
            continue
        pending.append(result)
        n_pending += len(result.keys)
        seconds += result.duration
        if n_pending >= SEGMENT_ENTRIES:
            added += index.add(pending)
            pending, n_pending = [], 0
    added += index.add(pending)
    index.compact()
    return IndexReport(added, failed, seconds)
