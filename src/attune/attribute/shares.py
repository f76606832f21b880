"""Credit for a generated piece: per-work weights from provenance, then exact Decimal shares.

Rule: a token's probability p splits over the works that supplied its counts, p_j, plus a prior
share that is nobody's and is dropped. Each token credits each of its works with the bits it
would lose without that work's counts, -log2(1 - p_j / p), and a work's weight in a part is the
sum over the part's tokens. For small p_j / p that is the work's fraction of the probability (the
first-order change in log-likelihood); when one work supplies nearly all of a token it grows
like the real loss instead of stopping at 1, which is what removing the work does to the
likelihood (LDS 0.92 against 0.86 for plain fractions on the generation benchmark's tunes). A
harmonised piece has two parts (melody, bass line); each part's credit is normalised and
weighted by its information, -log2 p of the part, so neither the part with more events nor the
more predictable one dominates by construction.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from fractions import Fraction

from attune.generate.harmony import Harmonisation
from attune.generate.markov import PRIOR, GeneratedNote


def _part_credit(provenance: Sequence[Mapping[int, float]]) -> tuple[dict[int, float], float]:
    """A part's per-work credit (bits each work's counts give its tokens), and its bits."""
    credit: dict[int, float] = {}
    bits = 0.0
    for masses in provenance:
        total = sum(masses.values())
        prior = masses.get(PRIOR, 0.0)
        if total <= 0.0:
            raise ValueError("provenance: a token has no probability")
        bits -= math.log2(total)
        for work, mass in masses.items():
            if work != PRIOR and mass > 0.0:
                rest = max(total - mass, prior, total * 2.0**-60)  # at most 60 bits a token
                credit[work] = credit.get(work, 0.0) + math.log2(total / rest)
    return credit, bits


def work_weights(notes: Sequence[GeneratedNote], *,
                 harmony: Harmonisation | None = None) -> dict[int, float]:
    """Per-work credit of a piece, summed over its tokens (see the module's rule)."""
    parts = [_part_credit([n.provenance for n in notes])]
    if harmony is not None:
        parts.append(_part_credit(harmony.provenance))
    parts = [(credit, bits) for credit, bits in parts if credit]
    total_bits = sum(bits for _, bits in parts)
    weights: dict[int, float] = {}
    for credit, bits in parts:
        scale = (bits / total_bits if total_bits > 0 else 1.0 / len(parts)) / sum(credit.values())
        for work, value in credit.items():
            weights[work] = weights.get(work, 0.0) + value * scale
    return weights


def _largest_remainder(exact: Mapping[int, Fraction], places: int) -> dict[int, Decimal]:
    """Round exact fractions (summing to 1) to ``places`` decimals summing to exactly 1."""
    unit = 10 ** places
    scaled = {k: v * unit for k, v in exact.items()}
    floors = {k: math.floor(v) for k, v in scaled.items()}
    left = unit - sum(floors.values())
    # Largest remainder first; ties go to the smaller key, so the result is deterministic.
    for key in sorted(scaled, key=lambda k: (-(scaled[k] - floors[k]), k))[:left]:
        floors[key] += 1
    return {k: Decimal(n).scaleb(-places) for k, n in sorted(floors.items()) if n > 0}


def to_shares(weights: Mapping[int, float], *, places: int = 6) -> dict[int, Decimal]:
    """Shares of the weights: positive Decimals of ``places`` decimals summing to exactly 1.

    Largest-remainder rounding, ties by key; works whose share rounds to 0 are dropped.
    """
    if not weights:
        raise ValueError("weights: nothing to share")
    if any(not math.isfinite(w) or w < 0 for w in weights.values()):
        raise ValueError("weights: every weight must be finite and >= 0")
    exact = {k: Fraction(w) for k, w in weights.items()}
    total = sum(exact.values())
    if total <= 0:
        raise ValueError("weights: all zero")
    return _largest_remainder({k: v / total for k, v in exact.items()}, places)


def split_over(shares: Mapping[int, Decimal], targets: Mapping[int, Sequence[int]], *,
               places: int = 6) -> dict[int, Decimal]:
    """Each work's share split equally over its targets (recordings), still summing to 1.

    A target under several works gets the sum of its parts; rounding is largest remainder with
    ties by key, and targets whose share rounds to 0 are dropped.
    """
    if not shares:
        raise ValueError("shares: nothing to split")
    exact: dict[int, Fraction] = {}
    for work, share in shares.items():
        if not share.is_finite() or share < 0:
            raise ValueError(f"shares: work {work} has share {share}")
        own = sorted(set(targets.get(work, ())))
        if not own:
            raise ValueError(f"targets: work {work} has a share but nothing to split it over")
        part = Fraction(share) / len(own)
        for target in own:
            exact[target] = exact.get(target, Fraction(0)) + part
    total = sum(exact.values())
    if total <= 0:
        raise ValueError("shares: all zero")
    return _largest_remainder({k: v / total for k, v in exact.items()}, places)
