"""Usage ingest: a DDEX DSR flat-file subset and a simple CSV, validated, stored as Parquet.

Parsing is a pure function from a file to a :class:`ParsedReport` (or every problem found, each
naming file, line and field); :func:`ingest` then stores it idempotently: the same file hash or
the same (sender, MessageId) pays nothing twice, and a re-issued report supersedes the earlier
one (the next run of its period reverses what the earlier one paid).

Both formats are read and checked by DuckDB, set-based: one pass converts every row and flags
it, a grouped pass checks the few distinct values of the low-cardinality columns, and only a
file with a problem takes the slower pass that names each problem's line and field.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from sqlalchemy import select
from sqlalchemy.orm import Session

from attune.rights.identifiers import ISO_3166_1_ALPHA_2
from attune.rights.registry import RegistryError, now
from attune.royalties.models import UsageReport
from attune.store import audit

CSV_COLUMNS = (
    "period",
    "territory",
    "service",
    "use_type",
    "item_id",
    "units",
    "net_revenue",
    "currency",
)
CSV_OPTIONAL = ("listener_id",)
MAX_LISTED = 20
WORLDWIDE = "Worldwide"  # DDEX's territory code for revenue not reported per country
USAGE_SCHEMA = pa.schema(
    [
        ("report", pa.string()),
        ("line", pa.int64()),
        ("territory", pa.string()),
        ("service", pa.string()),
        ("use_type", pa.string()),
        ("commercial_model", pa.string()),
        ("item_kind", pa.string()),
        ("item", pa.string()),
        ("units", pa.int64()),
        ("revenue", pa.int64()),
        ("currency", pa.string()),
        ("listener", pa.string()),
        ("transaction_id", pa.string()),
    ]
)
# Usage Parquet: zstd at level 1 compresses nearly as well as the default level at half the cost.
PARQUET_OPTIONS = "FORMAT parquet, COMPRESSION zstd, COMPRESSION_LEVEL 1, ROW_GROUP_SIZE 1048576"
KEYS_OPTIONS = PARQUET_OPTIONS.replace("1048576", "131072")  # small groups: readers skip more
# SQL fragments shared by both formats: exact checks first, conversions only of checked text.
_ISRC = "regexp_full_match(upper(replace({c}, '-', '')), '[A-Z]{{2}}[A-Z0-9]{{3}}[0-9]{{7}}')"
_OUTPUT = "regexp_full_match({c}, '[A-Za-z0-9][A-Za-z0-9._:-]{{0,99}}')"
_UNITS = "CASE WHEN regexp_full_match({c}, '[0-9]{{1,15}}') THEN CAST({c} AS BIGINT) END"
# Micro-units from checked text by integer arithmetic only (no DECIMAL multiply): the digits
# without the point, times 10^(6 - decimals). At most 12 + 6 digits, so it fits BIGINT.
_MONEY = (
    "CASE WHEN regexp_full_match({c}, '[0-9]{{1,12}}(\\.[0-9]{{1,6}})?') "
    "THEN CAST(replace({c}, '.', '') AS BIGINT) * [1000000, 100000, 10000, 1000, 100, 10, 1]"
    "[1 + CASE WHEN strpos({c}, '.') = 0 THEN 0 ELSE length({c}) - strpos({c}, '.') END] END"
)


class UsageFileError(ValueError):
    """A usage file refused as a whole; ``problems`` lists each as 'file:line: field: message'."""

    def __init__(self, problems: list[str], total: int | None = None) -> None:
        total = len(problems) if total is None else total
        more = f" (and {total - 1} more problems)" if total > 1 else ""
        super().__init__(problems[0] + more)
        self.problems = tuple(problems)
        self.total = total


@dataclass(frozen=True, slots=True)
class ParsedReport:
    """A validated usage report: its identity, period, totals and its usage rows.

    format: ``dsr`` or ``csv``. sender, message_id: the idempotency key. service: who reported.
    report_key: what a re-issue of the same report shares with it. lines, units, revenue: row
    count, total units and net revenue per currency (micro-units). skipped: lines dropped
    because they are not royalty-bearing. The rows stay in DuckDB (view ``usage`` on ``con``,
    in :data:`USAGE_SCHEMA` order) until :meth:`write` stores them or :attr:`rows` reads them.
    """

    format: str
    sender: str
    message_id: str
    service: str
    period: str
    report_key: str
    lines: int
    units: int
    revenue: dict[str, int]
    con: duckdb.DuckDBPyConnection = dataclasses.field(repr=False, compare=False)
    skipped: int = 0

    @property
    def rows(self) -> pa.Table:
        """The usage rows as Arrow, in line order (for callers that want them in Python)."""
        table = self.con.sql("SELECT * FROM usage ORDER BY line").to_arrow_table()
        return table.cast(USAGE_SCHEMA)

    def write(self, target: Path) -> None:
        """Store the rows as Parquet straight from DuckDB, atomically (temporary name, rename)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        self.con.execute(f"COPY (SELECT * FROM usage) TO {_literal(str(tmp))} ({PARQUET_OPTIONS})")
        os.replace(tmp, target)
        write_listens(target, self.con)
        if not coded_totals_path(target).exists():  # the coded rollup stands in for this one
            write_totals(target, self.con)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """What an ingest did: the report, whether it was new, and which report it superseded."""

    report_id: int
    added: bool
    reason: str
    superseded_id: int | None
    lines: int
    period: str


