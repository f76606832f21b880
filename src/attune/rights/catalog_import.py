"""Import a whole catalog from one CSV, JSON or DDEX ERN 4.3 file, all or nothing by default.

Every row is validated by :mod:`attune.rights.records` and written by :mod:`attune.rights.registry`
(which audits it), inside one SAVEPOINT per row, itself inside one SAVEPOINT per file. Every row is
tried, so all problems are reported together; then, without ``skip_invalid``, any problem rolls the
whole file back and raises :class:`CatalogImportError`; with it, the valid rows stay and the others
come back as :class:`Reject` values. A successful import appends one ``catalog.import`` audit entry
naming the file and its SHA-256. The file formats are documented in docs/IMPORT.md.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from pathlib import Path
from types import MappingProxyType
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from attune.rights import ddex, registry
from attune.rights.identifiers import IdentifierError, normalise_ipi_name, normalise_isni
from attune.rights.records import (
    AgreementIn,
    ConsentIn,
    OwnerIn,
    PartyIn,
    RecordingIn,
    ShareIn,
    WorkIn,
)
from attune.store import audit

__all__ = ["CatalogImportError", "ImportReport", "Reject", "import_catalog", "write_rejects"]

FORMATS = ("csv", "json", "ern")
KINDS = ("party", "work", "recording", "agreement", "consent")
MAX_BYTES = ddex.DEFAULT_MAX_BYTES

_EXTENSIONS = {".csv": "csv", ".json": "json", ".xml": "ern"}
_SECTIONS = {
    "parties": "party",
    "works": "work",
    "recordings": "recording",
    "agreements": "agreement",
    "consents": "consent",
}
_FIELDS: dict[str, frozenset[str]] = {
    kind: frozenset(names.split())
    for kind, names in {
        "party": "key name kind roles isni ipi aliases",
        "work": "key title iswc source writers publishers",
        "recording": "key title isrc duration_ms work main_artists featured_artists owners "
        "content_hash contains_ai",
        "agreement": "reference licensor licensee uses worldwide territories excluded_territories "
        "start_date end_date ai_revenue_share minimum_guarantee currency model_versions covers_all "
        "recordings works",
        "consent": "party use decision scope recording work terms effective_from effective_until "
        "territories recorded_by evidence",
    }.items()
}
CSV_COLUMNS = ("record", *sorted(set().union(*_FIELDS.values())))
# CSV cells holding several values separated by "|"; share cells hold "party_key:share" pairs.
_LISTS = frozenset(
    {"roles", "aliases", "main_artists", "featured_artists", "uses", "territories"}
    | {"excluded_territories", "model_versions", "recordings", "works"}
)
_SHARES = frozenset({"writers", "publishers", "owners"})
# Record fields as the files name them, for error messages.
_FILE_FIELDS = {
    "party_id": "party",
    "recording_id": "recording",
    "work_id": "work",
    "recorded_by_id": "recorded_by",
    "licensor_id": "licensor",
    "licensee_id": "licensee",
    "recording_ids": "recordings",
    "work_ids": "works",
    "shares": "writers/publishers",
    "artists": "main_artists/featured_artists",
}
_ERN_FIELDS = {
    "isrc": "ISRC",
    "title": "DisplayTitleText",
    "duration_ms": "Duration",
    "artists": "DisplayArtist",
    "shares": "Contributor",
    "owners": "PLine",
    "contains_ai": "ContainsAI",
}
_ERN_ARTIST_ROLES = {"MainArtist": "main", "FeaturedArtist": "featured"}
_ERN_WRITER_ROLES = frozenset({"Composer", "Lyricist", "ComposerLyricist", "Writer"})
_P_LINE = re.compile(r"\s*(?:\(P\)|℗)?\s*(?:\d{4}\b)?[\s,]*(?P<name>.*?)\s*", re.IGNORECASE)

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class Reject:
    """One refused row or file problem.

    line_or_element: where it is: ``line 7`` (CSV, or the ERN element's line), ``/recordings/3``
    (a JSON pointer) or ``file``. field: the file's field or ERN element at fault ("" when the
    whole row is). reason: what is wrong, for people.
    """

    line_or_element: str
    field: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What one import stored.

    path: the file as given. fmt: ``csv``, ``json`` or ``ern``. sha256: hex digest of the file's
    bytes. counts: entities created, by kind (party, work, recording, agreement, consent; stored
    parties an ERN file matched are not counted). rejects: the rows refused (skip-invalid only).
    """

    path: str
    fmt: str
    sha256: str
    counts: Mapping[str, int]
    rejects: tuple[Reject, ...]

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON data."""
        return {
            "path": self.path,
            "format": self.fmt,
            "sha256": self.sha256,
            "counts": dict(self.counts),
            "rejects": [
                {"line_or_element": r.line_or_element, "field": r.field, "reason": r.reason}
                for r in self.rejects
            ],
        }


class CatalogImportError(ValueError):
    """An import refused as a whole; nothing from the file was stored.

    ``problems`` lists every problem found (each row is tried, so one run reports them all). The
    message's first line names the first problem and how many more there are; the following
    lines list them all.
    """

    def __init__(self, path: str, problems: Sequence[Reject]) -> None:
        self.path = path
        self.problems = tuple(problems)
        more = len(self.problems) - 1
        head = f"{path}: import refused, nothing stored: {_describe(self.problems[0])}"
        if more:
            head += f" (and {more} more problem{'s' if more > 1 else ''})"
        listed = "".join(f"\n  {_describe(p)}" for p in self.problems)
        super().__init__(head + (listed if more else ""))


def _file_order(problem: Reject) -> tuple[int, int]:
    """Sort key putting rejects in file order: by line, or by JSON section and index."""
    where = problem.line_or_element
    if where.startswith("line "):
        return 0, int(where.removeprefix("line "))
    section, _, index = where.strip("/").partition("/")
    sections = list(_SECTIONS)
    if section in sections and index.isdigit():
        return sections.index(section) + 1, int(index)
    return -1, 0


def _describe(problem: Reject) -> str:
    parts = (problem.line_or_element, problem.field, problem.reason)
    return ": ".join(p for p in parts if p)


def import_catalog(
    session: Session,
    path: str | Path,
    *,
    fmt: str | None = None,
    skip_invalid: bool = False,
    actor: str,
    owner_ref: str | None = None,
) -> ImportReport:
    """Import one catalog file into the caller's transaction and audit the import.

    fmt: ``csv``, ``json`` or ``ern`` (default: from the extension, else the content).
    skip_invalid: keep the valid rows and report the others instead of refusing the file.
    owner_ref: ERN only: the master owner of recordings whose P-line names no known party (an
    ERN PartyReference, or a stored party's id, ISNI, IPI, name or alias).
    """
    name = str(path)
    data = _read(name)
    kind = fmt or _detect(name, data)
    if kind not in FORMATS:
        raise _file_error(name, f"unknown format {kind!r}; give csv, json or ern", at="fmt")
    if owner_ref is not None and kind != "ern":
        raise _file_error(name, "only ERN imports take an owner", at="owner_ref")
    digest = hashlib.sha256(data).hexdigest()
    with session.begin_nested():
        catalog = _Catalog(session, actor, _ERN_FIELDS if kind == "ern" else _FILE_FIELDS)
        if kind == "ern":
            _ErnImport(catalog, _parse_ern(data, name), owner_ref, name).run()
        else:
            catalog.load(_csv_rows(data, name) if kind == "csv" else _json_rows(data, name))
        catalog.rejects.sort(key=_file_order)
        if catalog.rejects and not skip_invalid:
            raise CatalogImportError(name, catalog.rejects)
        report = ImportReport(
            path=name,
            fmt=kind,
            sha256=digest,
            counts=MappingProxyType({k: catalog.counts[k] for k in KINDS}),
            rejects=tuple(catalog.rejects),
        )
        audit.append(
            session,
            actor=actor,
            action="catalog.import",
            entity="import",
            entity_id=digest[:16],
            payload={
                "file": Path(name).name,
                "sha256": digest,
                "format": kind,
                "counts": dict(report.counts),
                "rejects": len(report.rejects),
                "skip_invalid": skip_invalid,
            },
        )
    return report


def write_rejects(report: ImportReport, path: str | Path) -> None:
    """Write the rejected rows as CSV: line_or_element, field, reason."""
    with open(path, "w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(("line_or_element", "field", "reason"))
        for r in report.rejects:
            writer.writerow(_cell(v) for v in (r.line_or_element, r.field, r.reason))


def _cell(value: str) -> str:
    """Defuse spreadsheet formulas: a cell from the input must not run when the CSV is opened."""
    return "'" + value if value[:1] in ("=", "+", "-", "@") else value


# --- reading and detecting ---


def _file_error(name: str, reason: str, where: str = "file", at: str = "") -> CatalogImportError:
    return CatalogImportError(name, [Reject(where, at, reason)])


def _read(name: str) -> bytes:
    try:
        with open(name, "rb") as raw:
            data = raw.read(MAX_BYTES + 1)
    except OSError as exc:
        raise _file_error(name, f"cannot read the file: {exc.strerror or exc}") from None
    if len(data) > MAX_BYTES:
        raise _file_error(name, f"refused: the file is larger than {MAX_BYTES:,} bytes")
    return data


def _detect(name: str, data: bytes) -> str:
    by_name = _EXTENSIONS.get(Path(name).suffix.lower())
    if by_name:
        return by_name
    head = data.removeprefix(b"\xef\xbb\xbf").lstrip()
    if head.startswith(b"<"):
        return "ern"
    if head.startswith(b"{"):
        return "json"
    if head.startswith(b"record"):
        return "csv"
    raise _file_error(
        name, "cannot tell the format from the name or content; give csv, json or ern"
    )


def _text(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _file_error(name, f"not UTF-8 text (byte {exc.start})") from None


# --- rows of the CSV and JSON formats ---


@dataclass(frozen=True, slots=True)
class _Row:
    """One catalog row in JSON shape, with where it came from and any problem found reading it."""

    kind: str
    where: str
    fields: dict[str, Any]
    problems: tuple[tuple[str, str], ...] = ()


def _csv_rows(data: bytes, name: str) -> list[_Row]:
    reader = csv.reader(io.StringIO(_text(data, name), newline=""), strict=True)
    try:
        header = [h.strip() for h in next(reader, [])]
        if "record" not in header:
            raise _file_error(name, "the header has no 'record' column", "line 1")
        unknown = [h for h in header if h not in CSV_COLUMNS]
        if unknown:
            raise _file_error(name, f"unknown columns {', '.join(map(repr, unknown))}", "line 1")
        if len(set(header)) != len(header):
            raise _file_error(name, "a column appears twice in the header", "line 1")
        rows = []
        start = reader.line_num + 1
        for cells in reader:
            where, start = f"line {start}", reader.line_num + 1
            if any(c.strip() for c in cells):
                rows.append(_csv_row(header, cells, where))
    except csv.Error as exc:
        raise _file_error(name, f"not valid CSV: {exc}", f"line {reader.line_num}") from None
    return rows


def _csv_row(header: list[str], cells: list[str], where: str) -> _Row:
    problems = []
    if len(cells) > len(header):
        problems.append(("", f"{len(cells)} cells, but the header has {len(header)} columns"))
    values = {col: cell.strip() for col, cell in zip(header, cells, strict=False) if cell.strip()}
    kind = values.pop("record", "")
    fields: dict[str, Any] = {}
    for col, cell in values.items():
        if col in _LISTS:
            fields[col] = [v.strip() for v in cell.split("|") if v.strip()]
        elif col in _SHARES:
            fields[col] = [_pair(v) for v in cell.split("|") if v.strip()]
        elif col == "terms":
            try:
                fields[col] = _loads(cell)
            except (ValueError, RecursionError) as exc:
                problems.append((col, f"not a JSON object: {exc}"))
        else:
            fields[col] = cell
    return _Row(kind, where, fields, tuple(problems))


def _pair(cell: str) -> dict[str, str]:
    party, sep, share = cell.rpartition(":")
    return {"party": party.strip(), "share": share.strip()} if sep else {"party": cell.strip()}


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"duplicate key {key!r} in one object")
        obj[key] = value
    return obj


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def _loads(text_: str) -> Any:
    """Parse JSON exactly: decimals stay Decimal, duplicate keys and NaN are refused."""
    return json.loads(
        text_, parse_float=Decimal, parse_constant=_no_constant, object_pairs_hook=_unique_keys
    )


def _json_rows(data: bytes, name: str) -> list[_Row]:
    try:
        doc = _loads(_text(data, name))
    except json.JSONDecodeError as exc:
        raise _file_error(name, f"not valid JSON: {exc.msg}", f"line {exc.lineno}") from None
    except ValueError as exc:
        raise _file_error(name, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise _file_error(name, "not valid JSON: nested too deeply") from None
    if not isinstance(doc, dict):
        raise _file_error(name, f"the document must be an object with {', '.join(_SECTIONS)}")
    unknown = sorted(set(doc) - set(_SECTIONS))
    if unknown:
        raise _file_error(name, f"unknown sections {', '.join(map(repr, unknown))}")
    rows = []
    for section, kind in _SECTIONS.items():
        items = doc.get(section, [])
        if not isinstance(items, list):
            raise _file_error(name, "must be an array", f"/{section}")
        for i, item in enumerate(items):
            if isinstance(item, dict):
                rows.append(_Row(kind, f"/{section}/{i}", item))
            else:
                rows.append(_Row(kind, f"/{section}/{i}", {}, (("", "must be an object"),)))
    return rows


# --- problems ---


class _Rejected(Exception):
    """A row cannot be stored; carries every (field, reason) found."""

    def __init__(self, problems: Sequence[tuple[str, str]]) -> None:
        super().__init__(problems)
        self.problems = tuple(problems)


class _Problems:
    """Collects a row's problems so that one pass reports all of them."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str]] = []

    def add(self, field_: str, reason: str) -> None:
        if (field_, reason) not in self.items:
            self.items.append((field_, reason))

    def collect(self, model: type[M], values: dict[str, Any], at: str = "") -> M | None:
        """Validate a record; on failure note each error under ``at`` (or its own field)."""
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            for err in exc.errors():
                self.add(*_pydantic_problem(err, at))
            return None

    def build(self, model: type[M], values: dict[str, Any]) -> M:
        """The validated record, or _Rejected with every problem noted so far."""
        result = None if self.items else self.collect(model, values)
        if result is None:
            raise _Rejected(self.items)
        return result


def _pydantic_problem(err: ErrorDetails, at: str) -> tuple[str, str]:
    loc = [str(p) if isinstance(p, str) else f"[{p}]" for p in err["loc"]]
    message = str(err["msg"]).removeprefix("Value error, ")
    value = err.get("input")
    if err["type"] not in ("value_error", "missing") and isinstance(value, str | int | Decimal):
        message += f" (got {value!r})"
    if not loc and not at:
        head, sep, rest = message.partition(": ")
        if sep and head.isidentifier():
            return head, rest
    path = at + "".join(p if p.startswith("[") else f".{p}" for p in loc)
    return path.lstrip("."), message


def _file_field(field_: str, aliases: Mapping[str, str]) -> str:
    head = re.match(r"[A-Za-z_]*", field_)
    name = head.group(0) if head else ""
    return aliases.get(name, name) + field_[len(name) :]


# --- the import of rows ---

_FINDERS: dict[str, Callable[[Session, str], Any]] = {
    "party": registry.find_party,
    "work": registry.find_work,
    "recording": registry.find_recording,
}


class _Catalog:
    """The state of one import: key maps, counts, rejects; one SAVEPOINT per row."""

    def __init__(self, session: Session, actor: str, aliases: Mapping[str, str]) -> None:
        self.session = session
        self.actor = actor
        self.aliases = aliases
        self.counts: Counter[str] = Counter()
        self.rejects: list[Reject] = []
        self._keys: dict[tuple[str, str], int] = {}
        self._key_rows: dict[tuple[str, str], str] = {}
        self._rejected: set[tuple[str, str]] = set()
        self._new_keys: dict[tuple[str, str], int] = {}
        self._new_counts: Counter[str] = Counter()

    # row bookkeeping

    def attempt(self, where: str, write: Callable[[], object]) -> bool:
        """Run one row's writes in a SAVEPOINT; keep them and their keys only if all succeed."""
        self._new_keys.clear()
        self._new_counts.clear()
        try:
            with self.session.begin_nested():
                write()
        except _Rejected as exc:
            problems = list(exc.problems)
        except registry.RegistryError as exc:
            problems = [(exc.field, exc.message)]
        except IntegrityError as exc:
            problems = [("", f"refused by the database: {str(exc.orig).splitlines()[0]}")]
        else:
            self._keys.update(self._new_keys)
            self.counts.update(self._new_counts)
            return True
        self.reject(where, problems)
        return False

    def reject(self, where: str, problems: Sequence[tuple[str, str]]) -> None:
        self.rejects.extend(Reject(where, _file_field(f, self.aliases), r) for f, r in problems)

    def created(self, kind: str, key: str | None = None, ident: int | None = None) -> None:
        self._new_counts[kind] += 1
        if key is not None and ident is not None:
            self._new_keys[(kind, key)] = ident

    def remember(self, kind: str, key: str, ident: int) -> None:
        self._new_keys[(kind, key)] = ident

    def known(self, kind: str, key: str) -> int | None:
        return self._new_keys.get((kind, key), self._keys.get((kind, key)))

    def resolve(self, kind: str, ref: Any, at: str, problems: _Problems) -> int | None:
        """A row reference: a key defined in this file first, else a stored entity."""
        if not isinstance(ref, str) or not ref.strip():
            problems.add(at, f"expected a {kind} key or reference, got {ref!r}")
            return None
        ident = self.known(kind, ref)
        if ident is not None:
            return ident
        if (kind, ref) in self._rejected:
            problems.add(at, f"{kind} key {ref!r} was rejected ({self._key_rows[(kind, ref)]})")
            return None
        try:
            return int(_FINDERS[kind](self.session, ref).id)
        except registry.NotFound as exc:
            problems.add(at, f"no {kind} key {ref!r} in this file, and {exc}")
            return None

    # CSV and JSON rows

    def load(self, rows: list[_Row]) -> None:
        """Import rows kind by kind (parties first), each kind in file order."""
        order = {kind: i for i, kind in enumerate(KINDS)}
        for row in sorted(rows, key=lambda r: order.get(r.kind, -1)):
            self._load_row(row)

    def _load_row(self, row: _Row) -> None:
        problems = list(row.problems)
        write = _WRITERS.get(row.kind)
        if write is None:
            problems.append(("record", f"must be one of {', '.join(KINDS)}, not {row.kind!r}"))
        else:
            for name in sorted(set(row.fields) - _FIELDS[row.kind]):
                problems.append((name, f"not a field of a {row.kind} row"))
        key = row.fields.get("key")
        slot = (row.kind, key) if isinstance(key, str) and key.strip() else None
        if "key" in row.fields and slot is None:
            problems.append(("key", f"must be a non-empty text, got {key!r}"))
        elif slot is not None and slot in self._key_rows:
            problems.append(("key", f"{key!r} is already used ({self._key_rows[slot]})"))
            slot = None
        if slot is not None:
            self._key_rows[slot] = row.where
        if problems:
            self.reject(row.where, problems)
        stored = (
            not problems
            and write is not None
            and self.attempt(row.where, partial(write, self, row))
        )
        if slot is not None and not stored:
            self._rejected.add(slot)

    def refs(self, row: _Row, name: str, kind: str, problems: _Problems) -> list[int]:
        """Resolve a list of references; unknown ones are noted and left out."""
        refs = row.fields.get(name, [])
        if not isinstance(refs, list):
            problems.add(name, f"must be a list of {kind} references")
            return []
        found = [self.resolve(kind, ref, f"{name}[{i}]", problems) for i, ref in enumerate(refs)]
        return [i for i in found if i is not None]

    def shares(
        self, row: _Row, name: str, model: type[M], problems: _Problems, **extra: str
    ) -> list[M]:
        """Resolve and validate ``[{"party": ref, "share": percent}, ...]`` entries."""
        items = row.fields.get(name, [])
        if not isinstance(items, list):
            problems.add(name, 'must be a list of {"party": ..., "share": ...} objects')
            return []
        out = []
        for i, item in enumerate(items):
            at = f"{name}[{i}]"
            if not isinstance(item, dict) or set(item) != {"party", "share"}:
                problems.add(at, "expected a party and a share (CSV: party_key:share)")
                continue
            party_id = self.resolve("party", item["party"], at, problems)
            if party_id is not None:
                share = problems.collect(
                    model, {"party_id": party_id, "share": item["share"], **extra}, at
                )
                if share is not None:
                    out.append(share)
        return out


def _plain(row: _Row, *refs: str) -> dict[str, Any]:
    """The row's fields that pass to the record unchanged."""
    return {k: v for k, v in row.fields.items() if k != "key" and k not in refs}


def _optional(**values: int | None) -> dict[str, int]:
    return {k: v for k, v in values.items() if v is not None}


def _write_party(cat: _Catalog, row: _Row) -> None:
    data = _Problems().build(PartyIn, _plain(row))
    party = registry.add_party(cat.session, data, cat.actor)
    cat.created("party", row.fields.get("key"), party.id)


def _write_work(cat: _Catalog, row: _Row) -> None:
    p = _Problems()
    shares = cat.shares(row, "writers", ShareIn, p, role="writer")
    shares += cat.shares(row, "publishers", ShareIn, p, role="publisher")
    data = p.build(WorkIn, {**_plain(row, "writers", "publishers"), "shares": shares})
    work = registry.add_work(cat.session, data, cat.actor)
    cat.created("work", row.fields.get("key"), work.id)


def _write_recording(cat: _Catalog, row: _Row) -> None:
    p = _Problems()
    work = row.fields.get("work")
    work_id = None if work is None else cat.resolve("work", work, "work", p)
    artists = [
        {"party_id": party_id, "role": role}
        for role in ("main", "featured")
        for party_id in cat.refs(row, f"{role}_artists", "party", p)
    ]
    owners = cat.shares(row, "owners", OwnerIn, p)
    refs = ("work", "main_artists", "featured_artists", "owners")
    values = {**_plain(row, *refs), "artists": artists, "owners": owners}
    data = p.build(RecordingIn, {**values, **_optional(work_id=work_id)})
    rec = registry.add_recording(cat.session, data, cat.actor)
    cat.created("recording", row.fields.get("key"), rec.id)


def _write_agreement(cat: _Catalog, row: _Row) -> None:
    p = _Problems()
    parties = {
        f"{role}_id": cat.resolve("party", row.fields[role], role, p)
        for role in ("licensor", "licensee")
        if role in row.fields
    }
    values = {
        **_plain(row, "licensor", "licensee", "recordings", "works"),
        **_optional(**parties),
        "recording_ids": cat.refs(row, "recordings", "recording", p),
        "work_ids": cat.refs(row, "works", "work", p),
    }
    registry.add_agreement(cat.session, p.build(AgreementIn, values), cat.actor)
    cat.created("agreement")


def _write_consent(cat: _Catalog, row: _Row) -> None:
    p = _Problems()
    refs = {"party": "party", "recording": "recording", "work": "work", "recorded_by": "party"}
    ids = {
        f"{name}_id": cat.resolve(kind, row.fields[name], name, p)
        for name, kind in refs.items()
        if name in row.fields
    }
    values: dict[str, Any] = {**_plain(row, *refs), **_optional(**ids)}
    if "scope" not in values:
        values["scope"] = next((s for s in ("recording", "work") if s in row.fields), "all")
    registry.record_consent(cat.session, p.build(ConsentIn, values), cat.actor)
    cat.created("consent")


_WRITERS: dict[str, Callable[[_Catalog, _Row], None]] = {
    "party": _write_party,
    "work": _write_work,
    "recording": _write_recording,
    "agreement": _write_agreement,
    "consent": _write_consent,
}


# --- DDEX ERN ---


def _parse_ern(data: bytes, name: str) -> ddex.ErnMessage:
    try:
        return ddex.parse_ern_bytes(data, name, max_bytes=MAX_BYTES)
    except ddex.DdexError as exc:
        where = f"line {exc.line}" if exc.line else "file"
        raise _file_error(name, exc.reason, where, exc.element or "") from None


def _equal_shares(count: int) -> list[Decimal]:
    """``count`` equal percentages with six decimals summing to exactly 100.

    Largest remainder: every share is the floor of 100/count in millionths of a percent, and the
    millionths left over go one each to the first shares (all remainders tie; order breaks it).
    """
    base, extra = divmod(100_000_000, count)
    return [Decimal(base + (i < extra)).scaleb(-6) for i in range(count)]


class _ErnImport:
    """Maps an ERN message onto the registry, one recording (with its parties and work) a row.

    Owner rule: the master owner (100%) is the one the recording's P-line names (``(P) 2024
    Lowtide Records``), matched to a PartyList party's full name, else to a stored party; when
    the P-line is missing or names no such party, ``owner_ref``; with neither, the recording is
    rejected.
    """

    def __init__(
        self, cat: _Catalog, message: ddex.ErnMessage, owner_ref: str | None, name: str
    ) -> None:
        self.cat = cat
        self.message = message
        self.parties = {p.reference: p for p in message.parties}
        fallback = None if owner_ref is None else self._fallback_owner(owner_ref, name)
        self.owners: dict[str, str | int | _Rejected] = {}
        for rec in message.recordings:
            owner = self._p_line_owner(rec)
            self.owners[rec.reference] = (
                fallback if isinstance(owner, _Rejected) and fallback is not None else owner
            )
        self.roles = self._roles()

    def run(self) -> None:
        for error in self.message.errors:
            self.cat.rejects.append(Reject(f"line {error.line}", error.element, error.reason))
        for rec in self.message.recordings:
            self.cat.attempt(f"line {rec.line}", partial(self._write, rec))

    def _fallback_owner(self, ref: str, name: str) -> str | int:
        if ref in self.parties:
            return ref
        try:
            return int(registry.find_party(self.cat.session, ref).id)
        except registry.NotFound as exc:
            raise _file_error(
                name, f"not a PartyReference of this message, and {exc}", at="owner_ref"
            ) from None

    def _p_line_owner(self, rec: ddex.ErnSoundRecording) -> str | int | _Rejected:
        match = _P_LINE.fullmatch(rec.p_line or "")
        owner = match.group("name") if match else ""
        if not owner:
            return _Rejected(
                [("owners", "no P-line names the master owner, and no owner_ref was given")]
            )
        named = [
            p.reference for p in self.parties.values() if p.name.casefold() == owner.casefold()
        ]
        if len(named) == 1:
            return named[0]
        try:
            return int(registry.find_party(self.cat.session, owner).id)
        except registry.NotFound as exc:
            reason = f"P-line owner {owner!r} is not one PartyList party, and {exc}; give owner_ref"
            return _Rejected([("owners", reason)])

    def _roles(self) -> dict[str, set[str]]:
        """Each PartyList party's roles, from how the message credits it."""
        roles: dict[str, set[str]] = {ref: set() for ref in self.parties}
        for rec in self.message.recordings:
            for artist in rec.display_artists:
                if artist.role in _ERN_ARTIST_ROLES:
                    roles[artist.party_reference].add("artist")
            for ref in _writers(rec):
                roles[ref].add("songwriter")
            owner = self.owners[rec.reference]
            if isinstance(owner, str):
                roles[owner].add("label")
        return roles

    def _party(self, ref: str, p: _Problems) -> int | None:
        """The party for a PartyReference: known, stored with its ISNI or IPI, or created now."""
        known = self.cat.known("party", ref)
        if known is not None:
            return known
        ern = self.parties[ref]
        for raw, normalise in ((ern.isni, normalise_isni), (ern.ipi, normalise_ipi_name)):
            try:
                stored = registry.find_party(self.cat.session, normalise(raw)) if raw else None
            except (IdentifierError, registry.NotFound):
                stored = None
            if stored is not None:
                self.cat.remember("party", ref, stored.id)
                return int(stored.id)
        roles = self.roles[ref]
        values = {
            "name": ern.name,
            "kind": "organisation" if roles == {"label"} else "person",
            "roles": sorted(roles),
            "isni": ern.isni,
            "ipi": ern.ipi,
        }
        data = p.collect(PartyIn, values, f"PartyList party {ref}")
        if data is None:
            return None
        party = registry.add_party(self.cat.session, data, self.cat.actor)
        self.cat.created("party", ref, party.id)
        return int(party.id)

    def _write(self, rec: ddex.ErnSoundRecording) -> None:
        p = _Problems()
        artists = []
        for a in rec.display_artists:
            role = _ERN_ARTIST_ROLES.get(a.role)
            party_id = self._party(a.party_reference, p) if role else None
            if party_id is not None:
                artists.append({"party_id": party_id, "role": role})
        writers = [self._party(ref, p) for ref in _writers(rec)]
        owner = self.owners[rec.reference]
        if isinstance(owner, _Rejected):
            p.items.extend(owner.problems)
        owner_id = self._party(owner, p) if isinstance(owner, str) else owner
        work_id = None
        if writers:
            shares = [
                {"party_id": party_id, "role": "writer", "share": share}
                for party_id, share in zip(writers, _equal_shares(len(writers)), strict=True)
            ]
            source = f"DDEX ERN {self.message.message_id} resource {rec.reference}"
            work_data = p.build(WorkIn, {"title": rec.title, "shares": shares, "source": source})
            work_id = registry.add_work(self.cat.session, work_data, self.cat.actor).id
            self.cat.created("work")
        values = {
            "title": rec.title,
            "isrc": rec.isrc,
            "duration_ms": None if rec.duration_seconds is None else rec.duration_seconds * 1000,
            "work_id": work_id,
            "artists": artists,
            "owners": [{"party_id": owner_id, "share": 100}],
            "contains_ai": rec.contains_ai or "Undeclared",
        }
        data = p.build(RecordingIn, values)
        registry.add_recording(self.cat.session, data, self.cat.actor)
        self.cat.created("recording")


def _writers(rec: ddex.ErnSoundRecording) -> list[str]:
    """The recording's writers (Composer, Lyricist, ...) once each, in credit order."""
    refs = (c.party_reference for c in rec.contributors if c.role in _ERN_WRITER_ROLES)
    return list(dict.fromkeys(refs))
