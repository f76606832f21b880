"""Set-based usage CSV ingest: exact conversion, line numbers, problems named by line and field."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from attune.royalties.ingest import (
    USAGE_SCHEMA,
    UsageFileError,
    coded_totals_path,
    listens_paths,
    parse_csv,
    totals_path,
    write_totals,
)
from tests.test_royalties_world import write_csv


def _row(n: int, **change: object) -> list[object]:
    """A valid usage line whose listener id names its own line number (n + 2)."""
    row: dict[str, object] = {
        "period": "2026-10",
        "territory": "FR",
        "service": "Tonal",
        "use_type": "stream",
        "item_id": f"GB-ATT-26-{n % 99_999:05d}" if n % 3 else f"out-{n}",
        "units": n % 7,
        "net_revenue": f"{n % 13}.{n % 1000:03d}",
        "currency": "EUR",
        "listener_id": f"L{n + 2}",
    }
    row.update(change)
    return list(row.values())


def test_every_line_keeps_its_number_and_exact_amounts(tmp_path: Path) -> None:
    """Many rows (several DuckDB chunks and threads): line numbers and totals stay exact."""
    rows = [_row(n) for n in range(250_000)]
    rows[7] = _row(7, net_revenue="999999999999.999999", units=123456789012345)
    rows[8] = _row(8, net_revenue="0.000001", territory=" fr ", item_id="gbatt2600001")
    for n in range(100, 110):  # with line 9, this item's revenue passes 2^63 micro-units
        rows[n] = _row(n, net_revenue="999999999999.999999", item_id="GB-ATT-26-00007")
    parsed = parse_csv(write_csv(tmp_path / "u.csv", rows))
    table = parsed.rows
    assert table.schema == USAGE_SCHEMA and parsed.lines == table.num_rows == 250_000
    lines = table.column("line").to_pylist()
    listeners = table.column("listener").to_pylist()
    assert all(f"L{line}" == who for line, who in zip(lines, listeners, strict=True))
    by_line = {r["line"]: r for r in table.slice(0, 20).to_pylist()}
    assert by_line[9]["revenue"] == 999_999_999_999_999_999
    assert by_line[9]["units"] == 123456789012345
    assert (by_line[10]["revenue"], by_line[10]["territory"]) == (1, "FR")
    assert (by_line[10]["item_kind"], by_line[10]["item"]) == ("isrc", "GBATT2600001")
    assert (by_line[5]["item_kind"], by_line[5]["item"]) == ("output", "out-3")
    micro = sum(
        int(str(r[6]).split(".")[0]) * 1_000_000 + int(str(r[6]).split(".")[1].ljust(6, "0"))
        for r in rows
    )
    assert parsed.revenue == {"EUR": micro}
    assert parsed.units == sum(int(str(r[5])) for r in rows)
    stored = tmp_path / "out" / "u.parquet"
    parsed.write(stored)
    assert pq.read_table(stored).cast(USAGE_SCHEMA).sort_by("line").equals(table)
    # The coded rollup (below) stands in for the string one, written only where it is missing;
    # written here by hand, the two must agree.
    assert not totals_path(stored).exists()
    rollup = pq.read_table(write_totals(stored))
    assert pa.types.is_decimal(rollup.schema.field("revenue").type)  # overflowed BIGINT
    totals = rollup.to_pylist()
    assert sum(int(t["revenue"]) for t in totals) == micro  # exact past 2^63 micro-units
    assert max(int(t["revenue"]) for t in totals) > 2**63
    assert sum(int(t["units"]) for t in totals) == parsed.units
    items = {(str(r[1]).strip().upper(), str(r[4]).upper().replace("-", "")) for r in rows}
    assert len(totals) == len(items)
    # The integer-coded ISRC lines decode, through their keys, to the stored ISRC lines.
    listens, keys = listens_paths(stored)
    names: dict[tuple[str, int], str] = {
        (k["kind"], k["no"]): k["value"] for k in pq.read_table(keys).to_pylist()
    }
    decoded = sorted(
        (names["item", c["item_no"]], names["listener", c["listener_no"]],
         names["territory", c["territory_no"]], names["currency", c["currency_no"]],
         c["units"], c["revenue"])
        for c in pq.read_table(listens).to_pylist()
    )  # fmt: skip
    assert decoded == sorted(
        (r["item"], r["listener"] or "", r["territory"], r["currency"], r["units"], r["revenue"])
        for r in table.to_pylist()
        if r["item_kind"] == "isrc"
    )
    # The integer-coded item totals decode, through the same keys, to the item totals (exact
    # DECIMAL sums here too).
    coded = pq.read_table(coded_totals_path(stored))
    assert pa.types.is_decimal(coded.schema.field("revenue").type)
    assert sorted(
        (names["output" if c["output"] else "item", c["item_no"]],
         names["territory", c["territory_no"]], names["currency", c["currency_no"]],
         int(c["units"]), int(c["revenue"]))
        for c in coded.to_pylist()
    ) == sorted(
        (t["item"], t["territory"], t["currency"], int(t["units"]), int(t["revenue"]))
        for t in totals
    )  # fmt: skip


def test_problems_are_named_by_line_and_field_in_line_order(tmp_path: Path) -> None:
    """The set-based checks still name each problem's line and field, first line first."""
    rows = [_row(n) for n in range(40)]
    rows[5] = _row(5, territory="XX")
    rows[1] = _row(1, item_id="no good!")
    rows[3] = _row(3, units="12.5", net_revenue="1.0000001")
    rows[9] = _row(9, period="2026-11")
    rows[11] = _row(11, currency="eur", net_revenue="1234567890123")
    with pytest.raises(UsageFileError) as exc:
        parse_csv(write_csv(tmp_path / "bad.csv", rows))
    name = str(tmp_path / "bad.csv")
    assert exc.value.problems == (
        f"{name}:3: item_id: neither an ISRC nor an output id: no good!",
        f"{name}:5: net_revenue: not a non-negative amount with at most 6 decimals: 1.0000001",
        f"{name}:5: units: not a whole number of units: 12.5",
        f"{name}:7: territory: not an ISO 3166-1 alpha-2 territory or Worldwide: XX",
        f"{name}:11: period: one period per report: this line has 2026-11, the report 2026-10",
        f"{name}:13: currency: not an ISO 4217 currency code: eur",
        f"{name}:13: net_revenue: not a non-negative amount with at most 6 decimals: "
        + "1234567890123",
    )
    assert exc.value.total == 7