def file_sha256(path: Path) -> str:
    """SHA-256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _newlines(path: Path) -> tuple[int, bool]:
    """How many newline bytes a file holds, and whether it ends with one."""
    count, last = 0, b""
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 22), b""):
            count += chunk.count(b"\n")
            last = chunk[-1:]
    return count, last == b"\n"


def _literal(text: str) -> str:
    """A SQL string literal."""
    return "'" + text.replace("'", "''") + "'"


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET enable_progress_bar = false")
    con.execute("SET preserve_insertion_order = true")
    return con


def _problems(
    con: duckdb.DuckDBPyConnection, name: str, checks: list[tuple[str, str, str]], table: str
) -> tuple[list[str], int]:
    """Run (field, failing-condition, message) checks over a table; the first problems by line."""
    union = " UNION ALL ".join(
        f"SELECT line, '{field}' AS field, {msg} AS msg FROM {table} WHERE {cond}"
        for field, cond, msg in checks
    )
    found = con.execute(
        f"SELECT line, field, msg, count(*) OVER () FROM ({union}) ORDER BY line, field "
        f"LIMIT {MAX_LISTED}"
    ).fetchall()
    total = int(found[0][3]) if found else 0
    return [f"{name}:{line}: {field}: {msg}" for line, field, msg, _ in found], total


def _territories() -> str:
    """SQL list of the territory codes a usage line may carry: ISO 3166-1 and Worldwide."""
    return ", ".join(f"'{t}'" for t in [*sorted(ISO_3166_1_ALPHA_2), WORLDWIDE])


def _territory(column: str) -> str:
    """SQL: the canonical territory code of ``column`` (upper-case ISO, or 'Worldwide')."""
    return (
        f"CASE WHEN upper(trim({column})) = '{WORLDWIDE.upper()}' THEN '{WORLDWIDE}' "
        f"ELSE upper(trim({column})) END"
    )


def _read_lines(path: Path, delimiter: str) -> pa.Table:
    """Every physical line of a text file, with its 1-based line number."""
    table = pacsv.read_csv(
        path,
        read_options=pacsv.ReadOptions(column_names=["raw"], block_size=1 << 24),
        parse_options=pacsv.ParseOptions(
            delimiter=delimiter, quote_char=False, ignore_empty_lines=False
        ),
        convert_options=pacsv.ConvertOptions(
            column_types={"raw": pa.string()}, strings_can_be_null=False
        ),
    )
    lines = pa.array(np.arange(1, table.num_rows + 1, dtype=np.int64))
    return table.append_column("line", lines)


def _csv_header(path: Path, name: str) -> list[str]:
    """The CSV's column names, checked against the known columns (else UsageFileError)."""
    with path.open("rb") as fh:
        first = fh.readline()
    try:
        header = next(csv.reader([first.decode("utf-8-sig")]), [])
    except UnicodeDecodeError as exc:
        raise UsageFileError([f"{name}:1: header: not UTF-8 ({exc.reason})"]) from exc
    missing = [c for c in CSV_COLUMNS if c not in header]
    unknown = [c for c in header if c not in CSV_COLUMNS + CSV_OPTIONAL]
    if missing or unknown:
        what = missing[0] if missing else unknown[0]
        why = "missing column" if missing else "unknown column"
        raise UsageFileError(
            [
                f"{name}:1: {what}: {why} (columns: {', '.join(CSV_COLUMNS)}"
                f" [, {', '.join(CSV_OPTIONAL)}])"
            ]
        )
    if len(set(header)) != len(header):
        twice = next(c for c in header if header.count(c) > 1)
        raise UsageFileError([f"{name}:1: {twice}: column appears twice"])
    return header


def _csv_source(path: Path, header: list[str], *, rejects: bool = False) -> str:
    """SQL: DuckDB's CSV reader over the file, every column text ('' stays '', never NULL)."""
    columns = ", ".join(f"'{c}': 'VARCHAR'" for c in header)
    keep = ", ".join(f"'{c}'" for c in header)
    extra = ", store_rejects = true" if rejects else ""
    return (
        f"read_csv({_literal(str(path))}, header = true, auto_detect = false, delim = ',', "
        f"quote = '\"', escape = '\"', columns = {{{columns}}}, force_not_null = [{keep}]"
        f"{extra})"
    )


def _csv_shape_problems(path: Path, name: str, header: list[str], records: int | None) -> None:
    """Refuse rows with the wrong number of fields, bad encoding or empty lines, by line."""
    if records is None:
        con = _connect()
        con.execute(f"SELECT count(*) FROM {_csv_source(path, header, rejects=True)}").fetchall()
        found = con.execute(
            "SELECT line, error_message, count(*) OVER () FROM reject_errors "
            f"ORDER BY line LIMIT {MAX_LISTED}"
        ).fetchall()
        if found:
            raise UsageFileError(
                [f"{name}:{line}: row: {msg}" for line, msg, _ in found], int(found[0][2])
            )
    count, ends = _newlines(path)
    if records is not None and count + (not ends) == records + 1:
        return  # one physical line per record: line numbers are record numbers
    lines = _read_lines(path, "\x1e")
    empty = pc.equal(pc.utf8_length(lines.column("raw")), 0)
    where = lines.filter(empty).column("line").to_pylist()
    if where:
        raise UsageFileError(
            [f"{name}:{n}: row: empty line (expected {len(header)} fields)" for n in where][
                :MAX_LISTED
            ],
            len(where),
        )


