"""Tests for stats.py: the paired bootstrap on cases whose answer is known by hand, and its
properties."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from miniature import stats


def test_identical_configurations_give_zero_and_no_support():
    rng = np.random.default_rng(0)
    a = rng.random((3, 20))
    one_seed = stats.paired_bootstrap(a[:1], a[:1].copy())  # paired images: every replicate 0
    assert one_seed == {"diff": 0.0, "low": 0.0, "high": 0.0}
    found = stats.paired_bootstrap(a, a.copy())  # the seeds drawn apart: an interval around 0
    assert found["diff"] == 0.0 and found["low"] < 0 < found["high"]
    for interval in (one_seed, found):
        assert stats.verdict(interval["low"], interval["high"], True) == "not supported"
        assert stats.verdict(interval["low"], interval["high"], False) == "not supported"


def test_a_constant_shift_is_the_interval():
    """One seed each (or seeds that agree): every replicate's difference is the shift."""
    rng = np.random.default_rng(1)
    b = rng.random((1, 30))
    found = stats.paired_bootstrap(b + 0.25, b)
    assert found["diff"] == pytest.approx(0.25) and found["low"] == pytest.approx(0.25)
    assert found["high"] == pytest.approx(0.25)
    assert stats.verdict(found["low"], found["high"], True) == "supported"
    # where the paper's A - B is below zero (A better on a lower-is-better score) the same
    # interval excludes zero against the paper: reversed
    assert stats.verdict(found["low"], found["high"], False) == "reversed"
    assert stats.verdict(-found["high"], -found["low"], True) == "reversed"
    assert stats.verdict(-found["high"], -found["low"], False) == "supported"


def test_two_images_by_hand():
    """Differences 0.1 and 0.3: a replicate draws both images from the two, so its mean is 0.1
    (1/4), 0.2 (1/2) or 0.3 (1/4): the 2.5 and 97.5 percentiles are 0.1 and 0.3."""
    found = stats.paired_bootstrap([[0.1, 0.3]], [[0.0, 0.0]])
    assert found == pytest.approx({"diff": 0.2, "low": 0.1, "high": 0.3})


def test_unequal_clusters_by_hand():
    """Two units: one image of difference 0.1, three of 0.3. A replicate draws two units: both the
    first (1/4) gives 0.1, both the second (1/4) 0.3, one of each (1/2) (0.1 + 3 x 0.3) / 4 = 0.25;
    the data as they are also give 0.25. Per image (4 units) the replicates would reach 0.1
    only with probability (1/4)^4: its 2.5 percentile lies above 0.1."""
    a, b = [[0.1, 0.3, 0.3, 0.3]], [[0.0] * 4]
    found = stats.paired_bootstrap(a, b, clusters=["f0", "f1", "f1", "f1"])
    assert found == pytest.approx({"diff": 0.25, "low": 0.1, "high": 0.3})
    per_image = stats.paired_bootstrap(a, b)
    assert per_image["diff"] == pytest.approx(0.25) and per_image["low"] > 0.1 + 1e-9


def test_identical_composites_per_foreground():
    """Each foreground's four composites score alike: resampling composites one by one counts
    each foreground four times over and gives an interval about sqrt(4) = 2 times too narrow;
    resampling foregrounds gives exactly the interval of one composite per foreground."""
    rng = np.random.default_rng(3)
    foregrounds = 40
    a = rng.normal(0.2, 1.0, (1, foregrounds))
    b = rng.normal(0.0, 1.0, (1, foregrounds))
    a4, b4 = np.repeat(a, 4, axis=1), np.repeat(b, 4, axis=1)  # fg0, fg0, fg0, fg0, fg1, ...
    labels = np.repeat([f"test_{j:04d}" for j in range(foregrounds)], 4)
    one_each = stats.paired_bootstrap(a, b, resamples=4000)
    clustered = stats.paired_bootstrap(a4, b4, resamples=4000, clusters=labels)
    composites = stats.paired_bootstrap(a4, b4, resamples=4000)
    for key in ("diff", "low", "high"):
        assert clustered[key] == pytest.approx(one_each[key], abs=1e-12)
    ratio = (clustered["high"] - clustered["low"]) / (composites["high"] - composites["low"])
    assert 1.8 < ratio < 2.2


def test_cluster_labels_must_match_the_images():
    with pytest.raises(ValueError, match="cluster labels"):
        stats.paired_bootstrap(np.zeros((1, 4)), np.zeros((1, 4)), clusters=[0, 0, 1])


def test_the_seeds_are_a_source_of_chance():
    """Every image agrees (A's seed 1 is 1 higher everywhere, seed 0 equal to B): the interval
    spans the seeds' means, 0 to 1, so the contrast is not supported."""
    b = np.zeros((2, 10))
    a = np.stack([np.zeros(10), np.ones(10)])
    found = stats.paired_bootstrap(a, b)
    assert found == pytest.approx({"diff": 0.5, "low": 0.0, "high": 1.0})
    assert stats.verdict(found["low"], found["high"], True) == "not supported"


def test_max_f_reduces_each_runs_mean_curve():
    """maxF: the maximum of the image-averaged F curve, per run; a curve raised by 0.1 at every
    threshold raises maxF by 0.1."""
    rng = np.random.default_rng(2)
    curves = rng.random((1, 8, 256))
    found = stats.paired_bootstrap(curves + 0.1, curves, reduce=lambda c: c.max(axis=-1))
    assert found == pytest.approx({"diff": 0.1, "low": 0.1, "high": 0.1})
    peak_a = np.max(np.mean(curves[0], axis=0))
    uneven = curves.copy()
    uneven[0, :, 0] = 5.0  # a peak at one threshold: the max of the mean, not the mean of maxes
    found = stats.paired_bootstrap(uneven, curves, reduce=lambda c: c.max(axis=-1))
    assert found["diff"] == pytest.approx(5.0 - peak_a)


def test_mismatched_or_broken_scores_are_refused():
    with pytest.raises(ValueError, match="same images"):
        stats.paired_bootstrap(np.zeros((2, 5)), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="NaN"):
        stats.paired_bootstrap(np.full((1, 3), np.nan), np.zeros((1, 3)))


scores = st.lists(st.floats(-1, 1), min_size=2, max_size=12)


@settings(max_examples=25, deadline=None)
@given(scores, st.floats(-1, 1))
def test_a_shift_of_a_moves_everything_by_the_shift(values, shift):
    a = np.asarray(values)[None]
    b = np.roll(a, 1)
    plain = stats.paired_bootstrap(a, b, resamples=200)
    shifted = stats.paired_bootstrap(a + shift, b, resamples=200)
    for key in plain:
        assert shifted[key] == pytest.approx(plain[key] + shift, abs=1e-9)
    assert plain["low"] <= plain["high"]


@settings(max_examples=25, deadline=None)
@given(scores)
def test_swapping_the_configurations_negates_the_interval(values):
    a = np.asarray(values)[None]
    b = np.sqrt(np.abs(a))
    forward = stats.paired_bootstrap(a, b, resamples=200)
    backward = stats.paired_bootstrap(b, a, resamples=200)
    assert backward["diff"] == pytest.approx(-forward["diff"], abs=1e-12)
    assert backward["low"] == pytest.approx(-forward["high"], abs=1e-12)
    assert backward["high"] == pytest.approx(-forward["low"], abs=1e-12)