def test_shape_problems_name_their_line(tmp_path: Path) -> None:
    """A line with the wrong number of fields, or an empty line, is refused with its line."""
    rows = [_row(n) for n in range(10)]
    short = write_csv(tmp_path / "short.csv", rows)
    text = short.read_text().splitlines()
    text[4] = ",".join(text[4].split(",")[:5])
    short.write_text("\n".join(text) + "\n")
    with pytest.raises(UsageFileError, match=r"short\.csv:5: row: .*9.*5"):
        parse_csv(short)
    blank = write_csv(tmp_path / "blank.csv", rows)
    text = blank.read_text().splitlines()
    blank.write_text("\n".join([*text[:3], "", *text[3:]]) + "\n")
    with pytest.raises(UsageFileError, match=r"blank\.csv:4: row: empty line"):
        parse_csv(blank)
    header = write_csv(tmp_path / "header.csv", rows)
    header.write_text(header.read_text().replace("units", "count", 1))
    with pytest.raises(UsageFileError, match=r"header\.csv:1: units: missing column"):
        parse_csv(header)
    empty = write_csv(tmp_path / "empty.csv", [])
    with pytest.raises(UsageFileError, match=r"empty\.csv:2: row: the report has no usage lines"):
        parse_csv(empty)


def test_listener_column_is_optional(tmp_path: Path) -> None:
    """Without listener_id, every line has no listener."""
    path = tmp_path / "u.csv"
    path.write_text(
        "period,territory,service,use_type,item_id,units,net_revenue,currency\n"
        "2026-10,DE,Tonal,stream,GBATT2600001,3,1.5,EUR\n"
    )
    parsed = parse_csv(path)
    assert parsed.rows.to_pylist()[0]["listener"] is None
    assert (parsed.units, parsed.revenue, parsed.service) == (3, {"EUR": 1_500_000}, "Tonal")