# CSV checks. The row-level ones run in the pass that converts every row (as the flag _CSV_OK);
# the others look at one column's few distinct values, over groups; both run over the lines
# only to name each problem's line and field.
_CSV_ROW_CHECKS = [
    ("item_id", "NOT is_isrc AND NOT is_output", "'neither an ISRC nor an output id: ' || item_id"),
    ("units", "u IS NULL", "'not a whole number of units: ' || units"),
    (
        "net_revenue",
        "rev IS NULL",
        "'not a non-negative amount with at most 6 decimals: ' || net_revenue",
    ),
    ("listener_id", "length(listener_id) > 200", "'longer than 200 characters'"),
]
_CSV_OK = (
    "period = {period} AND (is_isrc OR is_output) AND u IS NOT NULL AND rev IS NOT NULL "
    "AND length(listener_id) <= 200"
)
_CSV_VALUE_CHECKS = [
    (
        "territory",
        f"{_territory('territory')} NOT IN ({_territories()})",
        "'not an ISO 3166-1 alpha-2 territory or Worldwide: ' || territory",
    ),
    (
        "service",
        "length(trim(service)) = 0 OR length(service) > 200",
        "'must be 1-200 characters'",
    ),
    (
        "use_type",
        "length(trim(use_type)) = 0 OR length(use_type) > 60",
        "'must be 1-60 characters'",
    ),
    (
        "currency",
        "NOT regexp_full_match(currency, '[A-Z]{3}')",
        "'not an ISO 4217 currency code: ' || currency",
    ),
]
_PERIOD = "regexp_full_match({c}, '[0-9]{{4}}-(0[1-9]|1[0-2])')"


def _csv_period_checks(period: str) -> list[tuple[str, str, str]]:
    """Checks that each line's period is a month and the report's (its first line's) period."""
    return [
        ("period", f"NOT {_PERIOD.format(c='period')}", "'not a period YYYY-MM: ' || period"),
        (
            "period",
            f"period <> {_literal(period)} AND regexp_full_match(period, '[0-9]{{4}}-[0-9]{{2}}')",
            f"'one period per report: this line has ' || period || ', the report {period}'",
        ),
    ]


def _csv_flags(source: str) -> str:
    """SQL: every CSV row with the derived columns its checks and conversions read."""
    return f"""
        SELECT *,
            CASE WHEN is_isrc THEN false ELSE {_OUTPUT.format(c="item_id")} END AS is_output,
            {_UNITS.format(c="units")} AS u,
            {_MONEY.format(c="net_revenue")} AS rev
        FROM (
            SELECT *, regexp_full_match(n, '[A-Z]{{2}}[A-Z0-9]{{3}}[0-9]{{7}}') AS is_isrc
            FROM (SELECT *, upper(replace(item_id, '-', '')) AS n FROM {source})
        )
    """


def parse_csv(
    path: Path, sender: str | None = None, message_id: str | None = None, sha: str | None = None
) -> ParsedReport:
    """Parse and validate a usage CSV (one period per file); raise UsageFileError listing problems.

    Columns: period, territory, service, use_type, item_id (ISRC or output id), units,
    net_revenue, currency, and optionally listener_id.
    """
    name = str(path)
    sha = sha or file_sha256(path)
    header = _csv_header(path, name)
    source = _csv_source(path, header)
    if "listener_id" not in header:
        source = f"(SELECT *, '' AS listener_id FROM {source})"
    con = _connect()
    try:
        first = con.execute(f"SELECT period FROM {source} LIMIT 1").fetchall()
        period = str(first[0][0]) if first else ""
        con.execute(
            f"""
            CREATE TABLE csv_rows AS
            SELECT territory, service, use_type, currency,
                CASE WHEN is_isrc THEN 'isrc' ELSE 'output' END::ENUM('isrc', 'output')
                    AS item_kind,
                CASE WHEN is_isrc THEN n ELSE item_id END AS item,
                u AS units, rev AS revenue, nullif(trim(listener_id), '') AS listener,
                {_CSV_OK.format(period=_literal(period))} AS ok
            FROM ({_csv_flags(source)})
            """
        )
    except duckdb.Error:
        _csv_shape_problems(path, name, header, None)
        raise
    records = int(con.execute("SELECT count(*) FROM csv_rows").fetchall()[0][0])
    _csv_shape_problems(path, name, header, records)
    if records == 0:
        raise UsageFileError([f"{name}:2: row: the report has no usage lines"])
    con.execute(
        """
        CREATE TABLE csv_groups AS
        SELECT territory, service, use_type, currency, count(*) FILTER (NOT ok) AS bad,
            sum(units) AS units, sum(revenue) AS revenue
        FROM csv_rows GROUP BY ALL
        """
    )
    odd = con.execute(
        f"SELECT NOT {_PERIOD.format(c=_literal(period))} OR coalesce(sum(bad), 0) > 0 "
        "OR count(*) FILTER (WHERE "
        + " OR ".join(f"({cond})" for _, cond, _ in _CSV_VALUE_CHECKS)
        + ") > 0 FROM csv_groups"
    ).fetchall()[0][0]
    if odd:
        con.execute(f"CREATE TABLE raw AS SELECT * FROM {source}")
        lines = "(SELECT rowid + 2 AS line, * FROM raw)"
        con.execute(f"CREATE VIEW conv AS {_csv_flags(lines)}")
        checks = _CSV_ROW_CHECKS + _CSV_VALUE_CHECKS + _csv_period_checks(period)
        problems, total = _problems(con, name, checks, "conv")
        raise UsageFileError(problems, total)
    # The few distinct values of the grouped columns become ENUM types, which Parquet stores
    # as dictionaries without hashing every row's string.
    for column, value in (
        ("territory", _territory("territory")),
        ("service", "trim(service)"),
        ("use_type", "trim(use_type)"),
        ("currency", "currency"),
    ):
        con.execute(
            f"CREATE TYPE usage_{column} AS ENUM (SELECT DISTINCT {value} FROM csv_groups "
            "ORDER BY 1)"
        )
    report = sha[:16]
    con.execute(
        f"""
        CREATE VIEW usage AS
        SELECT '{report}'::ENUM('{report}') AS report, rowid + 2 AS line,
            ({_territory("territory")})::usage_territory AS territory,
            trim(service)::usage_service AS service, trim(use_type)::usage_use_type AS use_type,
            ''::ENUM('') AS commercial_model, item_kind, item, units, revenue,
            currency::usage_currency AS currency, listener, NULL::VARCHAR AS transaction_id
        FROM csv_rows
        """
    )
    services = [str(r[0]) for r in con.execute("SELECT unnest(enum_range(NULL::usage_service))")
                .fetchall()]  # fmt: skip
    terr = ",".join(
        str(r[0])
        for r in con.execute("SELECT unnest(enum_range(NULL::usage_territory))").fetchall()
    )
    units, revenue = _csv_totals(con)
    who = sender or (services[0] if len(services) == 1 else "csv")
    return ParsedReport(
        format="csv",
        sender=who,
        message_id=message_id or f"sha256:{sha}",
        service=",".join(services)[:200],
        period=period,
        report_key=f"csv|{who}|{period}|{','.join(services)}|{terr}"[:500],
        lines=records,
        units=units,
        revenue=revenue,
        con=con,
    )


