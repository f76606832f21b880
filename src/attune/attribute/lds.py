"""Ground truth for attribution: the linear datamodeling score (LDS) and a counterfactual check.

LDS (Park et al. 2023, TRAK): draw random subsets holding a fraction ``alpha`` of the training
works, retrain on each, record each output's log2-likelihood f(S), predict g(S) as the sum of the
attribution scores of the works in S, and take Spearman's rank correlation of f and g across the
subsets, per output, averaged over outputs. The Markov model retrains exactly and cheaply on a
subset (its counts are sums over works), so no approximation enters the ground truth.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from scipy.stats import spearmanr

from attune.generate.markov import MarkovModel
from attune.melody.notes import Melody


@dataclass(frozen=True)
class LdsResult:
    """Mean LDS over outputs and each output's Spearman correlation (0 where undefined)."""

    mean: float
    per_output: tuple[float, ...]
    subsets: int
    alpha: float


@dataclass(frozen=True)
class CounterfactualResult:
    """How much an output's log2-likelihood drops without its top-k works vs k random works.

    ``ratio`` is top_drop / random_mean (inf when removing random works costs nothing).
    """

    k: int
    top_drop: float
    random_drops: tuple[float, ...]
    random_mean: float
    ratio: float


def subset_likelihoods(model: MarkovModel, outputs: Sequence[Melody], *, subsets: int,
                       alpha: float, seed: int) -> tuple[NDArray[np.bool_], NDArray[np.float64]]:
    """Random work subsets (boolean, subsets x works) and each output's log2 p on each."""
    n = len(model.works)
    size = round(alpha * n)
    if not 0 < size <= n or subsets < 2:
        raise ValueError(f"need 0 < alpha*n <= n and >= 2 subsets (alpha={alpha}, n={n})")
    rng = np.random.default_rng(seed)
    chosen = np.zeros((subsets, n), dtype=bool)
    f = np.zeros((subsets, len(outputs)))
    for s in range(subsets):
        chosen[s, rng.choice(n, size=size, replace=False)] = True
        keep = [w for w, c in zip(model.works, chosen[s], strict=True) if c]
        for o, output in enumerate(outputs):  # same subset: the model reuses its restricted table
            f[s, o] = model.log2_prob(output, subset=keep)
    return chosen, f


def score_lds(works: Sequence[int], chosen: NDArray[np.bool_], f: NDArray[np.float64],
              scores: Sequence[Mapping[int, float]], alpha: float) -> LdsResult:
    """LDS of scores against likelihoods already measured on subsets (see subset_likelihoods)."""
    if f.shape[1] != len(scores) or not len(scores):
        raise ValueError("scores: need one score mapping per output, and some")
    per_output = []
    for o, score in enumerate(scores):
        tau = np.asarray([score.get(w, 0.0) for w in works], dtype=np.float64)
        g = chosen.astype(np.float64) @ tau
        rho = spearmanr(f[:, o], g).statistic if np.ptp(g) > 0 and np.ptp(f[:, o]) > 0 else 0.0
        per_output.append(float(rho) if math.isfinite(rho) else 0.0)
    return LdsResult(float(np.mean(per_output)), tuple(per_output), len(chosen), alpha)


def lds(model: MarkovModel, outputs: Sequence[Melody], scores: Sequence[Mapping[int, float]], *,
        subsets: int = 100, alpha: float = 0.5, seed: int = 0) -> LdsResult:
    """LDS of attribution ``scores`` (work id -> score, one mapping per output; missing = 0)."""
    if len(outputs) != len(scores) or not outputs:
        raise ValueError("outputs and scores: need one score mapping per output, and some")
    chosen, f = subset_likelihoods(model, outputs, subsets=subsets, alpha=alpha, seed=seed)
    return score_lds(model.works, chosen, f, scores, alpha)


def counterfactual(model: MarkovModel, output: Melody, scores: Mapping[int, float], *, k: int,
                   trials: int, seed: int) -> CounterfactualResult:
    """Drop in log2 p(output) without the k top-scored works, vs without k random works."""
    if not 0 < k < len(model.works) or trials < 1:
        raise ValueError(f"k: need 0 < k < {len(model.works)} works, and trials >= 1")
    full = model.log2_prob(output)
    top = sorted(model.works, key=lambda w: (-scores.get(w, 0.0), w))[:k]

    def drop(removed: Sequence[int]) -> float:
        gone = set(removed)
        return full - model.log2_prob(output, subset=[w for w in model.works if w not in gone])

    rng = np.random.default_rng(seed)
    randoms = tuple(drop(rng.choice(np.asarray(model.works), size=k, replace=False).tolist())
                    for _ in range(trials))
    mean = float(np.mean(randoms))
    top_drop = drop(top)
    return CounterfactualResult(k, top_drop, randoms, mean,
                                top_drop / mean if mean > 0 else math.inf)
