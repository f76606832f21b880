"""Vectorised exact largest-remainder splits in numpy, for the item-level allocation stages.

Rows come grouped: each group is a contiguous run of rows, already in its tie-break order.
Arithmetic is int64 where the products provably fit and Python integers (object arrays)
where they do not, so results never depend on the size of the numbers. Division truncates
toward zero, as DuckDB's integer division does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pyarrow as pa
import pyarrow.compute as pc

Ints = npt.NDArray[np.int64] | npt.NDArray[np.object_]

INT64_MAX = np.iinfo(np.int64).max
SMALL_GROUP = 8  # groups up to this size are ranked by pairwise comparison, larger ones sorted


def as_ints(column: pa.Array | pa.ChunkedArray) -> Ints:
    """A non-null integer or DECIMAL(38, 0) column as int64, or as Python ints if it overflows."""
    if column.null_count:
        raise ValueError("an allocation weight or share is NULL")
    try:
        return np.asarray(pc.cast(column, pa.int64()).to_numpy(), dtype=np.int64)
    except pa.ArrowInvalid:
        return np.array([int(v) for v in column.to_pylist()], dtype=object)


def fit(values: Ints) -> Ints:
    """``values`` as int64 when every value fits, else unchanged (Python ints)."""
    if values.dtype == np.int64:
        return values
    if not len(values):
        return values.astype(np.int64)
    if min(values) >= -INT64_MAX and max(values) <= INT64_MAX:
        return values.astype(np.int64)
    return values


def divmod_trunc(num: Ints, den: Ints) -> tuple[Ints, Ints]:
    """Quotient and remainder of integer division truncated toward zero (SQL semantics)."""
    if num.dtype == np.int64 and den.dtype == np.int64 and (
            not len(num) or (int(num.min()) >= 0 and int(den.min()) > 0)):
        return np.divmod(num, den)  # one pass; floor and truncation agree on these signs
    quo = num // den
    rem = num - quo * den
    fix = (rem != 0) & ((num < 0) != (den < 0))
    if fix.any():
        quo = quo + fix
        rem = rem - fix * den
    return quo, rem


def _largest(values: Ints) -> float:
    """The largest absolute value of a non-empty int64 array (as a float, no temporary array)."""
    return max(float(values.max()), -float(values.min()))


def mul(a: Ints, b: Ints) -> Ints:
    """Exact elementwise product: int64 where every product fits, else Python ints."""
    if a.dtype == np.int64 and b.dtype == np.int64:
        if not len(a) or _largest(a) * _largest(b) < 2.0**62:
            return a * b
        # Elementwise bound in floating point: its relative error (2^-52) is far inside the
        # margin between 2^62 and 2^63, and it needs no integer division.
        if (np.abs(a.astype(np.float64)) * np.abs(b.astype(np.float64)) < 2.0**62).all():
            return a * b
    return np.asarray(a.astype(object) * b.astype(object), dtype=object)


def mul_divmod(a: Ints, b: Ints, den: Ints) -> tuple[Ints, Ints]:
    """``divmod_trunc(a * b, den)`` exactly; quotient and remainder as int64 where they fit."""
    quo, rem = divmod_trunc(mul(a, b), den)
    return fit(quo), fit(rem)


def group_sums(values: Ints, starts: npt.NDArray[np.int64]) -> Ints:
    """Per-group sums of contiguous groups (exact: Python ints if int64 could overflow)."""
    if values.dtype == np.int64 and len(values):
        longest = int(np.diff(np.r_[starts, len(values)]).max())
        if _largest(values) * longest < 2.0**62:
            return np.add.reduceat(values, starts)
    return fit(np.add.reduceat(values.astype(object), starts))


def key_sums(
    keys: npt.NDArray[np.int64], columns: Sequence[Ints], n: int
) -> tuple[npt.NDArray[np.int64], list[Ints]]:
    """Sums of each column's values per key (keys in 0..n-1, any order): the keys present,
    ascending, and per column their sums, exactly.

    A column is accumulated in int64 by ``np.add.at`` (no sort) when no sum of its values'
    magnitudes can reach 2^63; else sorted and summed as integers.
    """
    counts = np.bincount(keys, minlength=n)
    present = np.flatnonzero(counts)
    order: npt.NDArray[np.int64] | None = None
    sums: list[Ints] = []
    for values in columns:
        exact = values.dtype == np.int64
        if exact and (not len(values) or len(values) * _largest(values) < 2.0**62):
            total = np.zeros(n, dtype=np.int64)
            np.add.at(total, keys, values)
            sums.append(total[present])
            continue
        order = np.argsort(keys, kind="stable") if order is None else order
        runs = np.r_[0, np.cumsum(counts[present])[:-1]].astype(np.int64)
        sums.append(group_sums(values[order], runs))
    return present, sums


def remainder_ranks(
    sizes: npt.NDArray[np.int64], rem: Ints, group: npt.NDArray[np.int64] | None = None
) -> npt.NDArray[np.int64]:
    """1-based place of each row in its group by remainder, largest first, ties in row order.

    Small groups compare rows pairwise (a few vector passes); larger ones are sorted one by one.
    ``group`` (each row's group number) may be passed when the caller has it.
    """
    n = len(rem)
    group = np.repeat(np.arange(len(sizes)), sizes) if group is None else group
    rank = np.ones(n, dtype=np.int64)
    small = sizes[group] <= SMALL_GROUP
    paired = (sizes > 1) & (sizes <= SMALL_GROUP)  # groups of one row have rank 1
    for d in range(1, int(sizes[paired].max(initial=1))):
        same = (group[:-d] == group[d:]) & small[d:]
        rank[d:] += same & (rem[:-d] >= rem[d:])
        rank[:-d] += same & (rem[d:] > rem[:-d])
    starts = np.cumsum(sizes) - sizes
    for g in np.flatnonzero(sizes > SMALL_GROUP):
        lo, hi = starts[g], starts[g] + sizes[g]
        order = np.argsort(-rem[lo:hi], kind="stable")
        rank[lo + order] = np.arange(1, hi - lo + 1)
    return rank


def largest_remainder(
    totals: Ints, sizes: npt.NDArray[np.int64], weights: Ints
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Split each group's total over its rows by weight; return (amounts, remainder ranks).

    Each row gets floor(total x w / W), and the units left over go one each to the rows with
    the largest remainders, ties to the earlier row. A group whose weights sum to 0 is split
    equally. Amounts of a group sum exactly to its total.
    """
    starts = np.cumsum(sizes) - sizes
    group = np.repeat(np.arange(len(sizes)), sizes)
    sums = group_sums(weights, starts) if len(weights) else weights[:0]
    even = sums == 0
    if even.any():
        weights = np.where(even[group], 1, weights)
        sums = np.where(even, sizes, sums)
    base, rem = mul_divmod(totals[group], weights, sums[group])
    short = totals - group_sums(base, starts) if len(base) else totals
    rank = remainder_ranks(sizes, rem, group)
    amount = fit(base + (rank <= short[group]))
    if amount.dtype != np.int64:
        raise OverflowError("an allocated amount does not fit in 64 bits")
    return amount.astype(np.int64), rank


def dense(span: int, count: int) -> bool:
    """Whether ``count`` keys over a range of ``span`` values are dense enough to index by a
    table of the range (at most 4 slots per key, plus slack for small sets)."""
    return 0 < span <= 4 * count + 1024


class SortedKeys:
    """A sorted key column indexed for equi-joins, built once and probed many times.

    Dense keys (ids) get a table of each key's first position and count; sparse ones are
    probed by binary search.
    """

    def __init__(self, sorted_keys: npt.NDArray[np.int64]) -> None:
        self.keys = sorted_keys
        self.low = int(sorted_keys[0]) if len(sorted_keys) else 0
        self.span = int(sorted_keys[-1]) - self.low + 1 if len(sorted_keys) else 0
        self.dense = dense(self.span, len(sorted_keys))
        # Dense keys: each key's count and first position, by key - low (empty when sparse).
        offsets = sorted_keys - self.low if self.dense else sorted_keys[:0]
        self.per_key = np.bincount(offsets, minlength=self.span if self.dense else 0)
        self.first = np.cumsum(self.per_key) - self.per_key
        self.unique = self.dense and int(self.per_key.max(initial=0)) <= 1

    def expand(
        self, keys: npt.NDArray[np.int64]
    ) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
        """Equi-join ``keys`` to the sorted column: (index into keys, index into the column).

        Matches of one key come out together, in the sorted column's order.
        """
        if self.dense and len(keys):
            inside = (keys >= self.low) & (keys < self.low + self.span)
            slot = np.where(inside, keys - self.low, 0)
            lo = self.first[slot]
            if self.unique:  # at most one match per key: no repeats needed
                left = np.flatnonzero(inside & (self.per_key[slot] > 0))
                return left, lo[left]
            counts = np.where(inside, self.per_key[slot], 0)
        else:
            lo = np.searchsorted(self.keys, keys, side="left")
            counts = np.searchsorted(self.keys, keys, side="right") - lo
        left = np.repeat(np.arange(len(keys)), counts)
        offsets = np.cumsum(counts) - counts
        right = np.repeat(lo - offsets, counts) + np.arange(int(counts.sum()))
        return left, right