def _csv_totals(con: duckdb.DuckDBPyConnection) -> tuple[int, dict[str, int]]:
    """Total units and per-currency net revenue (micro-units) of a checked CSV's groups."""
    units = con.execute("SELECT coalesce(sum(units), 0)::HUGEINT FROM csv_groups").fetchall()
    revenue = con.execute(
        "SELECT currency, sum(revenue)::HUGEINT FROM csv_groups GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return int(units[0][0]), {str(c): int(v) for c, v in revenue}


# DSR record layouts (1-based field positions after the record type), the subset Attune reads.
DSR_FIELDS: dict[str, tuple[str, ...]] = {
    "HEAD": (
        "MessageVersion",
        "Profile",
        "ProfileVersion",
        "MessageId",
        "MessageCreatedDateTime",
        "FileNumber",
        "NumberOfFiles",
        "UsageStartDate",
        "UsageEndDate",
        "SenderPartyId",
        "SenderName",
        "ServiceDescription",
        "RecipientPartyId",
        "RecipientName",
    ),
    "SY02": (
        "SummaryRecordId",
        "CommercialModel",
        "UseType",
        "Territory",
        "ServiceDescription",
        "Usages",
        "Users",
        "Currency",
        "NetRevenue",
    ),
    "RE01": ("BlockId", "ReleaseReference", "ICPN", "Title", "DisplayArtistName"),
    "AS02": (
        "BlockId",
        "ResourceReference",
        "DspResourceId",
        "ISRC",
        "Title",
        "DisplayArtistName",
        "Duration",
        "ProprietaryId",
    ),
    "MW01": ("BlockId", "ResourceReference", "ISWC", "Title", "ComposerAuthorName"),
    "SU02": (
        "BlockId",
        "SummaryRecordId",
        "SalesTransactionId",
        "ResourceReference",
        "IsRoyaltyBearing",
        "Usages",
        "NetRevenue",
        "ListenerId",
    ),
    "FOOT": ("NumberOfLinesInReport", "NumberOfSummaryRecords", "NumberOfBlocks"),
}
_OPTIONAL_LAST = {"SU02"}


def _f(record: str, field: str) -> str:
    """SQL for one named field of a record (split list index, 1-based, after the type)."""
    return f"f[{DSR_FIELDS[record].index(field) + 2}]"


def parse_dsr(path: Path, sha: str | None = None) -> ParsedReport:
    """Parse and validate a DSR flat file (TSV; '|' separates multiple values in one field).

    Reads HEAD, SY02 summaries, RE01/AS02/MW01/SU02 blocks and FOOT; checks every field, that
    each SU02 names a resource of its block and a summary, and that each summary's usages and
    net revenue equal the sum of its lines.
    """
    name = str(path)
    sha = sha or file_sha256(path)
    con = _connect()
    con.register("raw", _read_lines(path, "\x1e"))
    con.execute(
        "CREATE TABLE l AS SELECT line, string_split(raw, '\t') AS f, "
        "string_split(raw, '\t')[1] AS rt FROM raw WHERE length(raw) > 0"
    )
    counts = dict(con.execute("SELECT rt, count(*) FROM l GROUP BY rt").fetchall())
    shape = [
        (
            "RecordType",
            f"rt NOT IN ({', '.join(repr(k) for k in DSR_FIELDS)})",
            "'unknown record type ' || rt",
        ),
    ]
    for rt, fields in DSR_FIELDS.items():
        n = len(fields) + 1
        lo = n - 1 if rt in _OPTIONAL_LAST else n
        shape.append(
            (
                "RecordType",
                f"rt = '{rt}' AND (len(f) < {lo} OR len(f) > {n})",
                f"'{rt} has ' || (len(f) - 1) || ' fields, expected {n - 1}'",
            )
        )
    problems, total = _problems(con, name, shape, "l")
    if counts.get("HEAD", 0) != 1 or counts.get("FOOT", 0) != 1:
        problems.insert(
            0,
            f"{name}:1: RecordType: a report has exactly one HEAD and one FOOT "
            f"(found {counts.get('HEAD', 0)} and {counts.get('FOOT', 0)})",
        )
        total += 1
    if problems:
        raise UsageFileError(problems, total)
    order = con.execute(
        "SELECT (SELECT min(line) FROM l) = (SELECT line FROM l WHERE rt = 'HEAD'), "
        "(SELECT max(line) FROM l) = (SELECT line FROM l WHERE rt = 'FOOT')"
    ).fetchall()[0]
    assert order is not None
    if not all(order):
        raise UsageFileError(
            [f"{name}:1: RecordType: HEAD must be the first record and FOOT the last"]
        )
    head = con.execute(
        "SELECT line, "
        + ", ".join(f"f[{i + 2}]" for i in range(len(DSR_FIELDS["HEAD"])))
        + " FROM l WHERE rt = 'HEAD'"
    ).fetchall()[0]
    assert head is not None
    h = dict(zip(DSR_FIELDS["HEAD"], head[1:], strict=True))
    hl = head[0]
    hp: list[str] = []
    if not str(h["MessageVersion"]).startswith("dsrf/"):
        hp.append(f"{name}:{hl}: MessageVersion: expected dsrf/x/y/z, got {h['MessageVersion']!r}")
    if h["Profile"] != "BasicAudioProfile":
        hp.append(f"{name}:{hl}: Profile: only BasicAudioProfile is read, got {h['Profile']!r}")
    if not h["MessageId"]:
        hp.append(f"{name}:{hl}: MessageId: must not be empty")
    start, end = str(h["UsageStartDate"]), str(h["UsageEndDate"])
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}", start) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", end):
        hp.append(f"{name}:{hl}: UsageStartDate: dates must be YYYY-MM-DD ({start}, {end})")
    elif start[:7] != end[:7] or end < start:
        hp.append(
            f"{name}:{hl}: UsageEndDate: a report covers one calendar month ({start} to {end})"
        )
    if not (h["SenderPartyId"] or h["SenderName"]):
        hp.append(f"{name}:{hl}: SenderPartyId: the sender must be named")
    if hp:
        raise UsageFileError(hp)
    period = start[:7]

    def col(rt: str, field: str) -> str:
        return f"{_f(rt, field)} AS {field}"

    con.execute(
        "CREATE TABLE sy AS SELECT line, "
        + ", ".join(col("SY02", k) for k in DSR_FIELDS["SY02"])
        + " FROM l WHERE rt = 'SY02'"
    )
    con.execute(
        "CREATE TABLE res AS SELECT line, "
        + ", ".join(
            col("AS02", k) for k in ("BlockId", "ResourceReference", "ISRC", "ProprietaryId")
        )
        + " FROM l WHERE rt = 'AS02'"
    )
    con.execute(
        "CREATE TABLE su AS SELECT line, "
        + ", ".join(col("SU02", k) for k in DSR_FIELDS["SU02"][:-1])
        + ", coalesce(f[9], '') AS ListenerId FROM l WHERE rt = 'SU02'"
    )
    con.execute(
        f"""
        CREATE TABLE syc AS SELECT *, {_territory("Territory")} AS t,
            {_UNITS.format(c="Usages")} AS u, {_MONEY.format(c="NetRevenue")} AS rev,
            count(*) OVER (PARTITION BY SummaryRecordId) AS dup
        FROM sy;
        CREATE TABLE resc AS SELECT *,
            {_ISRC.format(c="ISRC")} AS is_isrc,
            length(ProprietaryId) > 0 AND {_OUTPUT.format(c="ProprietaryId")} AS is_output,
            count(*) OVER (PARTITION BY BlockId, ResourceReference) AS dup
        FROM res;
        CREATE TABLE suc AS SELECT su.*, {_UNITS.format(c="su.Usages")} AS u,
            {_MONEY.format(c="su.NetRevenue")} AS rev,
            r.line AS res_line, r.is_isrc, r.ISRC, r.ProprietaryId, s.line AS sy_line,
            count(*) OVER (PARTITION BY su.SalesTransactionId) AS dup
        FROM su
        LEFT JOIN resc r ON r.BlockId = su.BlockId AND r.ResourceReference = su.ResourceReference
            AND r.dup = 1
        LEFT JOIN syc s ON s.SummaryRecordId = su.SummaryRecordId AND s.dup = 1;
        """
    )
    checks = [
        ("SummaryRecordId", "dup > 1", "'summary record id ' || SummaryRecordId || ' repeats'"),
        (
            "Territory",
            f"t NOT IN ({_territories()})",
            "'not an ISO 3166-1 alpha-2 territory or Worldwide: ' || Territory",
        ),
        ("Usages", "u IS NULL", "'not a whole number: ' || Usages"),
        ("NetRevenue", "rev IS NULL", "'not a non-negative amount: ' || NetRevenue"),
        (
            "Currency",
            "NOT regexp_full_match(Currency, '[A-Z]{3}')",
            "'not an ISO 4217 currency code: ' || Currency",
        ),
        ("ServiceDescription", "length(ServiceDescription) = 0", "'must not be empty'"),
    ]
    p1, t1 = _problems(con, name, checks, "syc")
    res_checks = [
        ("ResourceReference", "dup > 1", "'resource ' || ResourceReference || ' repeats in block'"),
        ("ISRC", "length(ISRC) > 0 AND NOT is_isrc", "'not an ISRC: ' || ISRC"),
        (
            "ProprietaryId",
            "length(ISRC) = 0 AND NOT is_output",
            "'a resource without ISRC needs an output id here'",
        ),
    ]
    p2, t2 = _problems(con, name, res_checks, "resc")
    su_checks = [
        (
            "ResourceReference",
            "res_line IS NULL",
            "'no AS02 resource ' || ResourceReference || ' in block ' || BlockId",
        ),
        ("SummaryRecordId", "sy_line IS NULL", "'no SY02 summary ' || SummaryRecordId"),
        (
            "SalesTransactionId",
            "length(SalesTransactionId) = 0 OR dup > 1",
            "'must be present and unique: ' || SalesTransactionId",
        ),
        (
            "IsRoyaltyBearing",
            "IsRoyaltyBearing NOT IN ('true', 'false')",
            "'must be true or false: ' || IsRoyaltyBearing",
        ),
        ("Usages", "u IS NULL", "'not a whole number: ' || Usages"),
        ("NetRevenue", "rev IS NULL", "'not a non-negative amount: ' || NetRevenue"),
        ("ListenerId", "length(ListenerId) > 200", "'longer than 200 characters'"),
    ]
    p3, t3 = _problems(con, name, su_checks, "suc")
    problems, total = sorted(p1 + p2 + p3, key=_line_of)[:MAX_LISTED], t1 + t2 + t3
    if problems:
        raise UsageFileError(problems, total)
    recon = con.execute(
        """
        SELECT s.line, s.u, s.rev, coalesce(sum(c.u), 0), coalesce(sum(c.rev), 0)
        FROM syc s LEFT JOIN suc c ON c.sy_line = s.line AND c.IsRoyaltyBearing = 'true'
        GROUP BY s.line, s.u, s.rev
        HAVING s.u <> coalesce(sum(c.u), 0) OR s.rev <> coalesce(sum(c.rev), 0)
        ORDER BY s.line LIMIT 20
        """
    ).fetchall()
    if recon:
        raise UsageFileError(
            [
                f"{name}:{line}: {'Usages' if u != su else 'NetRevenue'}: summary says "
                + (
                    f"{u} usages but its royalty-bearing lines sum to {su}"
                    if u != su
                    else f"net revenue {rev / 1e6:.6f} but its lines sum to {srev / 1e6:.6f}"
                )
                for line, u, rev, su, srev in recon
            ]
        )
    foot = con.execute(
        "SELECT line, f[2], f[3], f[4], (SELECT count(*) FROM l), "
        "(SELECT count(*) FROM sy), (SELECT count(DISTINCT f[2]) FROM l WHERE rt = 'RE01') "
        "FROM l WHERE rt = 'FOOT'"
    ).fetchall()[0]
    assert foot is not None
    for field, stated, actual in zip(DSR_FIELDS["FOOT"], foot[1:4], foot[4:7], strict=True):
        if stated != str(actual):
            raise UsageFileError(
                [f"{name}:{foot[0]}: {field}: FOOT says {stated}, the report has {actual}"]
            )
    report = sha[:16]
    con.execute(
        f"""
        CREATE TABLE usage AS
        SELECT '{report}' AS report, c.line, s.t AS territory, s.ServiceDescription AS service,
            s.UseType AS use_type, s.CommercialModel AS commercial_model,
            CASE WHEN c.is_isrc THEN 'isrc' ELSE 'output' END AS item_kind,
            CASE WHEN c.is_isrc THEN upper(replace(c.ISRC, '-', '')) ELSE c.ProprietaryId END
                AS item,
            c.u AS units, c.rev AS revenue, s.Currency AS currency,
            nullif(c.ListenerId, '') AS listener, c.SalesTransactionId AS transaction_id
        FROM suc c JOIN syc s ON s.line = c.sy_line
        WHERE c.IsRoyaltyBearing = 'true' ORDER BY c.line
        """
    )
    skipped = con.execute("SELECT count(*) FROM suc WHERE IsRoyaltyBearing = 'false'").fetchall()[0]
    lines, units = con.execute(
        "SELECT count(*), coalesce(sum(units), 0)::HUGEINT FROM usage"
    ).fetchall()[0]
    revenue = con.execute(
        "SELECT currency, sum(revenue)::HUGEINT FROM usage GROUP BY 1 ORDER BY 1"
    ).fetchall()
    terr = ",".join(r[0] for r in con.execute("SELECT DISTINCT t FROM syc ORDER BY t").fetchall())
    sender = str(h["SenderPartyId"] or h["SenderName"])
    service = str(h["ServiceDescription"] or "dsr")
    return ParsedReport(
        format="dsr",
        sender=sender,
        message_id=str(h["MessageId"]),
        service=service[:200],
        period=period,
        report_key=f"dsr|{sender}|{service}|{period}|{terr}|{h['FileNumber']}/{h['NumberOfFiles']}"[
            :500
        ],
        lines=int(lines),
        units=int(units),
        revenue={str(c): int(v) for c, v in revenue},
        con=con,
        skipped=int(skipped[0]) if skipped else 0,
    )


