"""Attribution: exact Decimal shares, the credit rule, and its LDS / counterfactual ground truth."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from attune.attribute.lds import counterfactual, lds
from attune.attribute.shares import split_over, to_shares, work_weights
from attune.generate.harmony import Harmonisation
from attune.generate.markov import PRIOR, GeneratedNote, MarkovModel
from attune.melody.notes import Melody
from tests.test_markov import tune

weights_st = st.dictionaries(st.integers(0, 10_000),
                             st.floats(0, 1e6, allow_nan=False, allow_infinity=False),
                             min_size=1, max_size=40).filter(lambda w: sum(w.values()) > 0)


@settings(max_examples=200, deadline=None)
@given(weights_st, st.integers(2, 8))
def test_shares_sum_to_exactly_one(weights: dict[int, float], places: int) -> None:
    shares = to_shares(weights, places=places)
    assert sum(shares.values()) == Decimal(1)
    assert all(s > 0 and s.as_tuple().exponent == -places for s in shares.values())
    assert set(shares) <= {k for k, w in weights.items() if w > 0}
    assert to_shares(dict(reversed(list(weights.items()))), places=places) == shares
    total = sum(weights.values())
    assert all(abs(float(shares.get(k, 0)) - w / total) <= 10.0 ** -places for k, w in
               weights.items())


def test_shares_ties_go_to_the_smaller_key() -> None:
    assert to_shares({3: 1.0, 1: 1.0, 2: 1.0}) == {
        1: Decimal("0.333334"), 2: Decimal("0.333333"), 3: Decimal("0.333333")}
    assert to_shares({5: 1.0, 4: 1.0, 9: 1.0}, places=1) == {
        4: Decimal("0.4"), 5: Decimal("0.3"), 9: Decimal("0.3")}
    assert to_shares({1: 1.0, 2: 1e-9}) == {1: Decimal("1.000000")}


@pytest.mark.parametrize("bad", [{}, {1: -1.0}, {1: math.nan}, {1: math.inf}, {1: 0.0}])
def test_shares_refuse_bad_weights(bad: dict[int, float]) -> None:
    with pytest.raises(ValueError):
        to_shares(bad)


@settings(max_examples=100, deadline=None)
@given(weights_st, st.data())
def test_split_over_conserves(weights: dict[int, float], data: st.DataObject) -> None:
    shares = to_shares(weights)
    targets = {w: data.draw(st.lists(st.integers(0, 50), min_size=1, max_size=4)) for w in shares}
    split = split_over(shares, targets)
    assert sum(split.values()) == Decimal(1)
    assert all(s > 0 for s in split.values())
    for recording, share in split.items():
        exact = sum(shares[w] / len(set(t)) for w, t in targets.items() if recording in t)
        assert abs(share - exact) <= Decimal("0.000001")


def test_split_over_equal_parts_and_refusals() -> None:
    split = split_over({1: Decimal("0.5"), 2: Decimal("0.5")}, {1: [10, 11, 12], 2: [20]})
    assert split == {10: Decimal("0.166667"), 11: Decimal("0.166667"),
                     12: Decimal("0.166666"), 20: Decimal("0.500000")}
    with pytest.raises(ValueError, match="nothing to split"):
        split_over({1: Decimal(1)}, {1: []})


def _note(provenance: dict[int, float]) -> GeneratedNote:
    return GeneratedNote((0, 12), 60, 0, 12, provenance)


def test_work_weights_drop_the_prior_and_split_parts_by_information() -> None:
    melody = [_note({1: 0.3, 2: 0.1, PRIOR: 0.1}), _note({2: 0.4, PRIOR: 0.1})]
    weights = work_weights(melody)
    assert weights.keys() == {1, 2}
    # Work 1 gives the first token 0.5 / 0.2 of its probability; work 2 gives 0.5 / 0.4 of the
    # first and 0.5 / 0.1 of the second (log2 5: it supplies 80% of it).
    one, two = math.log2(0.5 / 0.2), math.log2(0.5 / 0.4) + math.log2(0.5 / 0.1)
    assert math.isclose(weights[1], one / (one + two))
    assert math.isclose(weights[2], two / (one + two))
    assert work_weights([_note({3: 1.0})]) == {3: 1.0}  # no prior share: still finite
    # A bass line of 4 bits against a melody of -log2(0.5 * 0.5) = 2 bits gets 2/3 of the credit.
    harmony = Harmonisation((), ({3: 0.25},), -2.0)
    with_bass = work_weights(melody, harmony=Harmonisation((), ({3: 0.0625},), -4.0))
    assert math.isclose(with_bass[3], 2 / 3) and math.isclose(sum(with_bass.values()), 1.0)
    assert math.isclose(work_weights(melody, harmony=harmony)[3], 0.5)


@pytest.fixture(scope="module")
def world() -> tuple[MarkovModel, dict[int, Melody]]:
    """Forty works in four 'families' sharing material, so that credit has structure."""
    works = {}
    for i in range(40):
        family = tune(i % 4, length=24).notes
        own = tune(100 + i, length=24).notes
        shift = family[-1].onset + family[-1].duration
        notes = (*family, *(type(n)(n.pitch, n.onset + shift, n.duration, n.bar + 20)
                            for n in own))
        works[i + 1] = Melody(notes, 0, "major", 48)
    return MarkovModel.train(works, order=3), works


def test_provenance_beats_random_on_lds(world: tuple[MarkovModel, dict[int, Melody]]) -> None:
    model, _ = world
    made = [model.generate(seed=s, length=32) for s in range(6)]
    outputs = [g.melody for g in made]
    provenance = [work_weights(g.notes) for g in made]
    rng = np.random.default_rng(0)
    random = [{w: float(rng.random()) for w in model.works} for _ in made]
    ours = lds(model, outputs, provenance, subsets=40, seed=1)
    baseline = lds(model, outputs, random, subsets=40, seed=1)
    assert ours.mean > 0.6 > baseline.mean + 0.3
    assert len(ours.per_output) == 6 and ours.subsets == 40


def test_counterfactual_top_k_costs_more_than_random(
        world: tuple[MarkovModel, dict[int, Melody]]) -> None:
    model, _ = world
    made = model.generate(seed=3, length=32)
    result = counterfactual(model, made.melody, work_weights(made.notes), k=3, trials=10, seed=0)
    assert result.top_drop > 2 * result.random_mean > 0
    assert len(result.random_drops) == 10 and result.ratio == result.top_drop / result.random_mean
