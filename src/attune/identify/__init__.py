"""Content identification: find catalog recordings inside uploads, even sped up, pitched or cut.

``fingerprint`` turns audio into peak triplets, ``Index`` stores them on disk by recording id,
``match``/``identify_file`` return the :class:`Hit` list for a query, and ``index_jobs`` indexes
files in batch on every core.
"""

from attune.identify.batch import (
    Backend,
    IndexReport,
    Job,
    JobFailure,
    LocalPool,
    Serial,
    fingerprint_job,
    index_jobs,
)
from attune.identify.index import Entry, Fingerprinted, Index, IndexUnavailable
from attune.identify.landmarks import fingerprint, fingerprint_file
from attune.identify.matcher import Hit, identify, identify_file, match, tune_allocator

__all__ = [
    "Backend",
    "Entry",
    "Fingerprinted",
    "Hit",
    "Index",
    "IndexReport",
    "IndexUnavailable",
    "Job",
    "JobFailure",
    "LocalPool",
    "Serial",
    "fingerprint",
    "fingerprint_file",
    "fingerprint_job",
    "identify",
    "identify_file",
    "index_jobs",
    "match",
    "tune_allocator",
]