def _line_of(problem: str) -> int:
    """The line number in a 'file:line: field: message' problem, for sorting."""
    parts = problem.rsplit(": ", 2)[0].rsplit(":", 1)
    return int(parts[1]) if parts[1].isdigit() else 0


def parse_file(
    path: Path, sender: str | None = None, message_id: str | None = None, sha: str | None = None
) -> ParsedReport:
    """Parse a usage file by its content: a DSR starts with a HEAD record, anything else is CSV."""
    with path.open("rb") as fh:
        start = fh.read(5)
    if start == b"HEAD\t":
        return parse_dsr(path, sha)
    return parse_csv(path, sender, message_id, sha)


def usage_path(period: str, sha: str) -> str:
    """Where a report's rows live under the data directory (Parquet, partitioned by period)."""
    return f"usage/period={period}/report-{sha[:16]}.parquet"


def totals_path(lines: Path | str) -> Path:
    """Where the item totals of a usage file live: beside it, ``*.totals.parquet``."""
    path = Path(lines)
    return path.with_name(f"{path.stem}.totals.parquet")


@contextmanager
def _unordered(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Let DuckDB write rows in any order (in parallel) for the statements inside."""
    order = con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0]
    con.execute("SET preserve_insertion_order = false")
    try:
        yield con
    finally:
        con.execute(f"SET preserve_insertion_order = {bool(order)}")


def write_totals(lines: Path, con: duckdb.DuckDBPyConnection | None = None) -> Path:
    """Write a usage file's units and revenue per (currency, territory, item): its rollup.

    Allocation reads these instead of every line, so the one pass over the lines that it
    needs is paid once at ingest rather than on every run. Sums are BIGINT, which reads
    fastest; a file whose sums overflow 64 bits gets exact DECIMAL(38, 0) columns instead.
    """
    con = con or duckdb.connect()
    target = totals_path(lines)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    with _unordered(con):  # a rollup's row order means nothing
        for kind in ("BIGINT", "DECIMAL(38, 0)"):
            try:
                con.execute(
                    f"""
                    COPY (SELECT currency::VARCHAR AS currency, territory::VARCHAR AS territory,
                            item_kind::VARCHAR AS item_kind, item,
                            sum(units)::{kind} AS units, sum(revenue)::{kind} AS revenue
                          FROM read_parquet({_literal(str(lines))}) GROUP BY ALL)
                    TO {_literal(str(tmp))} ({PARQUET_OPTIONS})
                    """
                )
                break
            except duckdb.ConversionException:
                tmp.unlink(missing_ok=True)
    os.replace(tmp, target)
    return target


def listens_paths(lines: Path | str) -> tuple[Path, Path]:
    """Where a usage file's integer-coded ISRC lines and their keys live: beside it."""
    path = Path(lines)
    return (path.with_name(f"{path.stem}.listens.parquet"),
            path.with_name(f"{path.stem}.keys.parquet"))  # fmt: skip


def coded_totals_path(lines: Path | str) -> Path:
    """Where a usage file's integer-coded item totals live: beside it, ``*.items.parquet``."""
    path = Path(lines)
    return path.with_name(f"{path.stem}.items.parquet")


def write_listens(lines: Path, con: duckdb.DuckDBPyConnection | None = None) -> Path:
    """Write a usage file's ISRC lines and item totals as integers, for the allocation.

    ``*.keys.parquet`` numbers the file's distinct ISRC items, output items, listeners (NULL
    as ''), territories and currencies (columns kind, no, value); ``*.listens.parquet`` holds
    one row per ISRC line: item_no, listener_no, territory_no, currency_no, units, revenue.
    Allocation then keeps only the lines of user-centric items by their numbers instead of
    joining every line's strings. ``*.items.parquet`` holds the file's rollup in those numbers:
    output (false: an ISRC), item_no, territory_no, currency_no, units, revenue (BIGINT sums,
    or DECIMAL(38, 0) where they overflow), so that allocation joins only distinct items'
    strings; it is written only when every line has an ISRC or output item, a territory and a
    currency. Keys are written first, so a listens or items file always has its keys.
    """
    con = con or duckdb.connect()
    listens, keys = listens_paths(lines)
    coded = coded_totals_path(lines)
    listens.unlink(missing_ok=True)  # never leave an earlier file's lines beside these
    coded.unlink(missing_ok=True)
    every = f"(SELECT * FROM read_parquet({_literal(str(lines))}))"
    complete = (
        "item_kind IN ('isrc', 'output') AND item IS NOT NULL AND territory IS NOT NULL "
        "AND currency IS NOT NULL"
    )
    src = f"(SELECT * FROM {every} WHERE item_kind = 'isrc' AND {complete})"
    outputs = f"(SELECT * FROM {every} WHERE item_kind = 'output' AND {complete})"
    kinds = {"currency": ("currency", every), "item": ("item", src),
             "listener": ("coalesce(listener, '')", src), "output": ("item", outputs),
             "territory": ("territory", every)}  # fmt: skip
    tmp_keys = keys.with_name(f".{keys.name}.{os.getpid()}.tmp")
    tmp_listens = listens.with_name(f".{listens.name}.{os.getpid()}.tmp")
    tmp_coded = coded.with_name(f".{coded.name}.{os.getpid()}.tmp")
    try:
        with _unordered(con):  # numbers are free
            for kind, (value, rows) in kinds.items():
                con.execute(
                    f"CREATE OR REPLACE TEMP TABLE listens_{kind} AS SELECT value, "
                    "(row_number() OVER () - 1)::INTEGER AS no "
                    f"FROM (SELECT DISTINCT {value}::VARCHAR AS value FROM {rows} "
                    "WHERE value IS NOT NULL)"
                )
        # Keys kind by kind (in insertion order) in small row groups, so that a reader of one
        # kind skips the others' row groups.
        con.execute(
            "COPY ("
            + " UNION ALL ".join(f"SELECT '{k}' AS kind, no, value FROM listens_{k}" for k in kinds)
            + f") TO {_literal(str(tmp_keys))} ({KEYS_OPTIONS})"
        )
        with _unordered(con):  # the lines' order is free
            con.execute(
                f"""
                COPY (SELECT i.no AS item_no, l.no AS listener_no,
                        t.no::SMALLINT AS territory_no, c.no::SMALLINT AS currency_no,
                        u.units::BIGINT AS units, u.revenue::BIGINT AS revenue
                      FROM {src} u JOIN listens_item i ON i.value = u.item
                      JOIN listens_listener l ON l.value = coalesce(u.listener, '')
                      JOIN listens_territory t ON t.value = u.territory
                      JOIN listens_currency c ON c.value = u.currency)
                TO {_literal(str(tmp_listens))} ({PARQUET_OPTIONS})
                """
            )
        incomplete = con.execute(f"SELECT count(*) FROM {every} WHERE NOT ({complete})")
        if not incomplete.fetchall()[0][0]:
            _write_coded_totals(con, tmp_listens, outputs, tmp_coded)
    finally:
        for kind in kinds:
            con.execute(f"DROP TABLE IF EXISTS listens_{kind}")
    os.replace(tmp_keys, keys)
    os.replace(tmp_listens, listens)
    if tmp_coded.exists():
        os.replace(tmp_coded, coded)
    return listens


def _write_coded_totals(
    con: duckdb.DuckDBPyConnection, listens: Path, outputs: str, target: Path
) -> None:
    """The integer-coded rollup: ISRC totals from the coded lines, then output totals from the
    output lines by the numbers in the temporary key tables (in that order where the connection
    keeps insertion order, so that a reader can slice instead of filter); BIGINT sums, DECIMAL
    on overflow."""
    for kind in ("BIGINT", "DECIMAL(38, 0)"):
        try:
            con.execute(
                f"""
                COPY (SELECT false AS output, item_no, territory_no, currency_no,
                          sum(units)::{kind} AS units, sum(revenue)::{kind} AS revenue
                      FROM read_parquet({_literal(str(listens))}) GROUP BY ALL
                      UNION ALL
                      SELECT true, o.no, t.no::SMALLINT, c.no::SMALLINT, sum(u.units)::{kind},
                          sum(u.revenue)::{kind}
                      FROM {outputs} u JOIN listens_output o ON o.value = u.item
                      JOIN listens_territory t ON t.value = u.territory
                      JOIN listens_currency c ON c.value = u.currency
                      GROUP BY ALL)
                TO {_literal(str(target))} ({PARQUET_OPTIONS})
                """
            )
            return
        except duckdb.ConversionException:
            target.unlink(missing_ok=True)


def write_parquet(table: pa.Table, target: Path) -> None:
    """Write a table to Parquet atomically: a reader sees the whole file or none of it."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    pq.write_table(table, tmp, compression="zstd", row_group_size=1 << 20)
    os.replace(tmp, target)


def report_snapshot(r: UsageReport) -> dict[str, Any]:
    """A usage report as plain JSON data (audit payload, CLI and API shape)."""
    return {
        "id": r.id,
        "file_sha256": r.file_sha256,
        "file_name": r.file_name,
        "format": r.format,
        "sender": r.sender,
        "message_id": r.message_id,
        "service": r.service,
        "period": r.period,
        "lines": r.lines,
        "units": r.units,
        "revenue": json.loads(r.revenue),
        "status": r.status,
        "supersedes_id": r.supersedes_id,
        "ingested_at": r.ingested_at.isoformat(),
    }


def ingest(
    session: Session,
    data_dir: Path,
    path: Path,
    actor: str,
    *,
    sender: str | None = None,
    message_id: str | None = None,
    supersedes: int | None = None,
) -> IngestResult:
    """Validate and store one usage file; a file or MessageId seen before changes nothing."""
    sha = file_sha256(path)
    seen = session.scalar(select(UsageReport).where(UsageReport.file_sha256 == sha))
    if seen is not None:
        return IngestResult(
            seen.id, False, "same file already ingested", None, seen.lines, seen.period
        )
    parsed = parse_file(path, sender, message_id, sha)
    seen = session.scalar(
        select(UsageReport).where(
            UsageReport.sender == parsed.sender, UsageReport.message_id == parsed.message_id
        )
    )
    if seen is not None:
        return IngestResult(
            seen.id, False, "same MessageId already ingested", None, seen.lines, seen.period
        )
    if supersedes is not None:
        prior = session.get(UsageReport, supersedes)
        if prior is None or prior.status != "active":
            raise RegistryError("supersedes", f"no active usage report {supersedes}")
        if prior.period != parsed.period:
            raise RegistryError(
                "supersedes",
                f"report {supersedes} is for {prior.period}, this one for {parsed.period}",
            )
    else:
        prior = session.scalar(
            select(UsageReport).where(
                UsageReport.report_key == parsed.report_key, UsageReport.status == "active"
            )
        )
    rel = usage_path(parsed.period, sha)
    parsed.write(data_dir / rel)
    report = UsageReport(
        file_sha256=sha,
        file_name=path.name[:500],
        format=parsed.format,
        sender=parsed.sender[:200],
        message_id=parsed.message_id[:200],
        service=parsed.service,
        period=parsed.period,
        report_key=parsed.report_key,
        lines=parsed.lines,
        units=parsed.units,
        revenue=json.dumps({c: str(v) for c, v in parsed.revenue.items()}),
        path=rel,
        status="active",
        supersedes_id=prior.id if prior else None,
        ingested_at=now(),
    )
    if prior is not None:
        prior.status = "superseded"
    session.add(report)
    session.flush()
    audit.append(
        session,
        actor=actor,
        action="usage.ingest",
        entity="usage_report",
        entity_id=report.id,
        payload=report_snapshot(report),
    )
    return IngestResult(
        report.id, True, "ingested", prior.id if prior else None, report.lines, report.period
    )
