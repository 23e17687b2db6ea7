"""Is a contrast between two configurations more than noise? A paired bootstrap over the test's
independent units and the training seeds (DESIGN.md, "The ablation in miniature").

A configuration's score is the mean over its seeds of the dataset score of each seed's run (maxF:
the maximum over thresholds of the image-averaged F curve; every other score: the image average).
Both sources of chance are resampled in each of RESAMPLES replicates:
- the test's independent units, with replacement, the same draw for both configurations (paired: an
  image hard for one is hard for the other). A unit is a cluster of images that share what makes
  them hard: on a matting test, one foreground with all its composites (they share its alpha; the
  composites of one foreground are not independent draws), on a thin-structure test, one image. A
  unit drawn k times weighs k times each of its images; a replicate's score is the weighted image
  average (the ratio of sums when units differ in size);
- each configuration's seeds, with replacement, independently (different training runs).
The interval is the 2.5 and 97.5 percentiles of the replicates' differences. A claim is
"supported" when the interval excludes zero in the paper's direction, "reversed" when it excludes
zero in the other, "not supported" when it holds zero. With three seeds the seeds' resampling has
at most ten distinct draws (multisets of 3 from 3), so the seeds' share of the interval is coarse.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Optional

import numpy as np

RESAMPLES = 2000
LEVEL = 0.95


def _score(per_image: np.ndarray, image_weights: np.ndarray, seed_weights: np.ndarray,
           reduce: Optional[Callable]) -> np.ndarray:
    """(seeds, images[, k]) scores -> (R,) configuration scores, one per row of the weights:
    image_weights (R, images) and seed_weights (R, seeds), each row summing to 1."""
    per_seed = []
    for scores in per_image:
        dataset = image_weights @ scores  # (R,) or (R, k): each run's image average
        per_seed.append(dataset if reduce is None else reduce(dataset))
    return np.sum(np.stack(per_seed, axis=1) * seed_weights, axis=1)


def cluster_weights(clusters, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """(resamples, images) weights, each row summing to 1: the clusters (one label per image;
    images of one label are one unit) drawn with replacement, as many as there are, and each
    image weighted by how often its cluster was drawn."""
    labels, index = np.unique(np.asarray(clusters), return_inverse=True)
    g = len(labels)
    counts = rng.multinomial(g, np.full(g, 1 / g), size=resamples)  # (R, clusters)
    per_image = counts[:, index].astype(np.float64)  # (R, images): its cluster's count
    return per_image / per_image.sum(axis=1, keepdims=True)


def paired_bootstrap(a, b, reduce: Optional[Callable] = None, resamples: int = RESAMPLES,
                     seed: int = 0, clusters=None) -> dict:
    """The difference A - B and its 95% interval.

    Args:
        a, b: (seeds, images) per-image scores of each configuration, or (seeds, images, k) with a
            `reduce` mapping (..., k) -> (...) (maxF: the F curves and their maximum); the images
            in the same order in both, the seeds any number (1 for an untrained model).
        reduce: applied to each run's image-averaged scores, or None.
        resamples, seed: the number of replicates and their random generator's seed.
        clusters: one label per image (any hashable values, e.g. a composite's foreground): the
            images of one label are resampled together, as one unit; None: every image is its
            own unit.

    Returns:
        dict: "diff" (A - B on the data as they are), "low", "high" (the interval).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim < 2 or a.shape[1:] != b.shape[1:] or 0 in a.shape or 0 in b.shape:
        raise ValueError(f"paired_bootstrap needs (seeds, images[, k]) scores of the same images, "
                         f"got shapes {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("paired_bootstrap: the scores hold NaN or inf")
    n = a.shape[1]
    if clusters is None:
        clusters = np.arange(n)
    elif len(clusters) != n:
        raise ValueError(f"paired_bootstrap: {len(clusters)} cluster labels for {n} images")
    rng = np.random.default_rng(seed)
    # how often each unit / seed is drawn in each replicate, as weights summing to 1
    images = cluster_weights(clusters, resamples, rng)
    seeds_a = rng.multinomial(len(a), np.full(len(a), 1 / len(a)), size=resamples) / len(a)
    seeds_b = rng.multinomial(len(b), np.full(len(b), 1 / len(b)), size=resamples) / len(b)
    differences = _score(a, images, seeds_a, reduce) - _score(b, images, seeds_b, reduce)
    observed = (_score(a, np.full((1, n), 1 / n), np.full((1, len(a)), 1 / len(a)), reduce)
                - _score(b, np.full((1, n), 1 / n), np.full((1, len(b)), 1 / len(b)), reduce))
    low, high = np.quantile(differences, [(1 - LEVEL) / 2, (1 + LEVEL) / 2])
    return {"diff": float(observed[0]), "low": float(low), "high": float(high)}


VERDICTS = ("supported", "not supported", "reversed")


def verdict(low: float, high: float, paper_a_higher: bool) -> str:
    """The interval [low, high] of A - B read against the paper's direction: paper_a_higher when
    the paper's A - B is above zero on this score (A better on a higher-is-better score, or A
    worse on a lower-is-better one). "supported": the interval excludes zero on the paper's
    side; "reversed": it excludes zero on the other side; "not supported": it holds zero."""
    above, below = low > 0, high < 0
    if not (above or below):
        return "not supported"
    return "supported" if above == paper_a_higher else "reversed"
